"""Ctrl-C during execute: what arrived is stored, the rest is marked interrupted, exit 130 (#10).

The end-to-end tests run `netmetrix execute` as a real process over two fast
hosts and one that hangs, on the real sshd farm, and send it SIGINT by PID.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from conftest import Background, Fleet, Run

from netmetrix.collect import INTERRUPTED
from netmetrix.configxml import Alert
from netmetrix.model import HostRun, Sample
from netmetrix.store import Store

pytestmark = pytest.mark.sshd

Cli = Callable[..., Run]
UP_RULE = Alert(metric="up", op="==", limit=0, email="ops@example.com")


@pytest.fixture
def start() -> Iterator[Callable[..., Background]]:
    started: list[Background] = []

    def run(config: Path, *args: str) -> Background:
        started.append(Background(config, *(args or ("execute",))))
        return started[-1]

    try:
        yield run
    finally:
        for execute in started:
            execute.stop()


def _marked(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if marker in " ".join(process.info["cmdline"] or ()):
            found.append(process)
    return found


def _wait_gone(marker: str, budget: float) -> list[str]:
    """Wait (bounded) until no process carries ``marker``; describe those that remain."""
    deadline = time.monotonic() + budget
    left = _marked(marker)
    while left and time.monotonic() < deadline:
        psutil.wait_procs(left, timeout=max(0.1, min(1.0, deadline - time.monotonic())))
        left = _marked(marker)
    return [f"pid {p.pid}: {' '.join(p.info['cmdline'] or ())}" for p in left]


@pytest.fixture
def marker() -> Iterator[str]:
    """A word on the command line of every process the slow host starts; killed at the end."""
    word = f"nmx-slow-{secrets.token_hex(6)}"
    try:
        yield word
    finally:
        for process in _marked(word):
            with contextlib.suppress(psutil.Error):
                process.kill()


def _slow_fleet(fleet: Fleet, netmetrix: Cli, slow: dict[str, str], marker: str) -> Path:
    """fast1, fast2 and `slow` (whose `python` hangs), uploaded; returns the PID file."""
    bin_dir = Path(slow.pop("bin"))
    python = slow.pop("python")
    pids = bin_dir / f"{marker}.pids"
    wrapper = bin_dir / "hang"
    sleep = f'exec "{python}" -c "import time; time.sleep(1000)" {marker}'
    wrapper.write_text(f"#!/bin/sh\necho $$ >> {pids}\n{sleep}\n")
    wrapper.chmod(0o755)
    fleet.host("fast1", 0)
    fleet.host("fast2", 1)
    fleet.host("slow", 2, python=str(wrapper), **slow)
    fleet.write(alerts=[UP_RULE])
    assert netmetrix("--config", fleet.config, "upload").code == 0
    return pids


@pytest.fixture(params=["root", "user"])
def slow_login(request: pytest.FixtureRequest, fleet: Fleet) -> dict[str, str]:
    """Where the slow host logs in: root (sshd ignores signals) or the unprivileged user."""
    if request.param == "root":
        (fleet.root / "bin").mkdir(exist_ok=True)
        return {"bin": str(fleet.root / "bin"), "python": sys.executable}
    test_user = request.getfixturevalue("test_user")
    user_dir: Path = request.getfixturevalue("user_dir")
    bin_dir = test_user.make_dir(user_dir / "bin")
    return {
        "bin": str(bin_dir),
        "python": test_user.python,
        "user": test_user.name,
        "directory": str(user_dir / "probe"),
    }


def test_ctrl_c_stores_what_arrived_and_marks_the_rest_interrupted(
    fleet: Fleet,
    netmetrix: Cli,
    start: Callable[..., Background],
    slow_login: dict[str, str],
    marker: str,
) -> None:
    pids = _slow_fleet(fleet, netmetrix, slow_login, marker)
    execute = start(fleet.config)
    execute.wait_for("[fast1] SUCCESS!", "[fast2] SUCCESS!")
    execute.interrupt()
    code = execute.finish()

    assert code == 130, execute.err
    with Store.open(f"sqlite:///{fleet.database}") as store:
        for name in ("fast1", "fast2"):
            assert [s.value for s in store.history(name, "up")] == [1.0]
            assert len(store.history(name, "mem_percent")) == 1
        assert store.history("slow", "up") == []  # not up=0: nobody is paged for a Ctrl-C
        rows = {row.name: row for row in store.hosts()}
        assert rows["slow"].last_error == INTERRUPTED
        assert rows["slow"].last_seen is None
        assert rows["fast1"].last_error is None
        assert store.alerts_active() == []  # the up == 0 rule saw nothing of slow
        assert store.outbox() == []
    assert "[slow]" not in execute.err  # neither a success nor a failure
    assert (
        "WARNING execute interrupted: storing the 2 host(s) that finished; interrupted: slow\n"
        in execute.err
    )
    assert execute.err.endswith("Aborted.\n")
    # It did run; whatever it started ends: at once when sshd passes on the collector's
    # KILL (the unprivileged login), at the host's own deadline for root.
    assert pids.read_text().split()
    assert _wait_gone(marker, budget=60) == []


def test_second_ctrl_c_while_storing_leaves_a_sound_database(
    fleet: Fleet, netmetrix: Cli, start: Callable[..., Background], marker: str
) -> None:
    (fleet.root / "bin").mkdir()
    _slow_fleet(
        fleet, netmetrix, {"bin": str(fleet.root / "bin"), "python": sys.executable}, marker
    )
    execute = start(fleet.config)
    execute.wait_for("[fast1] SUCCESS!", "[fast2] SUCCESS!")
    execute.interrupt()
    execute.wait_for("execute interrupted: storing")
    execute.interrupt()
    assert execute.finish() == 130, execute.err

    with contextlib.closing(sqlite3.connect(fleet.database)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with Store.open(f"sqlite:///{fleet.database}") as store:
        stored = {
            name: (len(store.history(name, "up")), len(store.history(name, "mem_percent")))
            for name in ("fast1", "fast2", "slow")
        }
    # Stored in batches as hosts finish: an answer is stored whole (its `up` with its
    # samples) or not at all, and slow never gets an `up` sample.
    assert stored["fast1"] in ((1, 1), (0, 0)), stored
    assert stored["fast2"] in ((1, 1), (0, 0)), stored
    assert stored["slow"] == (0, 0)
    fleet.hosts[2]["python"] = sys.executable
    fleet.write(alerts=[UP_RULE])
    after = netmetrix("--config", fleet.config, "execute")  # the store is not locked or broken
    assert after.code == 0, after.err


def test_a_crash_mid_run_keeps_the_hosts_that_finished(
    fleet: Fleet, netmetrix: Cli, start: Callable[..., Background], marker: str
) -> None:
    """Results reach the store as hosts finish: a collector killed outright (no Ctrl-C,
    no clean-up) while one host still hangs loses none of the hosts that had answered."""
    (fleet.root / "bin").mkdir()
    fleet.settings["command_timeout"] = "600"  # slow hangs for longer than this test
    _slow_fleet(
        fleet, netmetrix, {"bin": str(fleet.root / "bin"), "python": sys.executable}, marker
    )
    execute = start(fleet.config, "-v", "execute")  # -v: a line per metric once it is stored
    execute.wait_for("[fast1] Metric `mem_percent`->", "[fast2] Metric `mem_percent`->")
    assert execute.process.poll() is None  # still waiting for slow
    execute.process.kill()
    execute.process.wait(timeout=60)

    with contextlib.closing(sqlite3.connect(fleet.database)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with Store.open(f"sqlite:///{fleet.database}") as store:
        for name in ("fast1", "fast2"):
            assert [s.value for s in store.history(name, "up")] == [1.0]
            assert len(store.history(name, "mem_percent")) == 1
        assert store.history("slow", "up") == []
        rows = {row.name: row for row in store.hosts()}
        assert rows["fast1"].last_error is None
        assert "slow" not in rows or rows["slow"].last_seen is None


def test_an_interrupted_host_keeps_its_last_good_run(store_url: str) -> None:
    """Transaction.update_hosts: the host row's error only; no sample, so no `up` = 0."""
    good = HostRun(
        host="a",
        address="a.example",
        ts=100.0,
        ok=True,
        samples=(Sample(metric="load1", labels=(), value=0.5),),
    )
    cut = HostRun(host="a", address="a.example", ts=200.0, ok=False, error=INTERRUPTED)
    with Store.open(store_url) as store:
        store.record_runs([good])
        with store.transaction("mark a host interrupted") as tx:
            tx.update_hosts([cut])
            tx.update_hosts([])  # nothing to do
        (row,) = store.hosts()
        assert (row.last_seen, row.last_error, row.up) == (100.0, INTERRUPTED, 1.0)
        assert [s.value for s in store.history("a", "up")] == [1.0]
        assert len(store.history("a", "load1")) == 1
