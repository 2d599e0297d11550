"""``--workers N``: execute's and watch's hosts in worker processes (#15).

End to end on the real sshd farm: the CLI runs as a real process where a
signal or a killed worker is involved (``Background``), and the processes a
test checks for are the ones it started (the CLI's children, by PID).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from conftest import Background, Fleet, Run

from netmetrix import sessions, workers
from netmetrix.collect import INTERRUPTED
from netmetrix.config import cpus, load_config, parse_workers
from netmetrix.configxml import Collector
from netmetrix.envelope import Message
from netmetrix.errors import Outcome
from netmetrix.fleet import HostResult
from netmetrix.model import Sample
from netmetrix.ssh import NO_USER_FILES, HostKeys
from netmetrix.store import Store

Cli = Callable[..., Run]
WAIT = 120.0  # seconds any one step may take on a loaded machine


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("total", "count", "dealt"),
    [
        (5, 2, [[0, 2, 4], [1, 3]]),
        (2, 4, [[0], [1]]),  # more workers than hosts: one a host
        (3, 1, [[0, 1, 2]]),
        (0, 3, [[]]),
    ],
)
def test_hosts_are_dealt_round_robin(total: int, count: int, dealt: list[list[int]]) -> None:
    assert workers.deal(total, count) == dealt


@pytest.mark.parametrize(
    ("concurrency", "count", "shares"), [(50, 2, [25, 25]), (5, 3, [2, 2, 1]), (1, 2, [1, 1])]
)
def test_concurrency_is_shared(concurrency: int, count: int, shares: list[int]) -> None:
    assert [workers.share(concurrency, count, n) for n in range(1, count + 1)] == shares


def test_workers_count_parses_numbers_and_auto() -> None:
    assert parse_workers("3") == 3
    assert parse_workers(" AUTO ") == cpus() >= 1
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError, match="1 or more"):
            parse_workers(bad)


def test_a_message_survives_the_trip_from_a_worker() -> None:
    message = Message(
        kid="k1",
        encrypted=True,
        probe_version="9",
        samples=(
            Sample(metric="disk_percent", labels=(("mount", "/"),), value=41.5),
            Sample(metric="load1", labels=(), value=0.25),
        ),
        errors=("/proc/diskstats: gone",),
    )
    assert workers._unpack(workers._pack(message)) == message
    assert workers._unpack(workers._pack(None)) is None


def test_a_bad_workers_count_is_a_usage_error(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("u1", 0)
    ran = netmetrix("--config", fleet.config, "execute", "--workers", "0")
    assert ran.code == 2
    expected = "Invalid value for '--workers': give a number of processes (1 or more) or auto"
    assert expected in ran.err


def test_a_bad_collector_workers_names_the_file_and_field(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("u1", 0)
    fleet.write(collector=Collector(workers="none"))
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 2
    expected = '<collector>: workers: give a number of processes (1 or more) or auto, got "none"'
    assert re.search(r"config\.xml:\d+: " + re.escape(expected), ran.err), ran.err


@pytest.mark.sshd
def test_collector_workers_in_config_xml_and_the_flag_over_it(fleet: Fleet, netmetrix: Cli) -> None:
    for i in range(3):
        fleet.host(f"c{i}", i)
    fleet.write(collector=Collector(workers=2))
    assert netmetrix("--config", fleet.config, "upload").code == 0
    shown = netmetrix("--config", fleet.config, "config", "show")
    [row] = [line for line in shown.out.splitlines() if "collector.workers" in line]
    assert row.split()[1] == "2"

    by_config = netmetrix("--config", fleet.config, "execute")
    by_flag = netmetrix("--config", fleet.config, "execute", "--workers", "1")

    assert by_config.code == 0, by_config.err
    assert "execute: 3 host(s) in 2 worker processes" in by_config.err
    assert by_flag.code == 0, by_flag.err
    assert "worker processes" not in by_flag.err
    for i in range(3):
        assert up_values(fleet.database, f"c{i}") == [1.0, 1.0]


# ---------------------------------------------------------------- execute, end to end


def stored_series(store: Store, host: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {(s.metric, tuple(sorted(s.labels.items()))) for s in store.latest([host])}


def up_values(database: Path, host: str) -> list[float]:
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT s.value FROM samples s JOIN series r ON r.id = s.series_id"
            " WHERE r.host = ? AND r.metric = 'up' ORDER BY s.ts_ms",
            (host,),
        ).fetchall()
    return [value for (value,) in rows]


@pytest.mark.sshd
def test_two_workers_collect_every_host_once_as_one_does(fleet: Fleet, netmetrix: Cli) -> None:
    names = [f"w{i}" for i in range(5)]
    for i, name in enumerate(names):
        fleet.host(name, i % 3)
    assert netmetrix("--config", fleet.config, "upload").code == 0

    two = netmetrix("--config", fleet.config, "execute", "--workers", "2")

    assert two.code == 0, two.err
    assert "execute: 5 ok in " in two.err
    with Store.open(f"sqlite:///{fleet.database}") as store:
        after_two = {name: stored_series(store, name) for name in names}
    for name in names:
        assert two.err.count(f"[{name}] SUCCESS! Script") == 1
        assert up_values(fleet.database, name) == [1.0]
        assert ("mem_percent", ()) in after_two[name]

    one = netmetrix("--config", fleet.config, "execute", "--workers", "1")

    assert one.code == 0, one.err
    with Store.open(f"sqlite:///{fleet.database}") as store:
        # the same series, each with its second sample now
        assert {name: stored_series(store, name) for name in names} == after_two
    for name in names:
        assert up_values(fleet.database, name) == [1.0, 1.0]


@pytest.mark.sshd
def test_one_hosts_failure_stays_its_own_in_a_worker(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("good1", 0)
    fleet.host("good2", 1)
    fleet.host("broken", 2, python=fleet.wrapper("broken", "echo 'no python here' >&2; exit 9"))
    fleet.host("good3", 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0

    ran = netmetrix("--config", fleet.config, "execute", "--workers", "2")

    assert ran.code == 1, ran.err
    assert "[broken] FAILED: probe exited with status 9: no python here" in ran.err
    assert "execute: 3 ok, 1 bad message in " in ran.err
    assert ran.err.rstrip().endswith("failed: broken")
    for name in ("good1", "good2", "good3"):
        assert up_values(fleet.database, name) == [1.0]
    assert up_values(fleet.database, "broken") == [0.0]


def _marked(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if marker in " ".join(process.info["cmdline"] or ()):
            found.append(process)
    return found


@pytest.fixture
def marker() -> Iterator[str]:
    """A word on the command line of every process the hanging host starts; killed at the end."""
    word = f"nmx-hang-{secrets.token_hex(6)}"
    try:
        yield word
    finally:
        for process in _marked(word):
            with contextlib.suppress(psutil.Error):
                process.kill()


@pytest.fixture
def start(background: Callable[..., Background]) -> Callable[..., Background]:
    """``background`` (conftest) by the name these tests use."""
    return background


def hanging(fleet: Fleet, marker: str) -> str:
    """A `python` for a host whose probe never answers (it sleeps, marked)."""
    return fleet.wrapper(
        "hang", f'exec "{sys.executable}" -c "import time; time.sleep(1000)" {marker}'
    )


def gated(fleet: Fleet, flag: Path) -> str:
    """A `python` that runs the probe once ``flag`` exists (at most 120 s later)."""
    return fleet.wrapper(
        "gated",
        f"i=0; while [ ! -e {flag} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done\n"
        f'exec "{sys.executable}" "$@"',
    )


def worker_processes(cli: Background) -> dict[int, psutil.Process]:
    """The CLI's worker processes by their number (``netmetrix-worker N`` in argv)."""
    found = {}
    for child in psutil.Process(cli.process.pid).children():
        with contextlib.suppress(psutil.Error):
            argv = child.cmdline()
            if workers.MARK in argv:
                found[int(argv[argv.index(workers.MARK) + 1])] = child
    return found


@pytest.mark.sshd
def test_ctrl_c_stores_what_finished_and_leaves_no_worker(
    fleet: Fleet, netmetrix: Cli, start: Callable[..., Background], marker: str
) -> None:
    fleet.host("fast1", 0)
    fleet.host("fast2", 1)
    fleet.host("slow", 2, python=hanging(fleet, marker))
    assert netmetrix("--config", fleet.config, "upload").code == 0
    execute = start(fleet.config, "execute", "--workers", "2")
    execute.wait_for("[fast1] SUCCESS!", "[fast2] SUCCESS!", budget=WAIT)
    found = worker_processes(execute)
    assert 1 in found  # it waits for slow (worker 2, with fast2 only, may have ended)

    execute.interrupt()
    for worker in found.values():  # as a terminal's Ctrl-C reaches its whole process group
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.send_signal(signal.SIGINT)
    code = execute.finish(budget=WAIT)

    assert code == 130, execute.err
    _gone, alive = psutil.wait_procs(list(found.values()), timeout=WAIT)
    assert alive == []
    assert "Traceback" not in execute.err
    assert "KeyboardInterrupt" not in execute.err
    assert "interrupted: slow\n" in execute.err
    assert execute.err.endswith("Aborted.\n")
    with Store.open(f"sqlite:///{fleet.database}") as store:
        rows = {row.name: row for row in store.hosts()}
    assert up_values(fleet.database, "fast1") == [1.0]
    assert up_values(fleet.database, "fast2") == [1.0]
    assert up_values(fleet.database, "slow") == []
    assert rows["slow"].last_error == INTERRUPTED


@pytest.mark.sshd
def test_a_killed_worker_fails_its_hosts_and_the_others_go_on(
    fleet: Fleet, netmetrix: Cli, start: Callable[..., Background], marker: str, tmp_path: Path
) -> None:
    flag = tmp_path / "go"
    # round-robin: worker 1 gets a and hung, worker 2 b and gated
    fleet.host("a", 0)
    fleet.host("b", 1)
    fleet.host("hung", 2, python=hanging(fleet, marker))
    fleet.host("gated", 0, python=gated(fleet, flag))
    assert netmetrix("--config", fleet.config, "upload").code == 0
    execute = start(fleet.config, "execute", "--workers", "2")
    execute.wait_for("[a] SUCCESS!", "[b] SUCCESS!", budget=WAIT)
    found = worker_processes(execute)
    assert sorted(found) == [1, 2]

    found[1].send_signal(signal.SIGKILL)
    execute.wait_for("collector worker 1 died: exit -9; its 1 unfinished host(s) fail", budget=WAIT)
    flag.touch()
    code = execute.finish(budget=WAIT)

    assert code == 1, execute.err
    assert "[hung] FAILED: collector worker 1 died: exit -9" in execute.err
    assert "[gated] SUCCESS!" in execute.err  # worker 2 went on
    assert "execute: 3 ok, 1 error in " in execute.err
    assert execute.err.rstrip().endswith("failed: hung")
    assert up_values(fleet.database, "gated") == [1.0]
    assert up_values(fleet.database, "hung") == [0.0]
    with Store.open(f"sqlite:///{fleet.database}") as store:
        rows = {row.name: row for row in store.hosts()}
    assert rows["hung"].last_error == "error: collector worker 1 died: exit -9"
    _gone, alive = psutil.wait_procs([found[2]], timeout=WAIT)
    assert alive == []


@pytest.mark.sshd
@pytest.mark.parametrize("command", ["execute", "watch"])
def test_workers_end_when_their_parent_is_killed(
    fleet: Fleet, netmetrix: Cli, start: Callable[..., Background], marker: str, command: str
) -> None:
    fleet.host("p1", 0)
    fleet.host("p2", 1)
    fleet.host("hung", 2, python=hanging(fleet, marker))  # keeps execute's worker 1 busy
    assert netmetrix("--config", fleet.config, "upload").code == 0
    cli = start(fleet.config, command, "--workers", "2")
    success = "SUCCESS!" if command == "execute" else "connected"
    cli.wait_for(f"[p1] {success}", f"[p2] {success}", budget=WAIT)
    found = worker_processes(cli)
    assert 1 in found

    cli.process.kill()  # kill -9: nothing of the parent's runs to stop them
    cli.finish(budget=WAIT)

    _gone, alive = psutil.wait_procs(list(found.values()), timeout=WAIT)
    assert alive == []  # each saw its stdin close and ended


# ---------------------------------------------------------------- watch, end to end


def sessions_of(fleet: Fleet, name: str) -> list[psutil.Process]:
    """Running streaming probes of host ``name`` (this test's own directory)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = proc.info["cmdline"] or []
        if "--watch" in cmdline and any(str(fleet.remote_dir(name)) in w for w in cmdline):
            found.append(proc)
    return found


def wait_until(check: Callable[[], bool], what: str, budget: float = WAIT) -> None:
    deadline = time.monotonic() + budget
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


@pytest.mark.sshd
def test_watch_with_two_workers_stores_every_tick_of_every_host(
    fleet: Fleet, netmetrix: Cli
) -> None:
    names = ["v1", "v2", "v3"]
    for i, name in enumerate(names):
        fleet.host(name, i)
    fleet.host("nokey", 0)
    assert netmetrix("--config", fleet.config, "upload", "-h", "v*").code == 0

    # 5 s: the first tick waits up to one interval for every first connection
    ran = netmetrix(
        "--config", fleet.config, "watch", "--workers", "2", "--interval", "5s", "--ticks", "3"
    )

    assert ran.code == 0, ran.err
    for name in names:
        ups = up_values(fleet.database, name)
        assert len(ups) == 3, (name, ups)
        assert sum(ups) >= 1, (name, ups)  # each answered in time at least once, under load
        assert ran.err.count(f"[{name}] connected") == 1  # one session for the whole watch
    assert ran.err.count("[nokey] not set up") == 1
    assert up_values(fleet.database, "nokey") == []
    assert "stopped after 3 tick(s)" in ran.err
    assert "ERROR" not in ran.err.replace("ERROR [nokey] not set up", "")


@pytest.mark.sshd
def test_watch_workers_follow_a_reload_and_stop_on_sigterm(
    fleet: Fleet, netmetrix: Cli, start: Callable[..., Background]
) -> None:
    for name in ("r1", "r2", "r3"):
        fleet.host(name, 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    fleet.hosts = [h for h in fleet.hosts if h["name"] != "r3"]
    fleet.write()
    watch = start(fleet.config, "watch", "--workers", "2", "--interval", "2s")
    watch.wait_for("[r1] connected", "[r2] connected", budget=WAIT)
    found = worker_processes(watch)
    assert sorted(found) == [1, 2]

    # r2 leaves, r3 comes: r3 goes to the worker r2 had, the free one
    fleet.hosts = [
        *[h for h in fleet.hosts if h["name"] != "r2"],
        {**fleet.hosts[0], "name": "r3", "directory": str(fleet.remote_dir("r3"))},
    ]
    fleet.write()
    watch.process.send_signal(signal.SIGHUP)
    watch.wait_for("reload: config.xml read; 2 host(s), 1 added, 1 removed", budget=WAIT)
    watch.wait_for("[r3] connected", budget=WAIT)
    wait_until(lambda: sum(up_values(fleet.database, "r3")) >= 2, "r3 sampled")
    wait_until(lambda: sessions_of(fleet, "r2") == [], "r2's probe ended")
    r2_samples = len(up_values(fleet.database, "r2"))
    r1_then = len(up_values(fleet.database, "r1"))
    wait_until(lambda: len(up_values(fleet.database, "r1")) >= r1_then + 2, "ticks go on")

    watch.process.send_signal(signal.SIGTERM)
    assert watch.finish(budget=WAIT) == 0, watch.err
    _gone, alive = psutil.wait_procs(list(found.values()), timeout=WAIT)
    assert alive == []
    assert watch.err.count("[r1] connected") == 1  # a reload leaves other sessions alone
    assert len(up_values(fleet.database, "r2")) == r2_samples  # no tick samples a removed host
    assert "Traceback" not in watch.err
    wait_until(lambda: sessions_of(fleet, "r1") == [], "r1's probe ended at the stop")


class _Said(logging.Handler):
    """Sets ``event`` when a record holding ``text`` is logged."""

    def __init__(self, text: str, event: asyncio.Event) -> None:
        super().__init__()
        self.text = text
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def _plan(fleet: Fleet, interval: float) -> tuple[sessions.Plan, dict[str, dict[str, bytes]]]:
    """The plan of a watch over ``fleet``'s hosts, and their keys in its store."""
    config = load_config(fleet.config)
    with Store.open(f"sqlite:///{fleet.database}") as store:
        keys, collector = store.host_keys([h.name for h in config.hosts]), store.collector_id()
    plan = sessions.Plan(
        ssh=config.ssh,
        script=config.script,
        collector=collector,
        interval=interval,
        require_encryption=False,
        known=HostKeys(config.ssh, NO_USER_FILES),
        files=NO_USER_FILES,
    )
    return plan, keys


@pytest.mark.sshd
def test_a_killed_watch_worker_fails_its_hosts_then_starts_again(
    fleet: Fleet, netmetrix: Cli
) -> None:
    fleet.host("k1", 0)  # worker 1
    fleet.host("k2", 1)  # worker 2
    assert netmetrix("--config", fleet.config, "upload").code == 0
    plan, keys = _plan(fleet, interval=5.0)
    hosts = load_config(fleet.config).hosts
    ticks: list[dict[str, HostResult[Message]]] = []
    started: list[psutil.Process] = []  # every worker process the pool started

    async def tick(pool: workers.WatchPool) -> dict[str, HostResult[Message]]:
        answers: dict[str, HostResult[Message]] = {}
        now = asyncio.get_running_loop().time()
        await pool.tick(now, now + plan.wait, lambda r, _latency: answers.update({r.host.name: r}))
        return answers

    async def main() -> None:
        async def load_keys(name: str) -> dict[str, bytes]:
            return keys[name]

        died = asyncio.Event()
        said = _Said("collector worker 1 died: exit -9; its hosts fail until it starts", died)
        logging.getLogger("netmetrix.workers").addHandler(said)
        pool = workers.WatchPool(2, 10, load_keys)
        try:
            await pool.start()
            started.extend(psutil.Process(w.process.pid) for w in pool._workers.values())
            pool.apply(plan, hosts)
            await asyncio.wait_for(pool.first_tries(), WAIT)
            ticks.append(await tick(pool))
            started[0].send_signal(signal.SIGKILL)
            await asyncio.wait_for(died.wait(), WAIT)
            ticks.append(await tick(pool))  # before it starts again (a second from now)
            for _ in range(int(WAIT)):  # a tick a second until it is back
                await asyncio.sleep(1.0)
                ticks.append(await tick(pool))
                if ticks[-1].get("k1") and ticks[-1]["k1"].ok:
                    break
            started.append(psutil.Process(pool._workers[1].process.pid))  # the new worker 1
        finally:
            await pool.close()
            logging.getLogger("netmetrix.workers").removeHandler(said)

    asyncio.run(main())

    first, down, *_, back = ticks
    assert [first[n].outcome for n in ("k1", "k2")] == [Outcome.OK, Outcome.OK]
    assert (down["k1"].outcome, down["k1"].error) == (
        Outcome.ERROR,
        "collector worker 1 died: exit -9",
    )
    assert down["k2"].outcome is Outcome.OK  # worker 2 goes on
    assert back["k1"].outcome is Outcome.OK  # worker 1 started again, k1 reconnected
    assert len({p.pid for p in started}) == 3
    _gone, alive = psutil.wait_procs(started, timeout=WAIT)
    assert alive == []  # close() stopped both workers


@pytest.mark.sshd
def test_a_tick_handed_over_after_its_deadline_sends_the_probe_nothing(
    fleet: Fleet, netmetrix: Cli
) -> None:
    """A starved worker reads its ticks late: asking then would only pile up requests
    that the probe answers after their deadline, until no answer is recent enough."""
    fleet.host("late", 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    config = load_config(fleet.config)
    with Store.open(f"sqlite:///{fleet.database}") as store:
        keys, collector = store.host_keys(["late"]), store.collector_id()

    async def main() -> tuple[list[HostResult[Message]], list[HostResult[Message]]]:
        async def load_keys(name: str) -> dict[str, bytes]:
            return keys[name]

        plan = sessions.Plan(
            ssh=config.ssh,
            script=config.script,
            collector=collector,
            interval=1.0,
            require_encryption=False,
            known=HostKeys(config.ssh, NO_USER_FILES),
            files=NO_USER_FILES,
        )
        pool = sessions.Sessions(sessions.Ramp(1, rate=10.0), load_keys)
        pool.apply(plan, config.hosts)
        late: list[HostResult[Message]] = []
        then: list[HostResult[Message]] = []
        try:
            await asyncio.wait_for(pool.first_tries(), WAIT)
            now = asyncio.get_running_loop().time()
            for _ in range(3 * sessions.LATE_ANSWERS):  # every deadline long past
                await pool.tick(now - 20, now - 10, lambda result, _latency: late.append(result))
            now = asyncio.get_running_loop().time()
            await pool.tick(now, now + WAIT, lambda result, _latency: then.append(result))
        finally:
            await pool.close()
        return late, then

    late, then = asyncio.run(main())

    assert {(r.outcome, r.error) for r in late} == {(Outcome.TIMEOUT, "no answer within 1s")}
    assert [(r.outcome, r.error) for r in then] == [(Outcome.OK, None)]
