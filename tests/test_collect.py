"""upload + execute end to end against real sshd servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ports
import psutil
import pytest
from conftest import Fleet, Run, line_of

from netmetrix import probe
from netmetrix.store import HostRow, Store

pytestmark = pytest.mark.sshd

Cli = Callable[..., Run]


def store_of(fleet: Fleet) -> Store:
    return Store.open(f"sqlite:///{fleet.database}")


def key_file(fleet: Fleet, name: str) -> Path:
    """Host ``name``'s key file, named after the fleet store's collector id (#11)."""
    with store_of(fleet) as store:
        return fleet.remote_dir(name) / f"client.py.{store.collector_id()}.key"


def latest_by_host(fleet: Fleet) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    with store_of(fleet) as store:
        rows = store.latest()
    result: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for row in rows:
        result.setdefault(row.host, {})[(row.metric, tuple(sorted(row.labels.items())))] = row.value
    return result


def test_upload_then_execute_stores_every_metric(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("f1", 0)
    fleet.host("f2", 1)
    fleet.host("nosftp", 2)

    up = netmetrix("--config", fleet.config, "upload")
    assert up.code == 0, up.err
    assert "[nosftp] SUCCESS! Script" in up.err
    assert "uploaded (exec)" in up.err
    assert "[f1] SUCCESS! Script" in up.err
    assert "uploaded (sftp)" in up.err
    for name in ("f1", "f2", "nosftp"):
        script = fleet.remote_dir(name) / "client.py"
        key = key_file(fleet, name)
        assert script.read_bytes() == (Path(probe.__file__)).read_bytes()
        assert script.stat().st_mode & 0o777 == 0o700
        assert key.stat().st_mode & 0o777 == 0o600
        assert probe.read_key(str(key))[0] == name

    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 0, ran.err
    assert f"[f1] SUCCESS! Script `{fleet.remote_dir('f1')}/client.py` executed" in ran.err
    assert "execute: 3 ok" in ran.err

    data = latest_by_host(fleet)
    assert set(data) == {"f1", "f2", "nosftp"}
    for series in data.values():
        names = {metric for metric, _ in series}
        assert names == {m[0] for m in probe.METRICS} | {"up"}
        assert series[("up", ())] == 1.0
        assert series[("cpu_count", ())] == psutil.cpu_count()
        assert abs(series[("mem_percent", ())] - psutil.virtual_memory().percent) < 2
        assert abs(series[("uptime_sec", ())] - (time.time() - psutil.boot_time())) < 5
        for (metric, labels), value in series.items():
            if metric == "disk_total_bytes":
                assert value == psutil.disk_usage(dict(labels)["mount"]).total
            assert value >= 0, (metric, labels)


def test_keys_are_random_per_host_and_stored(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("a", 0)
    fleet.host("b", 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    with store_of(fleet) as store:
        keys = store.host_keys(["a", "b"])
    remote = {n: probe.read_key(str(key_file(fleet, n)))[1] for n in "ab"}
    assert remote["a"] != remote["b"]
    for name in "ab":
        assert list(keys[name].values()) == [remote[name]]
    # Re-upload rotates: a new key, and only the new key is kept.
    assert netmetrix("--config", fleet.config, "upload", "-h", "a").code == 0
    with store_of(fleet) as store:
        rotated = store.host_keys(["a"])["a"]
    assert list(rotated.values()) == [probe.read_key(str(key_file(fleet, "a")))[1]]
    assert remote["a"] not in rotated.values()


def test_down_host_fails_alone(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("good", 0)
    fleet.host("down", 0, port=str(ports.free_port()))
    up = netmetrix("--config", fleet.config, "upload")
    assert up.code == 1
    assert "[down] FAILED: connection refused (127.0.0.1:" in up.err

    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 1
    assert "ERROR [down] FAILED: connection refused (127.0.0.1:" in ran.err
    assert "execute: 1 ok, 1 refused in " in ran.err
    assert "failed: down" in ran.err
    data = latest_by_host(fleet)
    assert data["good"][("up", ())] == 1.0
    assert data["down"] == {("up", ()): 0.0}
    with store_of(fleet) as store:
        rows = {h.name: h for h in store.hosts()}
    assert rows["good"].last_error is None
    assert rows["good"].last_seen is not None
    assert rows["down"].last_seen is None
    assert "refused" in (rows["down"].last_error or "")


def test_closed_port_after_upload_is_refused(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("good", 0)
    fleet.host("gone", 1)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    fleet.hosts[1]["port"] = str(ports.free_port())
    fleet.write()
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 1
    assert "ERROR [gone] FAILED: connection refused" in ran.err
    assert latest_by_host(fleet)["good"][("up", ())] == 1.0


def test_hung_probe_times_out_without_slowing_others(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.settings["command_timeout"] = "8"
    fleet.host("fast", 0)
    fleet.host("hung", 1, python=fleet.wrapper("hang", "exec sleep 60"))
    assert netmetrix("--config", fleet.config, "upload").code == 0
    started = time.monotonic()
    ran = netmetrix("--config", fleet.config, "execute")
    elapsed = time.monotonic() - started
    assert ran.code == 1
    assert "ERROR [hung] FAILED: timeout after 8s (run; ended on the host)" in ran.err
    assert "[fast] SUCCESS!" in ran.err
    assert elapsed < 40  # bounded by the 8 s deadline, not by the 60 s sleep
    assert latest_by_host(fleet)["hung"] == {("up", ()): 0.0}


def _flip_wrapper(fleet: Fleet) -> str:
    """Runs the real probe and flips one character in the middle of its envelope."""
    flip = (
        "import sys; p = sys.stdin.read().strip().split('.'); i = len(p[2]) // 2; "
        "c = 'A' if p[2][i] != 'A' else 'B'; p[2] = p[2][:i] + c + p[2][i + 1:]; print('.'.join(p))"
    )
    return fleet.wrapper("flip", f'"{sys.executable}" "$@" | "{sys.executable}" -c "{flip}"')


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("garbage", "bad message: no envelope in probe output"),
        ("flipped", "bad message: authentication failed (tampered or wrong key)"),
        ("replayed", "bad message: stale challenge (a replayed message)"),
        ("other-host", "bad message: sealed with an unknown key (run upload again)"),
    ],
)
def test_bad_messages_are_rejected(fleet: Fleet, netmetrix: Cli, case: str, reason: str) -> None:
    fleet.host("victim", 0)
    fleet.host("other", 1)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    capture = fleet.root / "captured"
    tee = fleet.wrapper("tee", f'"{sys.executable}" "$@" | tee "{capture}"')
    if case == "replayed":  # capture the victim's own earlier answer
        fleet.hosts[0]["python"] = tee
    elif case == "other-host":
        fleet.hosts[1]["python"] = tee
    fleet.write()
    assert netmetrix("--config", fleet.config, "execute").code == 0
    fleet.hosts[0]["python"] = {
        "garbage": fleet.wrapper("garbage", "echo 'Welcome to host!'; echo 'not an envelope'"),
        "flipped": _flip_wrapper(fleet),
        "replayed": fleet.wrapper("replay", f'cat "{capture}"'),
        "other-host": fleet.wrapper("replay", f'cat "{capture}"'),
    }[case]
    fleet.hosts[1]["python"] = sys.executable
    fleet.write()
    with store_of(fleet) as store:
        before = len(store.history("victim", "uptime_sec"))

    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 1
    assert f"ERROR [victim] FAILED: {reason}" in ran.err
    assert "[other] SUCCESS!" in ran.err
    with store_of(fleet) as store:
        assert len(store.history("victim", "uptime_sec")) == before  # nothing stored
        assert [s.value for s in store.history("victim", "up")][-1] == 0.0


def test_another_hosts_message_under_a_shared_key_is_rejected(fleet: Fleet, netmetrix: Cli) -> None:
    """Even if two hosts held the same key, the host name bound in the message differs."""
    fleet.host("a", 0)
    fleet.host("b", 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    a_key = key_file(fleet, "a")
    host, key = probe.read_key(str(a_key))
    assert host == "a"
    with store_of(fleet) as store:
        store.add_pending_keys([("b", probe.key_id(key), key)])  # b's store trusts a's key too
    key_file(fleet, "b").write_text(a_key.read_text())
    ran = netmetrix("--config", fleet.config, "execute", "-h", "b")
    assert ran.code == 1
    assert "ERROR [b] FAILED: bad message: sealed for host 'a', not 'b'" in ran.err


def test_changed_host_key_is_refused(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("f1", 0)
    servers = fleet.farm.servers
    fleet.known_hosts.write_text(f"[127.0.0.1]:{servers[0].port} {servers[1].host_key_line}\n")
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 1
    assert "ERROR [f1] FAILED: host key changed: [127.0.0.1]:" in ran.err
    assert not (fleet.remote_dir("f1") / "client.py").exists()


def test_unknown_host_key_is_refused_under_strict(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("f1", 0)
    fleet.known_hosts.write_text("")
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 1
    assert "ERROR [f1] FAILED: host key unknown: add it with `ssh-keyscan -p" in ran.err


def test_accept_new_records_unknown_key_and_refuses_a_changed_one(
    fleet: Fleet, netmetrix: Cli
) -> None:
    fleet.settings["policy"] = "accept-new"
    fleet.host("f1", 0)
    fleet.known_hosts.unlink()
    assert netmetrix("--config", fleet.config, "upload").code == 0
    server = fleet.farm.servers[0]
    assert fleet.known_hosts.read_text() == server.known_hosts_line + "\n"
    assert netmetrix("--config", fleet.config, "execute").code == 0  # now known: strict check
    fleet.known_hosts.write_text(
        f"[127.0.0.1]:{server.port} {fleet.farm.servers[1].host_key_line}\n"
    )
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 1
    assert "host key changed" in ran.err


def test_probe_missing_says_run_upload(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("f1", 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    (fleet.remote_dir("f1") / "client.py").unlink()
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 1
    assert f"[f1] FAILED: probe {fleet.remote_dir('f1')}/client.py missing — run upload" in ran.err


def test_crash_between_key_upload_and_activation_loses_nothing(
    fleet: Fleet, netmetrix: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.host("f1", 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    old_key = probe.read_key(str(key_file(fleet, "f1")))[1]

    def crash(*_args: object) -> None:
        raise SystemExit("simulated crash after the remote key was replaced")

    monkeypatch.setattr(Store, "activate_keys", crash)
    with pytest.raises(SystemExit):
        netmetrix("--config", fleet.config, "upload")
    monkeypatch.undo()
    new_key = probe.read_key(str(key_file(fleet, "f1")))[1]
    assert new_key != old_key
    with store_of(fleet) as store:
        assert set(store.host_keys(["f1"])["f1"].values()) == {old_key, new_key}

    assert netmetrix("--config", fleet.config, "execute").code == 0
    with store_of(fleet) as store:
        assert list(store.host_keys(["f1"])["f1"].values()) == [new_key]  # promoted


def test_failed_upload_keeps_the_old_key_working(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("f1", 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    real_port = fleet.hosts[0]["port"]

    fleet.hosts[0]["port"] = str(ports.free_port())
    fleet.write()
    assert netmetrix("--config", fleet.config, "upload").code == 1
    fleet.hosts[0]["port"] = real_port
    fleet.write()
    assert netmetrix("--config", fleet.config, "execute").code == 0


def test_required_encryption_refuses_hosts_that_can_only_sign(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.settings["encryption"] = "required"
    blocker = fleet.root / "nocrypto"
    blocker.mkdir()
    (blocker / "cryptography.py").write_text("raise ImportError('hidden by the test')\n")
    hide = fleet.wrapper("nocrypto", f'PYTHONPATH="{blocker}" exec "{sys.executable}" "$@"')
    fleet.host("signer", 0, python=hide)
    fleet.host("encrypter", 1)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 1
    assert "ERROR [signer] FAILED: bad message: host sent HS256" in ran.err
    assert "[encrypter] SUCCESS!" in ran.err
    fleet.settings["encryption"] = "preferred"
    fleet.write()
    assert netmetrix("--config", fleet.config, "execute").code == 0


def test_unknown_host_name_lists_known_ones(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("f1", 0)
    fleet.host("f2", 0)
    ran = netmetrix("--config", fleet.config, "execute", "-h", "f9")
    assert ran.code == 2
    assert ran.err.strip() == 'config.xml: unknown host "f9"; known hosts: f1, f2'


def test_broken_config_exits_2_with_file_and_line(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("f1", 0, port="ssh")
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 2
    line = line_of(fleet.config, '<host name="f1"')
    assert (
        f'{fleet.config}:{line}: <host name="f1">: port must be an integer 1-65535, got "ssh"'
        in ran.err
    )
    assert not fleet.database.exists()  # validated before anything is touched


def test_cli_runs_as_a_real_process(fleet: Fleet) -> None:
    import subprocess

    fleet.host("f1", 0)
    env = {**os.environ, "NETMETRIX_CONFIG": str(fleet.config)}
    exe = Path(sys.executable).with_name("netmetrix")
    for verb in ("upload", "execute"):
        done = subprocess.run([exe, verb], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout == ""  # stdout is for data only
    with store_of(fleet) as store:
        assert json.loads(json.dumps([s.value for s in store.history("f1", "up")])) == [1.0]


def test_ssh_config_supplies_missing_host_fields(
    fleet: Fleet, netmetrix: Cli, isolated_home: Path
) -> None:
    """<host name="..."/> alone: HostName, Port, User, IdentityFile come from ~/.ssh/config."""
    server = fleet.farm.servers[1]
    (isolated_home / ".ssh").mkdir()
    (isolated_home / ".ssh" / "config").write_text(
        "Host aliased\n"
        "  HostName 127.0.0.1\n"
        f"  Port {server.port}\n"
        "  User root\n"
        f"  IdentityFile {fleet.farm.client_key}\n"
    )
    fleet.hosts.append(
        {"name": "aliased", "directory": str(fleet.remote_dir("aliased")), "python": sys.executable}
    )
    fleet.write()
    assert netmetrix("--config", fleet.config, "upload").code == 0
    assert netmetrix("--config", fleet.config, "execute").code == 0
    assert latest_by_host(fleet)["aliased"][("up", ())] == 1.0
    # The host key is checked against the real address and port, not the alias.
    other = fleet.farm.servers[0]
    fleet.known_hosts.write_text(f"[127.0.0.1]:{server.port} {other.host_key_line}\n")
    fleet.settings["policy"] = "accept-new"
    fleet.write()
    ran = netmetrix("--config", fleet.config, "-v", "execute")
    assert ran.code == 1
    assert f"host key changed: [127.0.0.1]:{server.port} does not match" in ran.err


def test_missing_identity_file_is_a_clear_host_error(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("f1", 0, key=str(fleet.root / "no_such_key"))
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 1
    key = fleet.root / "no_such_key"
    assert f"ERROR [f1] FAILED: cannot read private key {key}: No such file or directory" in ran.err


def test_what_the_probe_could_not_read_is_logged(fleet: Fleet, netmetrix: Cli) -> None:
    hook = fleet.root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "def _broken(path):\n"
        "    raise OSError(5, 'simulated I/O error', path)\n"
        "os.statvfs = _broken\n"
    )
    python = fleet.wrapper("iofail", f'PYTHONPATH="{hook}" exec "{sys.executable}" "$@"')
    fleet.host("f1", 0, python=python)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 0  # the other metrics arrived
    assert "WARNING [f1] probe could not read " in ran.err
    assert "simulated I/O error" in ran.err
    data = latest_by_host(fleet)["f1"]
    assert ("mem_percent", ()) in data
    assert not any(metric == "disk_percent" for metric, _ in data)


# -- whatever one host sends, the others are stored (#10) ------------------------

RECURSION_ENVELOPE = f"NMX1.{probe.b64e(b'[' * 1000)}.AA.AA"  # no key needed: was RecursionError
HOSTILE = {
    "recursion": (
        f"printf '%s\\n' '{RECURSION_ENVELOPE}'",
        "bad message: malformed header (nested over 8 levels)",
    ),
    "nul": (
        "printf 'oops\\000' >&2; exit 1",
        "probe exited with status 1: oops\\x00",
    ),
    "escapes": (
        "printf 'boom\\033[2J\\033]0;pwned\\007 now\\033[31m\\n' >&2; exit 1",
        "probe exited with status 1: boom now",
    ),
}


def use_database(fleet: Fleet, url: str) -> None:
    """Point the fleet's config.xml at ``url`` (conftest's ``store_url``: SQLite or PostgreSQL)."""
    fleet.settings["database"] = url
    fleet.write()


def hostile_fleet(fleet: Fleet, url: str, body: str) -> None:
    """good1, good2 and hostile (its `python` a shell script printing ``body``), uploaded."""
    fleet.host("good1", 0)
    fleet.host("hostile", 1, python=fleet.wrapper("hostile", body))
    fleet.host("good2", 1)
    use_database(fleet, url)
    up = netmetrix_main("--config", fleet.config, "upload")
    assert up == 0


def netmetrix_main(*args: object) -> int:
    from netmetrix.cli import main

    return main([os.fspath(a) if isinstance(a, Path) else str(a) for a in args])


def assert_good_hosts_stored(url: str) -> dict[str, HostRow]:
    """good1 and good2 have every metric and up 1; returns the host rows by name."""
    with Store.open(url) as store:
        latest = store.latest()
        rows = {row.name: row for row in store.hosts()}
    for host in ("good1", "good2"):
        metrics = {s.metric: s.value for s in latest if s.host == host}
        assert metrics["up"] == 1.0
        assert {m[0] for m in probe.METRICS} <= set(metrics)
        assert rows[host].last_error is None
    assert {s.metric: s.value for s in latest if s.host == "hostile"} == {"up": 0.0}
    return rows


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_host_fails_alone(
    fleet: Fleet, netmetrix: Cli, store_url: str, case: str
) -> None:
    body, reason = HOSTILE[case]
    hostile_fleet(fleet, store_url, body)

    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 1
    assert "Traceback" not in ran.err
    assert f"ERROR [hostile] FAILED: {reason}\n" in ran.err
    assert "[good1] SUCCESS!" in ran.err
    assert "[good2] SUCCESS!" in ran.err
    assert "execute: 2 ok, 1 bad message in " in ran.err
    assert "\x00" not in ran.err
    assert "\x1b" not in ran.err
    rows = assert_good_hosts_stored(store_url)
    stored = reason if reason.startswith("bad message: ") else f"bad message: {reason}"
    assert rows["hostile"].last_error == stored  # the outcome once, clean, one line


def test_a_row_the_store_refuses_fails_that_host_only(
    fleet: Fleet, netmetrix: Cli, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: were a host string to slip past sanitising, the store still
    stores the others and reports that host, which execute then fails."""
    from netmetrix import envelope

    hostile_fleet(fleet, store_url, f'exec "{sys.executable}" "$@"')
    remote = fleet.remote_dir("hostile") / "client.py"
    source = remote.read_text()
    version = f'PROBE_VERSION = "{probe.PROBE_VERSION}"'
    assert version in source
    remote.write_text(source.replace(version, 'PROBE_VERSION = "0.1\\udcff"'))  # a lone surrogate
    monkeypatch.setattr(envelope, "clean", lambda text, limit=200: text[:limit], raising=False)

    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 1
    assert "Traceback" not in ran.err
    reason = (
        "the database refused this host's data: UnicodeEncodeError: 'utf-8' codec "
        "can't encode character '\\udcff' in position 3: surrogates not allowed"
    )
    assert f"ERROR [hostile] FAILED: {reason}\n" in ran.err
    assert "execute: 2 ok, 1 bad message in " in ran.err
    rows = assert_good_hosts_stored(store_url)
    assert rows["hostile"].last_error == f"bad message: {reason}"
    assert rows["hostile"].probe_version is None


# ------------------------------------------- nothing of a run lingers on the host (#10)


def _marked(marker: str) -> list[psutil.Process]:
    """The processes whose command line carries ``marker`` (this test's own)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if marker in " ".join(process.info["cmdline"] or ()):
            found.append(process)
    return found


def _wait_gone(marker: str, budget: float = 20.0) -> list[str]:
    """Wait (bounded) until no process carries ``marker``; describe those that remain."""
    deadline = time.monotonic() + budget
    left = _marked(marker)
    while left and time.monotonic() < deadline:
        psutil.wait_procs(left, timeout=max(0.1, min(1.0, deadline - time.monotonic())))
        left = _marked(marker)
    return [f"pid {p.pid}: {' '.join(p.info['cmdline'] or ())}" for p in left]


def _wait_for_pids(path: Path, count: int, budget: float = 20.0) -> None:
    """Wait (bounded) until the host's wrapper has written ``count`` PIDs to ``path``.

    After a collector-side timeout the login shell may still be starting the wrapper.
    """
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().split()) >= count:
            break
        time.sleep(0.1)
    assert path.exists(), f"the host's wrapper never ran ({path} missing)"
    assert len(path.read_text().split()) == count


def _kill_marked(marker: str) -> None:
    """Clean up after a failed test: kill, by PID, what carries this test's marker."""
    for process in _marked(marker):
        with contextlib.suppress(psutil.Error):
            process.kill()


@dataclass
class Login:
    """Where a lingering-process test logs in: as root, or as the unprivileged test user."""

    user: str
    python: str  # the host's real interpreter
    bin: Path  # where the host's wrapper scripts go (the login user must run them)
    directory: Path  # the probe's directory
    owner: tuple[int, int] | None = None  # chown wrappers to (uid, gid)

    def wrapper(self, name: str, body: str) -> str:
        """An executable shell script to use as the host's `python`."""
        path = self.bin / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(0o700)
        if self.owner is not None:
            os.chown(path, *self.owner)
        return str(path)


@pytest.fixture(params=["root", "user"])
def login(request: pytest.FixtureRequest, fleet: Fleet) -> Login:
    if request.param == "root":
        (fleet.root / "bin").mkdir(exist_ok=True)
        return Login("root", sys.executable, fleet.root / "bin", fleet.remote_dir("h"))
    test_user = request.getfixturevalue("test_user")
    user_dir: Path = request.getfixturevalue("user_dir")
    return Login(
        test_user.name,
        test_user.python,
        user_dir,
        user_dir / "probe",
        owner=(test_user.uid, test_user.gid),
    )


# Host `python` wrappers: each process they start sleeps with the test's marker on its
# command line and writes its PID to a file first (so the test knows they did run).
LINGERING = {
    "hung": "echo $$ >> {pids}; exec {sleeper}",
    "hung-with-child": "{sleeper} & echo $! >> {pids}; echo $$ >> {pids}; exec {sleeper}",
    "hung-detached-child": "({sleeper} & echo $! >> {pids}); echo $$ >> {pids}; exec {sleeper}",
}


@pytest.mark.parametrize("case", sorted(LINGERING))
def test_timeout_leaves_no_process_on_the_host(
    fleet: Fleet, netmetrix: Cli, login: Login, case: str
) -> None:
    """The host ends the run itself: OpenSSH ignores the collector's KILL for root logins."""
    marker = f"nmx-linger-{secrets.token_hex(6)}"
    pids = login.bin / f"{marker}.pids"
    sleeper = f'"{login.python}" -c "import time; time.sleep(1000)" {marker}'
    python = login.wrapper("hang", LINGERING[case].format(pids=pids, sleeper=sleeper))
    fleet.settings["command_timeout"] = "3"
    fleet.host("h", 0, user=login.user, directory=str(login.directory), python=python)
    try:
        assert netmetrix("--config", fleet.config, "upload").code == 0
        ran = netmetrix("--config", fleet.config, "execute")
        assert ran.code == 1
        # "(run; ended on the host)" when the host was first; a slow login shell (root's
        # .bashrc here runs pyenv) can delay the host's clock past the collector's.
        assert "ERROR [h] FAILED: timeout after 3s (run" in ran.err
        _wait_for_pids(pids, 1 if case == "hung" else 2)  # they did run
        assert _wait_gone(marker) == []
    finally:
        _kill_marked(marker)


def test_a_stray_child_holding_stdout_neither_delays_nor_outlives_the_run(
    fleet: Fleet, netmetrix: Cli, login: Login
) -> None:
    """The probe answers, but a child of the host's python wrapper keeps stdout open."""
    marker = f"nmx-stray-{secrets.token_hex(6)}"
    pids = login.bin / f"{marker}.pids"
    sleeper = f'"{login.python}" -c "import time; time.sleep(1000)" {marker}'
    body = f'({sleeper} & echo $! >> {pids}); exec "{login.python}" "$@"'
    fleet.host("h", 0, user=login.user, directory=str(login.directory))
    fleet.hosts[0]["python"] = login.wrapper("stray", body)
    fleet.write()
    try:
        assert netmetrix("--config", fleet.config, "upload").code == 0
        ran = netmetrix("--config", fleet.config, "execute")
        assert ran.code == 0, ran.err  # not a timeout: the channel closed once the probe ended
        assert "[h] SUCCESS!" in ran.err
        _wait_for_pids(pids, 1)
        assert _wait_gone(marker) == []
    finally:
        _kill_marked(marker)
