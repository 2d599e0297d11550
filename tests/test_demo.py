"""`netmetrix demo`: a local fleet inside the process, the real upload/execute, nothing left."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from conftest import Run, sigint_default

from netmetrix import probe
from netmetrix.config import load_config
from netmetrix.store import Store

Cli = Callable[..., Run]
HOSTS = ("demo1", "demo2", "demo3")
SCRIPT_RE = re.compile(r"Script `(/\S+)/hosts/demo1/client\.py` uploaded \(sftp\)")


def _sockets(process: psutil.Process) -> set[tuple[object, ...]]:
    """Every inet socket the process holds: (local, remote, status)."""
    return {(c.laddr, c.raddr, c.status) for c in process.net_connections(kind="inet")}


@pytest.fixture(autouse=True)
def brief_dashboard(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process demos serve their dashboard for no time: started, shown, stopped
    (the subprocess tests below keep the real few seconds)."""
    from netmetrix import demo

    monkeypatch.setattr(demo, "SERVE_SECONDS", 0.0)


def test_demo_collects_from_every_host_mails_and_leaves_nothing(
    netmetrix: Cli, tmp_path: Path
) -> None:
    me = psutil.Process()
    sockets = _sockets(me)
    threads = {t.ident for t in threading.enumerate()}
    keep = tmp_path / "kept"

    ran = netmetrix("demo", "--hosts", "3", "--keep", keep)

    assert ran.code == 0, ran.err
    # The real log lines and summaries, as the CLI prints them.
    for name in HOSTS:
        assert f"INFO [{name}] SUCCESS! Script `" in ran.err
    assert ran.err.count("upload: 3 ok in ") == 1
    assert ran.err.count("execute: 3 ok in ") == 2
    assert f"$ netmetrix --config {keep / 'config.xml'} execute" in ran.out

    # Metrics for every demo host were stored, from both execute runs.
    with Store.open(f"sqlite:///{keep / 'netmetrix.db'}") as store:
        latest = store.latest()
        ups = {name: [s.value for s in store.history(name, "up")] for name in HOSTS}
    assert {s.host for s in latest} == set(HOSTS)
    # two execute runs, then three watch ticks (a slow answer on a loaded machine is a 0)
    assert {name: values[:2] for name, values in ups.items()} == {n: [1.0, 1.0] for n in HOSTS}
    assert {name: len(values) for name, values in ups.items()} == dict.fromkeys(HOSTS, 5)
    for name in HOSTS:
        assert ran.err.count(f"INFO [{name}] connected") == 1  # one session for the ticks
    assert "watch: stopped after 3 tick(s)" in ran.err
    assert f"$ netmetrix --config {keep / 'config.xml'} watch --interval 1s --ticks 3" in ran.out
    metrics = {m[0] for m in probe.METRICS} | {"up"}
    for name in HOSTS:
        assert {s.metric for s in latest if s.host == name} == metrics
        assert [s.value for s in latest if (s.host, s.metric) == (name, "cpu_count")] == [
            psutil.cpu_count()
        ]
    for name in HOSTS:  # the metrics table shows every host
        assert re.search(rf"^{name}\s+1\s", ran.out, re.MULTILINE), ran.out

    # The alert mail arrived at the demo SMTP server, once per host despite two runs.
    assert "The demo SMTP server received 3 mail(s):" in ran.out
    for name in HOSTS:
        assert ran.out.count(f"ALERT [{name}] cpu_count is ") >= 1
    assert "(to ops@example.com)" in ran.out
    # ... and ends with the dashboard's URL (the server is gone: see the sockets below)
    assert re.search(r"^Dashboard: http://127\.0\.0\.1:\d+/  \(up for 0 s", ran.out, re.M), ran.out
    assert f"netmetrix --config {keep / 'config.xml'} serve" in ran.out

    # What it leaves: the kept files (a config that loads), nothing else.
    config = load_config(keep / "config.xml")
    assert [h.name for h in config.hosts] == list(HOSTS)
    assert config.ssh.host_key_policy == "strict"
    assert (keep / "demo_key").stat().st_mode & 0o777 == 0o600
    assert len((keep / "known_hosts").read_text().splitlines()) == 3
    assert f"netmetrix --config {keep / 'config.xml'} metrics latest" in ran.out
    match = SCRIPT_RE.search(ran.err)
    assert match, ran.err
    assert not Path(match[1]).exists()  # the hosts' directories are gone

    # Only what this test owns: session fixtures start and stop processes, sockets
    # and threads of their own at any time, so nothing is compared globally.
    assert _processes_naming(match[1]) == []
    assert _sockets(me) - sockets == set()
    assert {t.ident for t in threading.enumerate()} - threads == set()


def test_demo_without_keep_removes_its_files(netmetrix: Cli) -> None:
    ran = netmetrix("demo", "--hosts", "1")
    assert ran.code == 0, ran.err
    match = re.search(r"The demo's files were in (\S+) and have been removed\.", ran.out)
    assert match, ran.out
    assert not Path(match[1]).exists()
    assert "netmetrix demo --keep ./demo" in ran.out


def test_the_users_ssh_config_cannot_redirect_the_demo(netmetrix: Cli, isolated_home: Path) -> None:
    """A ``Host *`` block in ~/.ssh/config applies to every host, the demo's loopback ones
    too, unless the demo reads none of the user's OpenSSH files; $HOME is left alone."""
    (isolated_home / ".ssh").mkdir()
    (isolated_home / ".ssh" / "config").write_text("Host *\n  ProxyJump nobody@127.0.0.1:1\n")
    ran = netmetrix("demo", "--hosts", "1")
    assert ran.code == 0, ran.err
    assert ran.err.count("execute: 1 ok in ") == 2
    assert "ProxyJump" not in ran.err
    assert os.environ["HOME"] == str(isolated_home)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hosts", "0"], "Invalid value for '--hosts': 0 is not in the range 1<=x<=100."),
        (["--keep", "{full}"], "directory is not empty; give a new or empty one"),
        (["--keep", "{file}"], "is a file"),
    ],
)
def test_demo_refuses_bad_arguments(
    netmetrix: Cli, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "config.xml").write_text("<netmetrix/>")
    (tmp_path / "file").write_text("")
    args = [a.format(full=tmp_path / "full", file=tmp_path / "file") for a in args]
    ran = netmetrix("demo", *args)
    assert ran.code == 2
    assert message in ran.err
    assert (tmp_path / "full" / "config.xml").read_text() == "<netmetrix/>"


def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path) -> None:
    """SIGINT while the probes run: exit 130, no probe, server port or directory left."""
    exe = Path(sys.executable).with_name("netmetrix")
    demo = subprocess.Popen(
        [exe, "demo", "--hosts", "5", "--keep", tmp_path / "kept"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=sigint_default,
    )
    try:
        assert demo.stdout is not None
        assert demo.stderr is not None
        first = demo.stdout.readline()
        ports = [int(p) for p in re.findall(r"\d+", first.split("(ports ")[1].split(")")[0])]
        err = ""
        while "upload: " not in err:
            line = demo.stderr.readline()
            assert line, f"demo ended early: {err}"
            err += line
        workdir = SCRIPT_RE.search(err)
        assert workdir, err
        parent = psutil.Process(demo.pid)
        deadline = time.monotonic() + 10
        probes: list[psutil.Process] = []
        while not probes:  # catch the first execute with its probes running
            assert time.monotonic() < deadline, "never saw a probe running"
            probes = [
                p
                for p in parent.children(recursive=True)
                if any("client.py" in arg for arg in _cmdline(p))
            ]
        demo.send_signal(signal.SIGINT)
        _out, rest = demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130, err + rest
    assert "Aborted." in rest
    # Killed with their process group; a probe under its host-side wrapper is an orphan
    # then, and stays a zombie until init reaps it.
    _gone, alive = psutil.wait_procs(probes, timeout=30)
    assert alive == []
    for port in ports:
        with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", port))
    assert not Path(workdir[1]).exists()


URL_RE = re.compile(r"^Dashboard: (http://127\.0\.0\.1:(\d+)/)")


def _start_demo(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    exe = Path(sys.executable).with_name("netmetrix")
    return subprocess.Popen(
        [exe, "demo", "--hosts", "1", "--keep", tmp_path / "kept", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # the log lines too, for the assertion messages
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=sigint_default,
    )


def _dashboard_url(demo: subprocess.Popen[str]) -> tuple[str, int, str]:
    """Read the demo's stdout up to its "Dashboard: URL" line: (url, port, what came before)."""
    assert demo.stdout is not None
    out = ""
    while True:  # bounded: the demo either prints the line or ends (EOF)
        line = demo.stdout.readline()
        assert line, f"the demo ended without a dashboard:\n{out}"
        out += line
        match = URL_RE.match(line)
        if match:
            return match[1], int(match[2]), out


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as response:
        assert response.status == 200
        text: str = response.read().decode()
        return text


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
    return False


def test_demo_ends_with_the_dashboard_for_a_few_seconds(tmp_path: Path) -> None:
    demo = _start_demo(tmp_path)
    try:
        url, port, _ = _dashboard_url(demo)
        page = _get(url)
        assert '<tr class="host up" data-name="demo1"' in page
        assert "1 host</strong>" in page
        charts = json.loads(_get(url + "hosts/demo1/series.json"))
        assert {c["metric"] for c in charts["charts"]} >= {"up", "cpu_percent"}
        rest, _ = demo.communicate(timeout=120)  # it stops serving by itself
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 0
    assert "demo: finished in" in rest
    assert _refused(port)


def test_demo_serve_keeps_the_dashboard_up_and_collecting_until_ctrl_c(tmp_path: Path) -> None:
    """While it serves, its hosts take ``execute`` with a rule added to its config.xml
    (the README's walkthrough): the mail shows, and the watch, which still runs the
    config it read before, does not resolve the new rule's alert as "rule changed"."""
    demo = _start_demo(tmp_path, "--serve")
    try:
        url, port, _ = _dashboard_url(demo)
        history = url + "api/v1/history?host=demo1&metric=up"
        _wait_for_ticks(demo, history, 1)
        config = tmp_path / "kept" / "config.xml"
        rule = '<alert metric="up" op="&gt;=" limit="1" email="new@example.com"/>'
        config.write_text(config.read_text().replace("<alerts>", f"<alerts>\n    {rule}"))
        exe = Path(sys.executable).with_name("netmetrix")
        ran = subprocess.run(
            [exe, "--config", config, "execute"], capture_output=True, text=True, timeout=300
        )
        assert ran.returncode == 0, ran.stderr
        _wait_for_ticks(demo, history, 2)  # the watch's ticks after the new alert
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 0, rest
    assert re.search(r"\(\d+ ticks, \d+ samples stored while serving\)", rest), rest
    assert "mail arrived: ALERT [demo1] up is 1>=1   (to new@example.com)" in rest
    assert "RESOLVED" not in rest
    assert "demo: finished in" in rest
    assert _refused(port)


def _wait_for_ticks(demo: subprocess.Popen[str], history: str, ticks: int) -> None:
    """Until the demo's watch has stored ``ticks`` more (one every 2 s)."""
    first = len(json.loads(_get(history)))
    deadline = time.monotonic() + 120
    while len(json.loads(_get(history))) < first + ticks:
        assert time.monotonic() < deadline, "watch stored nothing while serving"
        assert demo.poll() is None, "the demo ended while serving"
        time.sleep(0.5)


def _processes_naming(path: str) -> list[psutil.Process]:
    """Every live process whose command line mentions ``path`` (the demo's directory)."""
    return [p for p in psutil.process_iter() if any(path in arg for arg in _cmdline(p))]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return []
