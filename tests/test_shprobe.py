"""The POSIX-sh probe for hosts without python (#18 item 6): ``<host probe="sh"/>``.

probe.sh runs here under the two shells a python-less host has: dash (Debian's
/bin/sh) and BusyBox sh (Alpine's, and most appliances'), through real sshd
hosts (upload, execute, check, watch) and directly (envelope, tamper, key
safety, watchdog).  Values are checked against /proc and statvfs read by the
test itself.  The only stand-ins are a PATH without openssl (one machine
cannot uninstall it for one host) and a hung ``df`` (a stuck mount cannot be
made without root-owned kernel state shared with the other suites).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sshd
from conftest import Fleet, Run
from test_check import checked

from netmetrix import envelope, probe, shprobe
from netmetrix.config import load_config
from netmetrix.errors import ConfigError, EnvelopeError
from netmetrix.store import Store

pytestmark = pytest.mark.sshd

Cli = Callable[..., Run]
BUSYBOX = "/bin/busybox"
BASIC = {
    *("uptime_sec", "load1", "load5", "load15", "cpu_count", "cpu_percent"),
    *("mem_total_bytes", "mem_available_bytes", "mem_percent", "swap_percent"),
    *("procs_total", "procs_running", "probe_duration_sec"),
    *("disk_total_bytes", "disk_used_bytes", "disk_percent"),
}


def shells(root: Path) -> dict[str, str]:
    """{name: the `shell` that runs probe.sh}: dash, and BusyBox called as `sh`."""
    found = {"dash": "/bin/dash"}
    if os.access(BUSYBOX, os.X_OK):
        link = root / "busybox" / "sh"  # BusyBox runs the applet its name says
        link.parent.mkdir(exist_ok=True)
        if not link.exists():
            link.symlink_to(BUSYBOX)
        found["busybox"] = str(link)
    return found


SHELLS = ["dash", "busybox"]


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The path of one shell to run probe.sh with (BusyBox skipped where not installed)."""
    found = shells(tmp_path)
    if request.param not in found:
        pytest.skip("busybox is not installed (make system-deps installs it)")
    return found[request.param]


def proc_facts() -> dict[str, float]:
    """What the probe must agree with, read here from /proc and statvfs, not by the probe."""
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    with open("/proc/stat") as stat_file:
        cpus = sum(1 for line in stat_file if line[:3] == "cpu" and line[3:4].isdigit())
    root = os.statvfs("/")
    return {
        "mem_total_bytes": int(fields["MemTotal"].split()[0]) * 1024,
        "cpu_count": cpus,
        "disk_total_bytes": root.f_blocks * root.f_frsize,
    }


def latest(fleet: Fleet, host: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with Store.open(f"sqlite:///{fleet.database}") as store:
        rows = store.latest(hosts=(host,))
    return {(r.metric, tuple(sorted(r.labels.items()))): r.value for r in rows}


def assert_agrees_with_proc(values: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> None:
    facts = proc_facts()
    assert values["mem_total_bytes", ()] == facts["mem_total_bytes"]
    assert values["cpu_count", ()] == facts["cpu_count"]
    # df -P -k counts whole KiB of the same statvfs
    assert abs(values["disk_total_bytes", (("mount", "/"),)] - facts["disk_total_bytes"]) < 1024
    assert 0 <= values["cpu_percent", ()] <= 100
    assert 0 <= values["mem_percent", ()] <= 100
    assert 0 < values["mem_available_bytes", ()] <= facts["mem_total_bytes"]
    with open("/proc/uptime") as uptime:
        now = float(uptime.read().split()[0])
    assert 0 < values["uptime_sec", ()] <= now
    assert values["procs_total", ()] >= 1


# ---------------------------------------------------------------- through sshd


def test_upload_and_execute_under_dash_and_busybox(
    fleet: Fleet, netmetrix: Cli, tmp_path: Path
) -> None:
    for name, path in shells(tmp_path).items():
        fleet.host(name, 0, probe="sh", shell=path, python="python3.99")  # python is unused
    up = netmetrix("--config", fleet.config, "upload")
    assert up.code == 0, up.err
    with Store.open(f"sqlite:///{fleet.database}") as store:
        collector = store.collector_id()
    for name in shells(tmp_path):
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in fleet.remote_dir(name).iterdir()}
        assert files == {"client.sh": 0o700, f"client.sh.{collector}.key": 0o600}
        assert (fleet.remote_dir(name) / "client.sh").read_bytes() == shprobe.source()

    ran = netmetrix("--config", fleet.config, "execute")

    assert ran.code == 0, ran.err
    for name in shells(tmp_path):
        values = latest(fleet, name)
        assert values["up", ()] == 1
        assert {metric for metric, _ in values} == BASIC | {"up"}
        assert_agrees_with_proc(values)
    with Store.open(f"sqlite:///{fleet.database}") as store:
        versions = {h.name: h.probe_version for h in store.hosts()}
    assert versions == dict.fromkeys(shells(tmp_path), shprobe.VERSION)


def test_upload_warns_that_an_sh_host_runs_no_custom_checks(fleet: Fleet, netmetrix: Cli) -> None:
    from test_checks import with_checks

    fleet.host("gw", 0, probe="sh")
    fleet.host("py", 0)
    with_checks(fleet, '<check name="nginx" command="/bin/true"/>')

    up = netmetrix("--config", fleet.config, "upload")

    assert up.code == 0, up.err
    assert up.err.count("custom checks and textfiles need") == 1
    assert '[gw] custom checks and textfiles need probe="python"' in up.err
    assert not list(fleet.remote_dir("gw").glob("*.checks"))  # nothing it would not read


def nossl_shell(fleet: Fleet, tmp_path: Path) -> str:
    """A shell for probe.sh whose PATH has what a bare host has, but no openssl."""
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    for tool in ("tr", "df", "date", "sleep", "timeout", "ls"):
        (bare / tool).symlink_to(subprocess.check_output(["which", tool], text=True).strip())
    return fleet.wrapper("nossl-sh", f'PATH={bare}; export PATH; exec /bin/dash "$@"')


def test_no_openssl_is_that_hosts_clear_error_and_others_go_on(
    fleet: Fleet, netmetrix: Cli, tmp_path: Path
) -> None:
    fleet.host("nossl", 0, probe="sh", shell=nossl_shell(fleet, tmp_path))
    fleet.host("fine", 1, probe="sh", shell="/bin/dash")
    fleet.host("py", 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0

    ran = netmetrix("--config", fleet.config, "execute")

    assert ran.code == 1
    assert "[nossl] FAILED: sh probe: openssl not found: install openssl" in ran.err
    assert latest(fleet, "nossl") == {("up", ()): 0}
    assert latest(fleet, "fine")["up", ()] == 1
    assert latest(fleet, "py")["up", ()] == 1
    code, found = checked(netmetrix, fleet, "-h", "nossl")
    assert code == 1
    assert found["nossl"]["problems"] == ["sh probe: openssl not found: install openssl"]


def test_check_on_an_sh_host(
    fleet: Fleet, netmetrix: Cli, test_user: sshd.User, user_dir: Path
) -> None:
    # an unprivileged login, as on a real host: the probe's owner checks apply
    fleet.host("a", 0, user=test_user.name, directory=str(user_dir / "p"), probe="sh")
    code, found = checked(netmetrix, fleet)
    assert code == 1
    assert found["a"]["python"] == "not needed (probe=sh)"
    assert found["a"]["problems"] == [
        f"probe {user_dir}/p/client.sh missing: run netmetrix upload -h a"
    ]
    assert netmetrix("--config", fleet.config, "upload").code == 0

    code, found = checked(netmetrix, fleet)

    assert code == 0, found
    row = found["a"]
    assert abs(row.pop("clock_offset")) < 5  # whole seconds
    assert row == {
        "host": "a",
        "ready": True,
        "reachable": True,
        "host_key": True,
        "login": True,
        "python": "not needed (probe=sh)",
        "probe": "current",
        "key": True,
        "problems": [],
    }


def test_watch_streams_from_an_sh_host(fleet: Fleet, netmetrix: Cli, shell: str) -> None:
    fleet.host("w", 0, probe="sh", shell=shell)
    assert netmetrix("--config", fleet.config, "upload").code == 0

    ran = netmetrix("--config", fleet.config, "watch", "--interval", "1s", "--ticks", "4")

    assert ran.code == 0, ran.err
    assert ran.err.count("[w] connected") == 1  # one streaming probe for every tick
    from test_watch import up_values

    ups = up_values(fleet, "w")
    assert sum(ups) >= 2, ups  # most ticks answered, even on a loaded machine


# ---------------------------------------------------------------- config


def test_probe_and_shell_attributes_and_required_encryption(fleet: Fleet) -> None:
    fleet.host("a", 0, probe="sh", shell="/bin/busybox")
    config = load_config(fleet.config)
    assert (config.hosts[0].probe, config.hosts[0].shell) == ("sh", "/bin/busybox")
    fleet.hosts[0]["probe"] = "perl"
    fleet.write()
    with pytest.raises(ConfigError, match=r'probe must be one of python, sh, got "perl"'):
        load_config(fleet.config)
    fleet.hosts[0]["probe"] = "sh"
    fleet.settings["encryption"] = "required"
    fleet.write()
    with pytest.raises(ConfigError) as error:
        load_config(fleet.config)
    assert '<host name="a">: probe="sh" seals with an HMAC only (no encryption)' in str(error.value)


def test_config_show_names_the_probe_of_sh_hosts_only(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("gw", 0, probe="sh", shell="/bin/dash")
    fleet.host("py", 0)
    shown = netmetrix("--config", fleet.config, "config", "show")
    assert shown.code == 0, shown.err
    rows = [line.split() for line in shown.out.splitlines() if line.startswith("host.")]
    line = str(host_line(fleet, "gw"))
    assert ["host.gw.probe", "sh", f"config.xml:{line}"] in rows
    assert ["host.gw.shell", "/bin/dash", f"config.xml:{line}"] in rows
    assert not [row for row in rows if row[0] in ("host.py.probe", "host.py.shell")]


def host_line(fleet: Fleet, name: str) -> int:
    """The line of config.xml that writes host ``name``."""
    from conftest import line_of

    return line_of(fleet.config, f'name="{name}"')


def test_an_inventory_sets_the_probe(fleet: Fleet) -> None:
    (fleet.root / "inventory.ini").write_text(
        "[routers]\nr1 ansible_host=127.0.0.1 netmetrix_probe=sh"
        " ansible_shell_executable=/bin/ash\n"
    )
    fleet.config.write_text(
        '<netmetrix><inventory file="inventory.ini"/><ssh known_hosts="known_hosts"/></netmetrix>'
    )
    [host] = load_config(fleet.config).hosts
    assert (host.name, host.probe, host.shell) == ("r1", "sh", "/bin/ash")


# ---------------------------------------------------------------- the probe itself


@pytest.fixture
def placed(tmp_path: Path) -> tuple[Path, bytes]:
    """probe.sh and a key file for host "h1", collector "c1", in a private directory."""
    directory = tmp_path / "probe"
    directory.mkdir(mode=0o700)
    script = directory / "client.sh"
    script.write_bytes(shprobe.source())
    script.chmod(0o700)
    key = envelope.new_key()
    key_path = directory / "client.sh.c1.key"
    key_path.write_text(shprobe.key_file_text("h1", key))
    key_path.chmod(0o600)
    return script, key


def run_probe(
    shell: str, script: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shell, str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # its watchdog kills its process group: its own, not ours
    )


def test_the_envelope_verifies_and_a_tampered_one_does_not(
    shell: str, placed: tuple[Path, bytes]
) -> None:
    script, key = placed
    challenge = envelope.new_challenge()
    done = run_probe(shell, script, challenge, "c1")
    assert (done.returncode, done.stderr) == (0, "")
    [line] = done.stdout.splitlines()
    keys = {envelope.key_id(key): key}

    message = envelope.open_envelope(line, keys=keys, host="h1", challenge=challenge)

    assert not message.encrypted
    assert message.probe_version == shprobe.VERSION
    assert message.errors == ()
    assert {s.metric for s in message.samples} == BASIC
    assert {s.metric for s in message.samples} <= {m[0] for m in probe.METRICS}
    values = {(s.metric, s.labels): s.value for s in message.samples}
    assert_agrees_with_proc(values)
    # the key never leaves: neither it, its MAC subkey nor their encodings
    secret = probe.subkey(key, b"mac")
    for text in (key.hex(), secret.hex(), probe.b64e(key), probe.b64e(secret)):
        assert text not in done.stdout + done.stderr

    header, body, tag = line.split(".")[1:]
    changed = probe.b64e(probe.b64d(body).replace(b'"cpu_count",{},', b'"cpu_count",{},9'))
    for forged in (
        f"NMX1.{header}.{changed}.{tag}",
        line[:-2] + ("AA" if line[-2:] != "AA" else "BA"),
    ):
        with pytest.raises(EnvelopeError, match="authentication failed"):
            envelope.open_envelope(forged, keys=keys, host="h1", challenge=challenge)
    with pytest.raises(EnvelopeError, match="stale challenge"):
        envelope.open_envelope(line, keys=keys, host="h1", challenge=envelope.new_challenge())
    with pytest.raises(EnvelopeError, match="HS256"):
        envelope.open_envelope(
            line, keys=keys, host="h1", challenge=challenge, require_encryption=True
        )


@pytest.mark.skipif(not os.access(BUSYBOX, os.X_OK), reason="busybox is not installed")
def test_a_busybox_only_host(placed: tuple[Path, bytes], tmp_path: Path) -> None:
    """As on Alpine or an appliance: sh, df, ls, date, sleep, timeout, tr, mv are all
    BusyBox applets (only openssl is not)."""
    script, key = placed
    applets = tmp_path / "busybox-bin"
    applets.mkdir()
    for name in ("sh", "tr", "df", "date", "sleep", "timeout", "ls", "mv", "rm"):
        (applets / name).symlink_to(BUSYBOX)
    (applets / "openssl").symlink_to(
        subprocess.check_output(["which", "openssl"], text=True).strip()
    )
    keys = {envelope.key_id(key): key}
    for _ in range(2):  # the first samples cpu_percent, the second reads the state file
        challenge = envelope.new_challenge()
        done = run_probe(str(applets / "sh"), script, challenge, "c1", env={"PATH": str(applets)})
        assert (done.returncode, done.stderr) == (0, "")
        message = envelope.open_envelope(
            done.stdout.strip(), keys=keys, host="h1", challenge=challenge
        )
        assert message.errors == ()
        assert_agrees_with_proc({(s.metric, s.labels): s.value for s in message.samples})
    assert (script.parent / "client.sh.c1.state").read_text().startswith("netmetrix-sh-state 1\n")


def test_the_key_never_reaches_a_commands_argv(placed: tuple[Path, bytes], tmp_path: Path) -> None:
    """Every command probe.sh starts is logged with its argv: the key is in none of them."""
    script, key = placed
    logged = tmp_path / "argv.log"
    spy = tmp_path / "spy"
    spy.mkdir()
    for tool in ("openssl", "tr", "df", "date", "sleep", "timeout", "ls"):
        real = subprocess.check_output(["which", tool], text=True).strip()
        (spy / tool).write_text(f'#!/bin/sh\necho "$0 $*" >>{logged}\nexec {real} "$@"\n')
        (spy / tool).chmod(0o700)
    challenge = envelope.new_challenge()
    done = run_probe("/bin/dash", script, challenge, "c1", env={"PATH": str(spy)})
    assert done.returncode == 0, done.stderr
    argv = logged.read_text()
    assert "openssl dgst -sha256 -binary" in argv  # the spy saw the sealing
    secret = probe.subkey(key, b"mac")
    for text in (key.hex(), secret.hex(), probe.b64e(key), probe.b64e(secret)):
        assert text not in argv


def test_unsafe_or_missing_key_files_are_refused(shell: str, placed: tuple[Path, bytes]) -> None:
    script, _ = placed
    key_path = script.parent / "client.sh.c1.key"
    key_path.chmod(0o640)
    done = run_probe(shell, script, envelope.new_challenge(), "c1")
    assert done.returncode == probe.EXIT_UNSAFE
    assert done.stderr == (
        f"netmetrix probe: refused {key_path}: readable or writable by group/others (-rw-r-----)\n"
    )
    assert done.stdout == ""
    done = run_probe(shell, script, envelope.new_challenge(), "c2")  # no key for collector c2
    assert done.returncode == probe.EXIT_KEY
    assert "cannot read key" in done.stderr
    key_path.chmod(0o600)
    key_path.write_text("netmetrix-sh-key 1\nhost h1\nkid 0123\nmac zz\n")
    done = run_probe(shell, script, envelope.new_challenge(), "c1")
    assert done.returncode == probe.EXIT_KEY
    assert "not a netmetrix sh key file (run upload)" in done.stderr
    done = run_probe(shell, script, "not-a-challenge", "c1")
    assert done.returncode == probe.EXIT_USAGE


def cpu_counters() -> tuple[int, int]:
    """(total, busy) jiffies of /proc/stat's cpu line, as psutil counts them."""
    with open("/proc/stat") as stat_file:
        fields = [int(x) for x in stat_file.readline().split()[1:9]]
    total = sum(fields)
    return total, total - fields[3] - fields[4]


def test_cpu_percent_covers_the_time_since_the_previous_run(
    shell: str, placed: tuple[Path, bytes]
) -> None:
    script, key = placed
    state = script.parent / "client.sh.c1.state"
    with open("/proc/uptime") as uptime:
        now = int(float(uptime.read().split()[0]) * 100)
    # a previous run one second ago that saw no CPU time at all: cpu_percent is then
    # the average since boot, which moves too slowly to differ within this test
    state.write_text(f"netmetrix-sh-state 1\n{now - 100} 0 0\n")
    state.chmod(0o600)
    total, busy = cpu_counters()
    challenge = envelope.new_challenge()

    done = run_probe(shell, script, challenge, "c1")

    assert done.returncode == 0, done.stderr
    keys = {envelope.key_id(key): key}
    message = envelope.open_envelope(done.stdout.strip(), keys=keys, host="h1", challenge=challenge)
    [percent] = [s.value for s in message.samples if s.metric == "cpu_percent"]
    assert percent == pytest.approx(100 * busy / total, abs=0.5)
    magic, counters = state.read_text().splitlines()
    assert magic == "netmetrix-sh-state 1"
    was, total_after, busy_after = (int(x) for x in counters.split())
    assert was > now - 100
    assert (total_after, busy_after) >= (total, busy)  # this run's counters, for the next
    assert stat.S_IMODE(state.stat().st_mode) == 0o600

    state.chmod(0o622)  # another user could plant any cpu_percent here
    done = run_probe(shell, script, envelope.new_challenge(), "c1")
    assert done.returncode == probe.EXIT_UNSAFE
    assert done.stderr == (
        f"netmetrix probe: refused {state}: writable by group/others (-rw--w--w-)\n"
    )


def test_streaming_answers_each_line_and_ends_at_eof_or_silence(
    shell: str, placed: tuple[Path, bytes]
) -> None:
    script, key = placed
    keys = {envelope.key_id(key): key}
    with subprocess.Popen(
        [shell, str(script), probe.WATCH_FLAG, "c1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        assert child.stderr is not None
        try:
            for _ in range(2):
                challenge = envelope.new_challenge()
                child.stdin.write(f"{challenge} 1 60\n")
                child.stdin.flush()
                line = child.stdout.readline().strip()
                message = envelope.open_envelope(line, keys=keys, host="h1", challenge=challenge)
                assert {s.metric for s in message.samples} == BASIC
            # silence: no line within IDLE (1 s) ends it, status 0, saying why
            assert child.wait(timeout=60) == 0
            assert "no request for 1s; ending" in child.stderr.read()
        finally:
            if child.poll() is None:
                child.kill()
    done = subprocess.run(
        [shell, str(script), probe.WATCH_FLAG, "c1"],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")  # EOF: ends at once


def test_its_own_deadline_ends_a_hung_run(placed: tuple[Path, bytes], tmp_path: Path) -> None:
    script, _ = placed
    hung = tmp_path / "hung"
    hung.mkdir()
    for tool in ("openssl", "tr", "date", "sleep", "ls"):
        real = subprocess.check_output(["which", tool], text=True).strip()
        (hung / tool).symlink_to(real)
    # a df stuck as on a dead NFS server, and no timeout(1) to bound it: only the watchdog can
    (hung / "df").write_text("#!/bin/sh\nexec sleep 600\n")
    (hung / "df").chmod(0o700)
    began = time.monotonic()
    done = run_probe(
        "/bin/dash",
        script,
        envelope.new_challenge(),
        "c1",
        env={"PATH": str(hung), "NETMETRIX_DEADLINE": "2"},
    )
    assert done.returncode == -signal.SIGKILL
    assert "netmetrix sh probe: still running after its 2s deadline; ending" in done.stderr
    assert done.stdout == ""
    assert time.monotonic() - began < 120  # not df's 600 s


def test_the_probe_file_ships_with_the_package() -> None:
    assert shprobe.source().startswith(b"#!/bin/sh\n")
    assert f"PROBE_VERSION={shprobe.VERSION}\n".encode() in shprobe.source()


# ---------------------------------------------------------------- agreement with probe.py


def df_from_capture(tmp_path: Path, meta: dict[str, object]) -> Path:
    """A directory whose `df` answers `df -P -k -- PATH` from a capture's statvfs table,
    by df's arithmetic: the mounts are the capture's, not this machine's."""
    table = tmp_path / "statvfs.json"
    table.write_text(json.dumps(meta["statvfs"]))
    directory = tmp_path / "df-bin"
    directory.mkdir()
    script = directory / "df"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"fields = json.load(open({str(table)!r})).get(sys.argv[-1])\n"
        "if not isinstance(fields, list):\n"
        "    sys.exit('df: ' + sys.argv[-1] + ': No such file or directory')\n"
        "_, frsize, blocks, bfree, bavail = fields[:5]\n"
        "total, used, avail = (n * frsize // 1024 for n in (blocks, blocks - bfree, bavail))\n"
        "use = -(-100 * used // (used + avail)) if used + avail else 0\n"
        "print('Filesystem     1024-blocks  Used Available Capacity Mounted on')\n"
        "print('captured %d %d %d %d%% %s' % (total, used, avail, use, sys.argv[-1]))\n"
    )
    script.chmod(0o700)
    return directory


@pytest.mark.parametrize("name", ["vm", "container", "many/after"])
def test_it_agrees_with_probe_py_on_real_captures(
    name: str, shell: str, placed: tuple[Path, bytes], tmp_path: Path, monkeypatch
) -> None:
    """Both probes on one captured /proc: the same series and values (the sh probe's
    percentages have 3 decimals, its sizes whole KiB).  ``many`` has a mount hidden by
    a later one, a device mounted twice, an escaped blank in a path and an overlay."""
    from test_probe import capture, captured_statvfs

    root, meta = capture(name)
    monkeypatch.setattr(os, "statvfs", captured_statvfs(root, meta))
    samples, errors = probe.collect(root, None, meta["time"])
    assert errors == []
    expected = {
        (metric, tuple(sorted(labels.items()))): value
        for metric, labels, value in samples
        if metric in BASIC and metric != "probe_duration_sec"
    }
    script, key = placed
    challenge = envelope.new_challenge()
    path = f"{df_from_capture(tmp_path, meta)}:{os.environ['PATH']}"
    done = run_probe(
        shell, script, challenge, "c1", env={"NETMETRIX_PROC": f"{root}/proc", "PATH": path}
    )
    assert done.returncode == 0, done.stderr
    keys = {envelope.key_id(key): key}
    message = envelope.open_envelope(done.stdout.strip(), keys=keys, host="h1", challenge=challenge)
    assert message.errors == ()
    got = {
        (s.metric, s.labels): s.value for s in message.samples if s.metric != "probe_duration_sec"
    }
    assert got.keys() == expected.keys()
    for series, value in expected.items():
        tolerance = 1024 if series[0].endswith("_bytes") else 0.001
        assert got[series] == pytest.approx(value, abs=tolerance), series


def test_mount_paths_are_escaped_or_skipped_never_break_the_message(
    placed: tuple[Path, bytes], tmp_path: Path
) -> None:
    """Quotes and backslashes in a mount path are escaped for JSON; a path that is not
    printable ASCII is skipped with an error (sh cannot check UTF-8), not sent broken."""
    from test_probe import capture

    root, meta = capture("vm")
    tree = tmp_path / "proc"
    subprocess.run(["cp", "-r", f"{root}/proc", str(tree)], check=True)
    odd = {'/mnt/q"uote': '/mnt/q"uote', "/mnt/back\\134slash": "/mnt/back\\slash"}
    with (tree / "mounts").open("ab") as mounts:
        for n, escaped in enumerate(odd):
            mounts.write(f"/dev/vd{n}x {escaped} ext4 rw 0 0\n".encode())
        mounts.write("/dev/vdz /mnt/caf\u00e9 ext4 rw 0 0\n".encode())
    statvfs = dict(meta["statvfs"])
    for path in [*odd.values(), "/mnt/caf\u00e9"]:
        statvfs[path] = statvfs["/"]
    script, key = placed
    challenge = envelope.new_challenge()
    path = f"{df_from_capture(tmp_path, {'statvfs': statvfs})}:{os.environ['PATH']}"

    done = run_probe(
        "/bin/dash", script, challenge, "c1", env={"NETMETRIX_PROC": str(tree), "PATH": path}
    )

    assert done.returncode == 0, done.stderr
    keys = {envelope.key_id(key): key}
    message = envelope.open_envelope(done.stdout.strip(), keys=keys, host="h1", challenge=challenge)
    labelled = {dict(s.labels)["mount"] for s in message.samples if s.metric == "disk_total_bytes"}
    assert labelled == {"/", *odd.values()}
    assert message.errors == ("disk: a mount path that is not printable ASCII skipped",)
