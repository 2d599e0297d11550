"""Two setups, one fleet (#11 items 6, 7): collector ids, the upload lock, per-host activation.

Real sshd (the farm), real SQLite files and a real PostgreSQL server; the
"other collector" is a second config with its own store, or a second
``netmetrix`` process started with ``python -m netmetrix``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pgserver
import pytest
import sshd
from conftest import Fleet, Run, line_of

from netmetrix import collect, envelope, probe
from netmetrix.config import load_config
from netmetrix.configxml import ConfigXml, Host, render
from netmetrix.fleet import HostResult
from netmetrix.store import Activated, Store, UploadRunning, meta_table

Cli = Callable[..., Run]

DATA = Path(__file__).resolve().parent / "data"
# The probe as netmetrix shipped it before collector ids (git show 35e7326:src/netmetrix/probe.py).
OLD_PROBE = DATA / "probe-without-collector-id.py.txt"
ID = re.compile(r"[0-9a-f]{8}")
DEADLINE = 120.0  # seconds for a child netmetrix process: generous, the machine may be loaded


# ---------------------------------------------------------------- helpers


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], str]]:
    """Make URLs of fresh stores of ``backend``; PostgreSQL databases are dropped afterwards."""
    made: list[str] = []
    count = iter(range(1000))
    server: pgserver.Postgres | None = (
        request.getfixturevalue("postgres") if backend == "postgresql" else None
    )

    def make() -> str:
        if server is None:
            return f"sqlite:///{tmp_path}/store{next(count)}/netmetrix.db"
        made.append(server.create_database())
        return server.url(made[-1])

    try:
        yield make
    finally:
        for name in made:
            assert server is not None
            server.drop_database(name)


def setup(farm: sshd.Farm, root: Path, remote: Path, url: str, names: tuple[str, ...]) -> Fleet:
    """A config in ``root`` with store ``url`` and hosts ``names`` (farm servers 0, 1, 2...),
    each host's files in ``remote``/<name>: the same place for every config given ``remote``."""
    root.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(root=root, farm=farm, hosts=[], settings={"concurrency": "1", "database": url})
    fleet.known_hosts.write_text(farm.known_hosts_text())
    for index, name in enumerate(names):
        fleet.host(name, index % len(farm.servers), directory=str(remote / name))
    return fleet


def url_of(fleet: Fleet) -> str:
    return load_config(fleet.config).database


def collector_id(fleet: Fleet) -> str:
    with Store.open(url_of(fleet)) as store:
        return store.collector_id()


def keys_match(fleet: Fleet, remote: Path) -> dict[str, bool]:
    """Host -> its only stored key is the one in its remote key file (this store's)."""
    with Store.open(url_of(fleet)) as store:
        cid = store.collector_id()
        stored = store.host_keys([h["name"] for h in fleet.hosts])
    found = {}
    for host in fleet.hosts:
        name = host["name"]
        _, key = probe.read_key(str(remote / name / f"client.py.{cid}.key"))
        found[name] = list(stored.get(name, {}).values()) == [key]
    return found


def start_cli(*args: str | os.PathLike[str]) -> subprocess.Popen[str]:
    """``netmetrix ARGS`` as a process of its own (its own pid, as a second collector has)."""
    return subprocess.Popen(
        [sys.executable, "-m", "netmetrix", *(os.fspath(arg) for arg in args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> Run:
    try:
        out, err = process.communicate(timeout=DEADLINE)
    finally:
        if process.poll() is None:  # only on a failure above: never leave it behind
            process.kill()
            process.wait()
    return Run(process.returncode, out, err)


NAMES = ("f1", "f2", "nosftp")  # the third farm server has no SFTP: upload over exec


# ---------------------------------------------------------------- item 6: two setups


@pytest.mark.sshd
def test_two_configs_share_the_hosts_and_both_collect_every_run(
    farm: sshd.Farm, tmp_path: Path, netmetrix: Cli, new_url: Callable[[], str]
) -> None:
    """Issue #11's demo: the second upload overwrote the first one's key, and each execute
    then failed with "sealed with an unknown key" (and paged everyone with up==0)."""
    remote = tmp_path / "remote"
    one = setup(farm, tmp_path / "one", remote, new_url(), NAMES)
    two = setup(farm, tmp_path / "two", remote, new_url(), NAMES)
    ids = collector_id(one), collector_id(two)
    assert ID.fullmatch(ids[0])
    assert ID.fullmatch(ids[1])
    assert ids[0] != ids[1]

    for round_ in range(3):
        for fleet in (one, two):
            up = netmetrix("--config", fleet.config, "upload")
            assert up.code == 0, (round_, up.err)
        for fleet in (one, two):
            ran = netmetrix("--config", fleet.config, "execute")
            assert ran.code == 0, (round_, ran.err)
            assert "execute: 3 ok" in ran.err
        for fleet in (one, two):
            assert keys_match(fleet, remote) == dict.fromkeys(NAMES, True)

    for name in NAMES:  # one probe; a key and a state file per collector, each private
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (remote / name).iterdir()}
        expected = {"client.py": 0o700}
        for cid in ids:
            expected |= {f"client.py.{cid}.key": 0o600, f"client.py.{cid}.state": 0o600}
            expected |= {f"client.py.{cid}.checks": 0o600}  # its signed custom checks (#17)
        assert files == expected
    for fleet in (one, two):
        with Store.open(url_of(fleet)) as store:
            assert [s.value for s in store.history("f1", "up")] == [1.0, 1.0, 1.0]


@pytest.mark.sshd
def test_db_info_shows_the_id_that_names_the_remote_files(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("f1", 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    info = netmetrix("--config", fleet.config, "db", "info")
    assert info.code == 0
    [cid] = re.findall(r"^collector_id +(\S+)$", info.out, re.MULTILINE)
    assert ID.fullmatch(cid)
    assert sorted(p.name for p in fleet.remote_dir("f1").iterdir()) == [
        "client.py",
        f"client.py.{cid}.checks",  # signed custom checks (#17), empty without <checks>
        f"client.py.{cid}.key",
    ]
    assert netmetrix("--config", fleet.config, "execute").code == 0
    assert (fleet.remote_dir("f1") / f"client.py.{cid}.state").is_file()
    assert not (fleet.remote_dir("f1") / "client.py.state").exists()


@pytest.mark.sshd
def test_a_probe_older_than_collector_ids_says_run_upload(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("f1", 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    script = fleet.remote_dir("f1") / "client.py"
    shutil.copyfile(OLD_PROBE, script)  # as if uploaded by the netmetrix before this one
    script.chmod(0o700)
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 1
    assert (
        f"ERROR [f1] FAILED: probe {script} is from an older netmetrix (it takes no"
        " collector id) — run upload\n"
    ) in ran.err
    assert netmetrix("--config", fleet.config, "upload").code == 0
    assert netmetrix("--config", fleet.config, "execute").code == 0


@pytest.mark.sshd
def test_a_missing_key_file_names_this_collectors_file(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("f1", 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    cid = collector_id(fleet)
    key = fleet.remote_dir("f1") / f"client.py.{cid}.key"
    shutil.copyfile(key, fleet.remote_dir("f1") / "client.py.key")  # a legacy key is not used
    key.unlink()
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 1
    assert f"ERROR [f1] FAILED: probe key {key} missing (collector id {cid}) — run upload\n" in (
        ran.err
    )


def run_probe(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def test_the_probe_reads_the_named_collectors_files(tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    shutil.copyfile(probe.__file__, script)
    keys = {cid: envelope.new_key() for cid in ("aaaa1111", "bbbb2222", None)}
    for cid, key in keys.items():
        path = Path(probe.file_names(str(script), cid)[0])
        path.write_text(probe.key_file_text("f4", key))
        path.chmod(0o600)
    for cid, key in keys.items():  # None: a collector older than ids falls back to client.py.key
        challenge = envelope.new_challenge()
        done = run_probe(script, challenge, *([cid] if cid else []))
        assert (done.returncode, done.stderr) == (0, "")
        message = envelope.open_envelope(
            envelope.find_envelope(done.stdout),
            keys={probe.key_id(key): key},
            host="f4",
            challenge=challenge,
        )
        assert message.kid == probe.key_id(key)
        assert Path(probe.file_names(str(script), cid)[1]).is_file()

    done = run_probe(script, envelope.new_challenge(), "cccc3333")
    assert done.returncode == probe.EXIT_KEY
    assert f"cannot read key {script}.cccc3333.key: " in done.stderr
    for bad in ("../x", "AB", "a.b", ""):  # part of a file name: nothing but [0-9a-z]
        done = run_probe(script, envelope.new_challenge(), bad)
        assert done.returncode == probe.EXIT_USAGE, bad
        assert done.stderr.startswith("usage: ")


def test_the_old_probe_refuses_the_new_command_line(tmp_path: Path) -> None:
    """What the collector relies on to say "run upload" (see the sshd test above)."""
    script = tmp_path / "client.py"
    shutil.copyfile(OLD_PROBE, script)
    done = run_probe(script, envelope.new_challenge(), "aaaa1111")
    assert done.returncode == probe.EXIT_USAGE == 2
    assert "usage: " in done.stderr


# ---------------------------------------------------------------- item 6: one config


def write_hosts(tmp_path: Path, *hosts: Host) -> Path:
    config = tmp_path / "config.xml"
    config.write_text(render(ConfigXml(hosts=hosts)))
    return config


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (
            Host(name="a", address="10.0.0.1", user="mon"),
            Host(name="b", address="10.0.0.1", port=22, user="mon"),
        ),
        (
            Host(name="a", address="db.example.com", directory="~/m"),
            Host(name="b", address="DB.example.com", directory="~/m/"),
        ),
        (Host(name="web1"), Host(name="b", address="web1", directory="~/.cache/netmetrix")),
    ],
)
def test_two_hosts_with_the_same_remote_files_are_refused(
    tmp_path: Path, netmetrix: Cli, first: Host, second: Host
) -> None:
    config = write_hosts(tmp_path, first, second)
    ran = netmetrix("--config", config, "config", "check")
    assert ran.code == 2
    first_line = line_of(config, f'<host name="{first.name}"')
    assert ran.err == (
        f'{config}:{first_line + 1}: <host name="b">: same address, port, user and directory as'
        f' <host name="{first.name}"> at line {first_line}: both would use one key file, each'
        " upload overwriting the other's key; give one of them another directory\n"
    )


def test_hosts_differing_in_port_user_or_directory_are_fine(tmp_path: Path, netmetrix: Cli) -> None:
    config = write_hosts(
        tmp_path,
        Host(name="a", address="10.0.0.1"),
        Host(name="b", address="10.0.0.1", port=2222),
        Host(name="c", address="10.0.0.1", user="other"),
        Host(name="d", address="10.0.0.1", directory="~/.cache/netmetrix-d"),
        Host(name="e", address="10.0.0.2"),
    )
    ran = netmetrix("--config", config, "config", "check")
    assert (ran.code, ran.err) == (0, "")
    assert "OK, 5 hosts" in ran.out


# ---------------------------------------------------------------- item 6: the store's id


def test_the_collector_id_is_made_once(new_url: Callable[[], str]) -> None:
    url = new_url()
    barrier = threading.Barrier(3, timeout=60)
    seen: list[str | BaseException] = []

    def open_fresh() -> None:  # three processes' worth of opening a fresh store at once
        try:
            barrier.wait()
            with Store.open(url) as store:
                seen.append(store.collector_id())
        except BaseException as exc:
            seen.append(exc)

    threads = [threading.Thread(target=open_fresh) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert len(seen) == 3
    assert len(set(seen)) == 1, seen
    [cid] = set(seen)
    assert isinstance(cid, str)
    assert ID.fullmatch(cid)
    with Store.open(url) as store:
        assert (store.collector_id(), store.find_collector_id()) == (cid, cid)


def test_a_lost_collector_id_is_made_again_and_kept(new_url: Callable[[], str]) -> None:
    with Store.open(new_url()) as store:
        old = store.collector_id()
        with store.writing("lose the id") as conn:
            conn.execute(meta_table.delete())
        assert store.find_collector_id() is None
        new = store.collector_id()
        assert ID.fullmatch(new)
        assert new != old
        assert store.collector_id() == new


# ---------------------------------------------------------------- item 7: activation per host


def test_keys_are_activated_host_by_host(new_url: Callable[[], str]) -> None:
    with Store.open(new_url()) as store:
        store.add_pending_keys([("a", "k1", b"\x01" * 32), ("b", "k2", b"\x02" * 32)])
        store.add_pending_keys([("c", "k3", b"\x03" * 32)])
        assert store.activate_keys([("c", "k3")]) == Activated(activated=("c",))
        # b's pending key vanished (another upload, or the host was forgotten meanwhile)
        with store.writing("drop b's key") as conn:
            conn.exec_driver_sql("DELETE FROM host_keys WHERE host = 'b'")
        done = store.activate_keys([("a", "k1"), ("b", "k2"), ("c", "k3")])
        assert done == Activated(activated=("a", "c"), missing=("b",))
        assert store.host_keys(["a", "b", "c"]) == {
            "a": {"k1": b"\x01" * 32},
            "c": {"k3": b"\x03" * 32},
        }
        assert store.activate_keys([("b", "k2")]) == Activated(missing=("b",))
        assert store.host_keys(["b"]) == {}


def test_execute_settling_on_the_active_key_keeps_a_pending_one(new_url: Callable[[], str]) -> None:
    """An upload running meanwhile is about to activate the pending key: it must stay."""
    with Store.open(new_url()) as store:
        store.add_pending_keys([("a", "k1", b"\x01" * 32)])
        store.activate_keys([("a", "k1")])
        store.add_pending_keys([("a", "k2", b"\x02" * 32)])
        assert store.activate_keys([("a", "k1")], pending_only=True) == Activated()
        assert store.host_keys(["a"]) == {"a": {"k1": b"\x01" * 32, "k2": b"\x02" * 32}}
        # the host answered with the pending key: the upload that sent it got that far
        assert store.activate_keys([("a", "k2")], pending_only=True) == Activated(activated=("a",))
        assert store.host_keys(["a"]) == {"a": {"k2": b"\x02" * 32}}


# ---------------------------------------------------------------- item 7: the upload lock


def running(pid: int) -> re.Pattern[str]:
    return re.compile(
        rf"another upload is running \(pid {pid}, started at \d{{4}}-\d\d-\d\dT[\d:.]+Z\)"
        r" on database \S+; run upload again when it has finished"
    )


def test_the_upload_lock_names_its_holder(new_url: Callable[[], str]) -> None:
    url = new_url()
    with Store.open(url) as first, Store.open(url) as second:
        with first.upload_lock():
            with pytest.raises(UploadRunning) as caught, second.upload_lock():
                pytest.fail("two holders of one upload lock")
            assert running(os.getpid()).fullmatch(str(caught.value)), str(caught.value)
        with second.upload_lock():  # released: the next upload proceeds
            pass
        with first.upload_lock():
            pass


def test_the_sqlite_lock_file_is_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with Store.open(f"sqlite:///{tmp_path}/netmetrix.db") as store, store.upload_lock():
            lock = tmp_path / "netmetrix.db.upload-lock"
            assert stat.S_IMODE(lock.stat().st_mode) == 0o600
            assert lock.read_text().split()[0] == str(os.getpid())
        assert lock.read_text() == ""  # no holder: nothing to name
    finally:
        os.umask(old)


HOLD = """
import sys, time
from netmetrix.store import Store
with Store.open(sys.argv[1]) as store, store.upload_lock():
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_dead_holder_leaves_no_lock_behind(new_url: Callable[[], str]) -> None:
    """A collector killed during its upload (kill -9) frees the lock with its process."""
    url = new_url()
    with Store.open(url):
        pass  # the schema first, so the holder does not race the test's store for it
    holder = subprocess.Popen([sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"  # bounded: the child sleeps after it
        with Store.open(url) as store:
            with pytest.raises(UploadRunning) as caught, store.upload_lock():
                pass
            assert running(holder.pid).fullmatch(str(caught.value)), str(caught.value)
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(DEADLINE)
            # PostgreSQL ends the dead client's session when it notices the closed socket
            deadline = time.monotonic() + DEADLINE
            while True:
                try:
                    with store.upload_lock():
                        break
                except UploadRunning:
                    assert time.monotonic() < deadline, "the dead holder's lock was never freed"
                    time.sleep(0.2)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


@pytest.mark.sshd
def test_an_upload_started_during_another_stops_and_leaves_every_host_working(
    farm: sshd.Farm, tmp_path: Path, netmetrix: Cli, new_url: Callable[[], str]
) -> None:
    """Issue #11: two uploads at once left every host unusable ("no key ... to activate").

    The second upload (a process of its own) starts while the first one holds the
    lock: here, from the first one's progress callback after its first host, with
    concurrency 1 so that no other host of the first upload is in flight meanwhile.
    """
    remote = tmp_path / "remote"
    fleet = setup(farm, tmp_path / "cfg", remote, new_url(), NAMES)
    config = load_config(fleet.config)
    second: list[Run] = []

    def during(_result: HostResult[str]) -> None:
        if not second:
            second.append(finish(start_cli("--config", fleet.config, "upload")))

    with Store.open(config.database) as store:
        results = asyncio.run(collect.upload(config, store, config.hosts, progress=during))
    assert [r.error for r in results] == [None, None, None]
    [other] = second
    assert other.code == 1, other.err
    assert running(os.getpid()).search(other.err), other.err
    assert "SUCCESS" not in other.err  # it touched no host

    assert keys_match(fleet, remote) == dict.fromkeys(NAMES, True)
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 0, ran.err


@pytest.mark.sshd
def test_two_uploads_started_at_once_leave_every_host_working(
    farm: sshd.Farm, tmp_path: Path, netmetrix: Cli, new_url: Callable[[], str]
) -> None:
    """Started together: whether they overlap depends on the machine's load, so either may
    run alone; one that overlapped says so, naming the other's pid, and touches nothing."""
    remote = tmp_path / "remote"
    fleet = setup(farm, tmp_path / "cfg", remote, new_url(), NAMES)
    collector_id(fleet)  # the schema exists: both start from the same store
    processes = [start_cli("--config", fleet.config, "upload") for _ in range(2)]
    runs = [finish(p) for p in processes]
    for run, other in zip(runs, reversed(processes), strict=True):
        if run.code != 0:
            assert run.code == 1, run.err
            assert running(other.pid).search(run.err), run.err
            assert "SUCCESS" not in run.err
    assert 0 in [run.code for run in runs]

    assert keys_match(fleet, remote) == dict.fromkeys(NAMES, True)
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 0, ran.err
