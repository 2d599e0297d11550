"""Benchmark ``netmetrix watch``: collector CPU, memory and tick jitter; host CPU per sample.

    python bench/watch_bench.py --hosts 1000 --interval 1s --ticks 60   # as in bench/RESULTS.md
    python bench/watch_bench.py --hosts 1000 --ticks 600 --repeat 1 --no-farm   # 10 minutes
    python bench/watch_bench.py --quick                                 # a quick look

Two parts, each measurement ``--repeat`` times (2 by default):

1. **Simulated fleet** (simfleet.py: asyncssh servers in worker processes,
   real sealed envelopes), so that the collector's own cost is measured alone.
   ``netmetrix watch --interval I --ticks T`` runs as a subprocess; every
   ``--sample-every`` seconds its CPU time (user+sys) and RSS are read
   (psutil).  Then, from the store and the log:

   - *steady state*: from the first tick with every host connected to the
     last tick's deadline.  CPU per answer = the CPU the process spent
     between two readings / the answers (``up`` = 1) the store gained between
     them (each reading counts them, through the primary key); also the
     answers and samples per second and the cores used, by the collector and
     by the simulator's workers;
   - *whole run*: user+sys of the process (``os.wait4``: start-up, every SSH
     handshake and the last writes included) / every answer stored;
   - *tick jitter*: for every answer of the steady ticks, its stored time
     (when the collector had it verified) minus the scheduled time of the
     tick its request was sent for.  The schedule is ``t0 + k * interval``,
     ``t0`` being the time of watch's start line (logged just before its first
     tick; millisecond precision); ``k`` comes from the answer's uptime_sec,
     the moment its request reached the host (simfleet.py), so an answer
     later than one interval is not taken for the next tick's.  watch's own
     minute summary lines (``tick p50 ... p95 ...``) are kept beside it;
   - *memory*: RSS above a base run of the same fleet watching one host, per
     connected host, and RSS over time (a least-squares slope over the
     steady window).

   ``--profile`` attaches py-spy (when installed) to the last run of the
   largest fleet for the middle half of its ticks and ranks where the CPU goes.
   The same fleet then answers ``netmetrix execute`` ``--execute-runs`` times:
   collector CPU per answer (os.wait4, start-up included) side by side.
   Every run starts on a fresh copy of the fleet's store (keys only).

2. **Real sshd farm** (farm.py: OpenSSH sshd under bench/reaper.py, the real
   probe, ``--farm-hosts`` hosts): host-side CPU per sample of ``watch`` for
   ``--farm-ticks`` ticks against ``execute`` run ``--farm-runs`` times.  Host
   CPU is what the reapers reaped from their sshd sessions and probes once
   the sessions have ended (amortised: handshakes and probe start-ups
   included); for watch also the steady state: the CPU time of every live
   process under the reapers (sshd sessions and streaming probes), read at
   two samples / the answers stored between them.

All of this shares the machine's cores with the collector: load averages are
recorded before and after every run, and CPU time is preferred to wall time.
Writes raw data as JSON to ``--out`` and a "watch" section into
``--markdown`` (between markers; appended when missing); prints the section.
Kills only what it started, by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import farm as farmlib  # noqa: E402
import harness  # noqa: E402
import report  # noqa: E402
import simfleet  # noqa: E402

BIN = Path(sys.executable).parent
PY_SPY = Path(shutil.which("py-spy") or BIN / "py-spy")
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) (.*)$")
TARGET_CPU_MS = 0.2  # collector CPU per answer, at 1,000 hosts x 1 s (issue #13)
TARGET_RSS_KB = 60.0  # RSS per connected host
TARGET_JITTER_MS = 100.0  # p95 of answer time - scheduled tick
TARGET_HOST_RATIO = 10.0  # host CPU per sample: one-shot / watch
PROBLEMS = ("WARNING", "ERROR", "CRITICAL")
SKIPPED = re.compile(r"watch: (\d+) tick\(s\) skipped")


# ------------------------------------------------------------ records


@dataclass
@dataclass
class Point:
    """One reading, taken while watch runs."""

    t: float  # unix seconds
    cpu: float  # user+sys seconds of the watch process so far
    rss: int  # bytes
    stored: int | None = None  # `up` rows in the store so far (answers and misses)
    stored_ok: int | None = None  # of them, up = 1
    stored_real: int | None = None  # answers that brought samples (their uptime_sec rows)
    sim_cpu: float | None = None  # simulated fleet: CPU seconds of its workers so far
    host_cpu: float | None = None  # farm: CPU seconds of every live session process


@dataclass
class Steady:
    """The steady state of a watch run: every host connected, ticks going by."""

    start: float  # unix seconds of the first point in the window
    end: float  # and of the last
    answers: int  # stored between the two points (up = 1)
    failures: int  # up = 0 rows stored between them (no answer in time)
    samples: int
    cpu: float  # seconds of the watch process between the two points
    rss_start_mb: float
    rss_end_mb: float
    rss_median_mb: float
    rss_slope_kb_min: float | None  # least squares over the window's points
    rss_late_slope_kb_min: float | None = None  # the same over the window's second half
    sim_cpu: float | None = None
    host_cpu: float | None = None
    empty_ok: int = 0  # up = 1 rows with no samples between the two points


@dataclass
class Jitter:
    """Answer time - scheduled tick, over the answers of the steady ticks."""

    answers: int
    misses: int  # requests of those ticks that got no answer in time (up = 0)
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class WatchRun:
    fleet: str  # "sim" or "farm"
    role: str  # "fleet" (every host) or "base" (one host, for the RSS base)
    hosts: int
    ticks: int
    interval: float
    wall: float = 0.0
    user: float = 0.0
    sys: float = 0.0
    maxrss_mb: float = 0.0
    returncode: int | None = None
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    points: list[Point] = field(default_factory=list)
    t0: float | None = None
    connected: int = 0
    last_connected: float | None = None  # unix seconds of the last "[host] connected" line
    answers: int = 0  # up = 1 with the probe's samples
    empty_ok: int = 0  # up = 1 with no samples at all: not an answer (see RESULTS.md)
    failures: int = 0
    samples: int = 0
    summaries: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # warning/error lines (the first 20)
    problem_count: int = 0
    skipped_ticks: int = 0  # "N tick(s) skipped: the collector fell behind"
    dropped_ticks: int = 0  # "the store is N ticks behind; this tick's ... are dropped"
    ready: float | None = None  # unix seconds by which every host had connected
    steady: Steady | None = None
    jitter: Jitter | None = None
    host_cpu: float | None = None  # farm: reaped host CPU of the whole run
    profile: dict[str, Any] | None = None  # py-spy's view of the middle of the run (--profile)
    error: str | None = None

    @property
    def cpu(self) -> float:
        return self.user + self.sys


@dataclass
class ExecuteRun:
    fleet: str
    hosts: int
    wall: float
    cpu: float
    maxrss_mb: float
    ok: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    host_cpu: float | None = None
    error: str | None = None


@dataclass
class Results:
    command: str
    started: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    watch: list[WatchRun] = field(default_factory=list)
    execute: list[ExecuteRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    finished: str = ""


def _load() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------ running watch


@dataclass(frozen=True)
class Readers:
    """What else a point reads besides the watch process (each optional)."""

    database: Path | None = None  # the store, for the answers stored so far
    sim_cpu: Callable[[], float] | None = None
    host_cpu: Callable[[], float] | None = None


class _Sampler(threading.Thread):
    """Takes a Point every ``every`` seconds until ``done`` is set or the process is gone."""

    def __init__(self, pid: int, every: float, readers: Readers) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.readers = pid, every, readers
        self.points: list[Point] = []
        self.done = threading.Event()

    def run(self) -> None:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(self.pid)
            while not self.done.is_set() and (point := self._point(proc)) is not None:
                self.points.append(point)
                self.done.wait(self.every)

    def _point(self, proc: psutil.Process) -> Point | None:
        """A reading; None once the process has exited (a zombie has no memory to read)."""
        r = self.readers
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            times, rss = proc.cpu_times(), proc.memory_info().rss
        if rss == 0:  # exiting: its memory is gone before it becomes a zombie
            return None
        point = Point(time.time(), times.user + times.system, rss)
        if r.database is not None:
            point.stored, point.stored_ok, point.stored_real = store_progress(r.database)
        point.sim_cpu = r.sim_cpu() if r.sim_cpu else None
        point.host_cpu = r.host_cpu() if r.host_cpu else None
        return point


def store_progress(database: Path) -> tuple[int | None, int | None, int | None]:
    """(`up` rows, of them up = 1, answers with samples) in the store now: read-only,
    through the primary key.  An answer with samples has an uptime_sec row."""
    if not database.exists():
        return None, None, None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            db.execute("PRAGMA busy_timeout = 1000")
            total, ok = db.execute(PROGRESS.format(metric="up")).fetchone()
            real, _ = db.execute(PROGRESS.format(metric="uptime_sec")).fetchone()
    except sqlite3.Error:
        return None, None, None  # not created yet, or busy: this point has no count
    return int(total), int(ok), int(real)


PROGRESS = (
    "SELECT count(*), coalesce(sum(value = 1), 0) FROM samples WHERE series_id IN"
    " (SELECT id FROM series WHERE metric = '{metric}')"
)


def cpu_of(pids: Sequence[int]) -> Callable[[], float]:
    """CPU seconds (user+sys) of the processes ``pids`` so far."""

    def total() -> float:
        cpu = 0.0
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(pid).cpu_times()
                cpu += t.user + t.system
        return cpu

    return total


def run_watch(
    argv: Sequence[str | os.PathLike[str]],
    run: WatchRun,
    *,
    cwd: Path,
    env: dict[str, str],
    every: float,
    readers: Readers,
    profile: Path | None = None,
) -> str:
    """Run ``argv`` (a watch) to its end, sampling it; fill ``run``; return its stderr.

    ``profile``: where py-spy writes what it saw of the middle half of the run.
    """
    timeout = 120 + 3 * run.ticks * run.interval
    run.load_before = _load()
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [os.fspath(a) for a in argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        sampler = _Sampler(proc.pid, every, readers)
        sampler.start()
        timer = threading.Timer(timeout, harness._kill_group, args=(proc.pid,))
        timer.start()
        spy = _Spy(proc.pid, run.ticks * run.interval, profile) if profile else None
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            harness._kill_group(proc.pid)
            raise
        finally:
            timer.cancel()
            sampler.done.set()
            sampler.join()
            if spy is not None:
                spy.finish()
        run.wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    run.load_after = _load()
    run.user, run.sys = usage.ru_utime, usage.ru_stime
    run.maxrss_mb = usage.ru_maxrss / 1024
    run.returncode = proc.returncode
    run.points = sampler.points
    if proc.returncode != 0:
        run.error = f"exit {proc.returncode}: {text.strip()[-1500:]}"
    return text


class _Spy:
    """py-spy attached to a running process for the middle half of ``seconds``."""

    def __init__(self, pid: int, seconds: float, output: Path) -> None:
        self.pid, self.output = pid, output
        self.proc: subprocess.Popen[bytes] | None = None
        argv = [
            str(PY_SPY),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds / 2))),
            "--rate",
            "100",
            "--nonblocking",  # never pauses watch: its timings stay its own
            "--format",
            "raw",
            "--output",
            str(output),
        ]
        self.timer = threading.Timer(seconds / 4, self._start, args=(argv,))
        self.timer.start()

    def _start(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )

    def finish(self) -> None:
        """Wait for py-spy (it ends with the process it watches); bounded, then killed."""
        self.timer.cancel()
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


# Leaves where a thread waits rather than works: the loop's epoll, idle to_thread workers.
IDLE_LEAVES = ("select (selectors.py)", "_worker (concurrent/futures/thread.py)")
# netmetrix frames every sample passes through: no news in an inclusive ranking
ROOT_FRAMES = ("netmetrix/cli/", "run_watch (netmetrix/watch.py)")


def read_profile(path: Path, top: int = 15) -> dict[str, Any] | None:
    """py-spy's raw stacks, summed: the share of the working samples by module and
    function where time was spent (self), and by netmetrix function (inclusive)."""
    if not path.exists():
        return None
    by_module: dict[str, int] = {}
    by_function: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = working = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count, frames = int(count_text), [_frame(f) for f in stack.split(";")]
        total += count
        if frames[-1].endswith(IDLE_LEAVES):
            continue
        working += count
        leaf = frames[-1]
        by_function[leaf] = by_function.get(leaf, 0) + count
        module = _module(leaf)
        by_module[module] = by_module.get(module, 0) + count
        for name in set(frames):
            if "netmetrix/" in name and not any(root in name for root in ROOT_FRAMES):
                inclusive[name] = inclusive.get(name, 0) + count
    if not working:
        return None

    def share(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [(name, round(100 * n / working, 1)) for name, n in ranked]

    return {
        "samples": total,
        "working": working,
        "modules": share(by_module),
        "functions": share(by_function),
        "netmetrix_inclusive": share(inclusive),
    }


def _frame(text: str) -> str:
    """``func (path/to/file.py:12)`` without the line number and the site-packages prefix."""
    text = re.sub(r":\d+\)$", ")", text)
    return re.sub(r"\(/\S*?/(site-packages|lib/python3\.\d+|src)/", "(", text)


def _module(frame: str) -> str:
    found = re.search(r"\(([^/)]+)(/[^)]*)?\)$", frame)
    if found is None:
        return frame
    top = found.group(1)
    return "netmetrix/" + frame.split("netmetrix/")[1].split(")")[0] if top == "netmetrix" else top


def _log_time(stamp: str) -> float:
    """Unix seconds of a log line's local time stamp (``2026-11-30 13:21:41,778``)."""
    return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def read_log(text: str, run: WatchRun) -> None:
    """t0, connections, summary lines and problems, from watch's stderr."""
    for line in text.splitlines():
        found = LOG_TIME.match(line)
        if found is None:
            continue
        stamp, level, message = found.groups()
        if run.t0 is None and message.startswith("watch: ") and " every " in message:
            run.t0 = _log_time(stamp)
        elif message.endswith("] connected"):
            run.connected += 1
            run.last_connected = _log_time(stamp)
        elif message.startswith("watch: ") and "samples/min" in message:
            run.summaries.append(message)
        if skipped := SKIPPED.match(message):
            run.skipped_ticks += int(skipped.group(1))
        elif "answer(s) are dropped" in message:
            run.dropped_ticks += 1
        if level in PROBLEMS:
            run.problem_count += 1
            if len(run.problems) < 20:
                run.problems.append(message[:300])


# ------------------------------------------------------------ what the store holds


@dataclass(frozen=True)
class Row:
    """One host's `up` sample, with its uptime_sec when it answered."""

    host: str
    ts: float  # unix seconds: when the collector had the answer (or gave up)
    ok: bool
    uptime: float | None


def store_rows(database: Path) -> list[Row]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        found = db.execute(
            "SELECT s.host, p.ts_ms, s.metric, p.value FROM samples p"
            " JOIN series s ON s.id = p.series_id WHERE s.metric IN ('up', 'uptime_sec')"
        ).fetchall()
    uptime = {(h, ts): v for h, ts, metric, v in found if metric == "uptime_sec"}
    return [
        Row(h, ts / 1000.0, v == 1.0, uptime.get((h, ts)))
        for h, ts, metric, v in found
        if metric == "up"
    ]


def count_samples(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        (count,) = db.execute("SELECT count(*) FROM samples").fetchone()
    return int(count)


def analyse(run: WatchRun, database: Path, boot: float) -> None:
    """Fill the run's counts, steady state and jitter from the store and the points.

    ``boot``: unix seconds the hosts' uptime_sec counts from.  An answer's
    request reached its host at ``boot + uptime_sec``, a moment after its tick
    was scheduled: that names the tick, even for an answer later than one interval.
    """
    rows = store_rows(database)
    run.answers = sum(1 for r in rows if r.ok and r.uptime is not None)
    run.empty_ok = sum(1 for r in rows if r.ok and r.uptime is None)
    run.failures = sum(1 for r in rows if not r.ok)
    run.samples = count_samples(database)
    if run.t0 is None or not run.answers:
        run.error = run.error or "no start line or no answers: nothing to analyse"
        return
    if run.connected < run.hosts or run.last_connected is None:
        run.error = run.error or f"only {run.connected} of {run.hosts} hosts connected"
        return
    # the tick after the last connection is the first with every host in it
    run.ready = run.t0 + ((run.last_connected - run.t0) // run.interval + 1) * run.interval
    steady = [r for r in rows if r.ts >= run.ready]
    lates = [_late(r, run.t0, run.interval, boot) for r in steady if r.ok and r.uptime]
    run.jitter = _jitter([x for x in lates if x is not None], sum(1 for r in steady if not r.ok))
    samples_per_answer = (run.samples - run.failures - run.empty_ok) / run.answers
    run.steady = _window(run, samples_per_answer)


TICK_SLACK = 0.02  # seconds: a request may seem to arrive before its tick by the clocks' error


def _late(row: Row, t0: float, interval: float, boot: float) -> float | None:
    """Seconds between the row's tick (the one its request was sent for) and the answer."""
    if row.uptime is None:
        return None
    tick = (boot + row.uptime - t0 + TICK_SLACK) // interval
    return row.ts - (t0 + tick * interval)


def _percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(pct) - 1]


def _jitter(lates: Sequence[float], misses: int) -> Jitter | None:
    if not lates:
        return None
    return Jitter(
        answers=len(lates),
        misses=misses,
        p50_ms=1000 * _percentile(lates, 50),
        p95_ms=1000 * _percentile(lates, 95),
        p99_ms=1000 * _percentile(lates, 99),
        max_ms=1000 * max(lates),
    )


def _window(run: WatchRun, samples_per_answer: float) -> Steady | None:
    """Between the first point after every host connected and the last before the last
    tick: CPU and the answers stored in between, read at both ends."""
    assert run.ready is not None
    assert run.t0 is not None
    # up to the last tick's start: once it is answered, watch closes every session
    last = run.t0 + (run.ticks - 1) * run.interval
    inside = [p for p in run.points if run.ready <= p.t <= last and p.stored_real is not None]
    if len(inside) < 2:
        return None
    a, b = inside[0], inside[-1]
    assert a.stored is not None
    assert a.stored_ok is not None
    assert a.stored_real is not None
    assert b.stored is not None
    assert b.stored_ok is not None
    assert b.stored_real is not None
    answers = b.stored_real - a.stored_real
    failures = (b.stored - b.stored_ok) - (a.stored - a.stored_ok)
    empty = (b.stored_ok - b.stored_real) - (a.stored_ok - a.stored_real)
    rss = [p.rss / 2**20 for p in inside]
    return Steady(
        start=a.t,
        end=b.t,
        answers=answers,
        failures=failures,
        samples=round(answers * samples_per_answer) + failures,
        cpu=b.cpu - a.cpu,
        rss_start_mb=rss[0],
        rss_end_mb=rss[-1],
        rss_median_mb=statistics.median(rss),
        rss_slope_kb_min=_slope([(p.t / 60, p.rss / 1024) for p in inside]),
        rss_late_slope_kb_min=_slope(
            [(p.t / 60, p.rss / 1024) for p in inside[len(inside) // 2 :]]
        ),
        sim_cpu=_delta(a.sim_cpu, b.sim_cpu),
        host_cpu=_delta(a.host_cpu, b.host_cpu),
        empty_ok=empty,
    )


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (x, y) points; None with fewer than three."""
    if len(points) < 3:
        return None
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / den if den else None


# ------------------------------------------------------------ part 1: the simulated fleet


def _fresh_store(database: Path, pristine: Path) -> None:
    """Put back the store as it was before any run (keys only): every run starts equal."""
    for suffix in ("-wal", "-shm"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    shutil.copy2(pristine, database)


def _pristine(database: Path) -> Path:
    copy = database.with_name(database.name + ".pristine")
    shutil.copy2(database, copy)
    return copy


# netmetrix's CLI under another GIL switch interval (--switch-interval): an experiment
SWITCHED = "import sys; sys.setswitchinterval(float(sys.argv.pop(1))); " + (
    "from netmetrix.cli import main; sys.exit(main())"
)


def _watch_argv(
    config: Path, interval: float, ticks: int, switch: float | None = None
) -> list[Any]:
    argv: list[Any] = [BIN / "netmetrix"]
    if switch is not None:
        argv = [sys.executable, "-c", SWITCHED, f"{switch:g}"]
    argv += ["--config", config, "watch"]
    return [*argv, "--interval", f"{interval:g}s", "--ticks", str(ticks)]


def _execute(
    fleet: str,
    config: Path,
    hosts: int,
    env: dict[str, str],
    cwd: Path,
    host_cpu: Callable[[], float] | None = None,
    settle: Callable[[], object] | None = None,
) -> ExecuteRun:
    """One execute run; ``host_cpu`` is read before it and after ``settle`` (sessions reaped)."""
    before_host = host_cpu() if host_cpu else None
    load_before = _load()
    done = harness.run_measured(
        [BIN / "netmetrix", "--config", config, "execute"],
        env=env,
        cwd=cwd,
        timeout=120 + 0.6 * hosts,
    )
    if settle is not None:
        settle()
    ok = harness.ok_count(done.stderr, "netmetrix")
    error = None if done.returncode == 0 and ok == hosts else done.stderr.strip()[-1500:]
    return ExecuteRun(
        fleet=fleet,
        hosts=hosts,
        wall=done.wall,
        cpu=done.user + done.sys,
        maxrss_mb=done.maxrss_mb,
        ok=ok,
        load_before=load_before,
        load_after=_load(),
        host_cpu=None if host_cpu is None or before_host is None else host_cpu() - before_host,
        error=error,
    )


def _sim_watch(
    args: argparse.Namespace,
    fleet: simfleet.SimFleet,
    env: dict[str, str],
    role: str,
    hosts: int,
    ticks: int,
    *,
    profile: bool = False,
) -> WatchRun:
    run = WatchRun(fleet="sim", role=role, hosts=hosts, ticks=ticks, interval=args.interval)
    spied = fleet.root / f"py-spy-{hosts}.txt" if profile else None
    text = run_watch(
        _watch_argv(fleet.config_for(hosts), args.interval, ticks, args.switch_interval),
        run,
        cwd=fleet.root,
        env=env,
        every=args.sample_every,
        readers=Readers(database=fleet.database, sim_cpu=cpu_of(fleet.worker_pids)),
        profile=spied,
    )
    read_log(text, run)
    analyse(run, fleet.database, fleet.boot)
    if spied is not None:
        run.profile = read_profile(spied)
    return run


def bench_sim(
    args: argparse.Namespace, results: Results, workdir: Path, env: dict[str, str]
) -> None:
    largest = max(args.sizes)
    _log(f"watch-bench: simulated fleet of {largest} hosts on {args.workers} worker processes")
    with simfleet.simfleet(
        workdir / "sim", largest, workers=args.workers, concurrency=args.concurrency
    ) as fleet:
        pristine = _pristine(fleet.database)
        plans = [("base", 1, args.base_ticks or args.ticks)]
        plans += [("fleet", n, args.ticks) for n in args.sizes if n > 1]
        for repeat in range(args.repeat):
            for role, hosts, ticks in plans:
                _log(f"watch-bench: sim N={hosts} watch x{ticks} ({repeat + 1}/{args.repeat})")
                _fresh_store(fleet.database, pristine)
                spy = args.profile and repeat == args.repeat - 1 and hosts == largest
                results.watch.append(_sim_watch(args, fleet, env, role, hosts, ticks, profile=spy))
                _report_watch(results.watch[-1])
                if not fleet.alive():
                    raise SystemExit("watch-bench: a simfleet worker died; see its log")
        for i in range(args.execute_runs):
            _log(f"watch-bench: sim N={largest} execute {i + 1}/{args.execute_runs}")
            _fresh_store(fleet.database, pristine)
            results.execute.append(
                _execute("sim", fleet.config_for(largest), largest, env, fleet.root)
            )
            _report_execute(results.execute[-1])


# ------------------------------------------------------------ part 2: the real sshd farm


def _live_session_cpu(bench: farmlib.BenchFarm) -> Callable[[], float]:
    """CPU seconds of every live process under the farm's reapers (sessions, probes)."""

    def total() -> float:
        cpu = 0.0
        for pid in bench.reaper_pids:
            with contextlib.suppress(psutil.Error):
                for proc in psutil.Process(pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        t = proc.cpu_times()
                        cpu += t.user + t.system
        return cpu

    return total


def _this_boot() -> float:
    """Unix seconds this machine booted at, as /proc/uptime (which the probe reads) says."""
    return time.time() - float(Path("/proc/uptime").read_text().split()[0])


def _farm_watch(
    args: argparse.Namespace, bench: farmlib.BenchFarm, config: Path, env: dict[str, str]
) -> WatchRun:
    n = args.farm_hosts
    database = bench.root / f"netmetrix-{n}.db"
    run = WatchRun(
        fleet="farm", role="fleet", hosts=n, ticks=args.farm_ticks, interval=args.interval
    )
    before = bench.sshd_cpu()
    text = run_watch(
        _watch_argv(config, args.interval, args.farm_ticks, args.switch_interval),
        run,
        cwd=bench.root,
        env=env,
        every=args.sample_every,
        readers=Readers(database=database, host_cpu=_live_session_cpu(bench)),
    )
    if not bench.wait_sessions_closed(budget=30):
        run.error = run.error or "sessions still open 30 s after watch ended"
    run.host_cpu = bench.sshd_cpu() - before
    read_log(text, run)
    analyse(run, database, _this_boot())
    return run


def bench_farm(
    args: argparse.Namespace, results: Results, workdir: Path, env: dict[str, str]
) -> None:
    n = args.farm_hosts
    login = farmlib.login_for(args.login)
    results.settings["farm_login"] = asdict(login)
    _log(f"watch-bench: sshd farm of {n} hosts on {args.farm_servers} sshd, login {login.user}")
    with farmlib.bench_farm(workdir / "farm", n, args.farm_servers, login) as bench:
        config = bench.config(n, args.farm_concurrency)
        done = harness.run_measured(
            [BIN / "netmetrix", "--config", config, "-q", "upload"],
            env=env,
            cwd=bench.root,
            timeout=120 + 0.6 * n,
        )
        if done.returncode != 0:
            raise SystemExit(f"watch-bench: upload failed:\n{done.stderr[-3000:]}")
        database = bench.root / f"netmetrix-{n}.db"
        pristine = _pristine(database)
        for repeat in range(args.repeat):
            _log(f"watch-bench: farm N={n} watch x{args.farm_ticks} ({repeat + 1}/{args.repeat})")
            _fresh_store(database, pristine)
            results.watch.append(_farm_watch(args, bench, config, env))
            _report_watch(results.watch[-1])
            for i in range(args.farm_runs):
                _log(f"watch-bench: farm N={n} execute {i + 1}/{args.farm_runs}")
                _fresh_store(database, pristine)
                ran = _execute(
                    "farm",
                    config,
                    n,
                    env,
                    bench.root,
                    host_cpu=bench.sshd_cpu,
                    settle=bench.wait_sessions_closed,
                )
                results.execute.append(ran)
                _report_execute(ran)


# ------------------------------------------------------------ progress lines


def _report_watch(run: WatchRun) -> None:
    steady = run.steady
    per = 1000 * steady.cpu / steady.answers if steady and steady.answers else None
    parts = [
        f"       wall {run.wall:6.1f}s  cpu {run.cpu:6.2f}s  answers {run.answers}",
        f"failures {run.failures}",
        f"up=1 without samples {run.empty_ok}",
        f"steady cpu/answer {per:.3f} ms" if per is not None else "no steady window",
    ]
    if run.jitter:
        parts.append(f"jitter p50 {run.jitter.p50_ms:.0f} ms p95 {run.jitter.p95_ms:.0f} ms")
    if steady:
        parts.append(f"rss {steady.rss_median_mb:.1f} MB")
    if run.host_cpu is not None:
        parts.append(f"host cpu {run.host_cpu:.2f}s")
    parts.append(f"load {run.load_after[0]:.1f}")
    if run.error:
        parts.append(f"ERROR {run.error[-300:]}")
    _log("  ".join(parts))


def _report_execute(run: ExecuteRun) -> None:
    host = f"  host cpu {run.host_cpu:.2f}s" if run.host_cpu is not None else ""
    status = "ok" if run.error is None else f"FAILED ({run.ok}/{run.hosts}): {run.error[-300:]}"
    _log(
        f"       wall {run.wall:6.1f}s  cpu {run.cpu:6.2f}s  ok {run.ok}{host}"
        f"  load {run.load_after[0]:.1f}  {status}"
    )


# ------------------------------------------------------------ the report


def _runs(data: dict[str, Any], fleet: str, role: str = "fleet") -> list[dict[str, Any]]:
    return [r for r in data["watch"] if r["fleet"] == fleet and r["role"] == role]


def _execs(data: dict[str, Any], fleet: str) -> list[dict[str, Any]]:
    return [r for r in data["execute"] if r["fleet"] == fleet and r["error"] is None]


def _per_answer(run: dict[str, Any]) -> float | None:
    steady = run["steady"]
    if not steady or not steady["answers"]:
        return None
    return float(1000 * steady["cpu"] / steady["answers"])


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _loads(run: dict[str, Any]) -> str:
    return f"{run['load_before'][0]:.1f} → {run['load_after'][0]:.1f}"


def rss_per_host_kb(data: dict[str, Any], hosts: int | None = None) -> list[tuple[int, float]]:
    """(N, (RSS at N - RSS at 1 host) / (N - 1)) per run of N hosts: steady medians."""
    bases = [r["steady"]["rss_median_mb"] for r in _runs(data, "sim", "base") if r["steady"]]
    fleets = [r for r in _runs(data, "sim") if r["steady"] and r["hosts"] > 1]
    if not bases:
        return []
    base = statistics.median(bases)
    return [
        (r["hosts"], 1024 * (r["steady"]["rss_median_mb"] - base) / (r["hosts"] - 1))
        for r in fleets
        if hosts is None or r["hosts"] == hosts
    ]


def rss_marginal_kb(data: dict[str, Any]) -> list[tuple[int, int, float]]:
    """(N1, N2, KB per host) between consecutive fleet sizes: steady RSS medians' slope."""
    by_size: dict[int, list[float]] = {}
    for r in _runs(data, "sim") + _runs(data, "sim", "base"):
        if r["steady"]:
            by_size.setdefault(r["hosts"], []).append(r["steady"]["rss_median_mb"])
    sizes = sorted(by_size)
    return [
        (a, b, 1024 * (statistics.median(by_size[b]) - statistics.median(by_size[a])) / (b - a))
        for a, b in itertools.pairwise(sizes)
    ]


def _rate(steady: dict[str, Any] | None, what: str) -> float | None:
    """``steady[what]`` per second of the steady window."""
    if not steady or steady.get(what) is None or steady["end"] <= steady["start"]:
        return None
    return float(steady[what] / (steady["end"] - steady["start"]))


def _stored_share(run: dict[str, Any]) -> str:
    """`up` rows stored of hosts x ticks, and why some are not (skipped or dropped ticks)."""
    stored = run["answers"] + run["failures"] + run.get("empty_ok", 0)
    text = f"{100 * stored / (run['hosts'] * run['ticks']):.0f}%"
    why = []
    if run.get("skipped_ticks"):
        why.append(f"{run['skipped_ticks']} ticks skipped")
    if run.get("dropped_ticks"):
        why.append(f"{run['dropped_ticks']} dropped")
    return text + (f" ({', '.join(why)})" if why else "")


def watch_table(data: dict[str, Any], fleet: str) -> list[str]:
    lines = [
        "| run | hosts x ticks | load 1-min (before → after) | collector CPU/answer, steady "
        "| answers/s | samples/s | collector cores | simulator cores | CPU/answer, whole run "
        "| jitter p50 / p95 / max | misses | up = 1 without samples | stored of requested "
        "| RSS steady (slope) |",
        "|" + "---|" * 14,
    ]
    runs = sorted(_runs(data, fleet) + _runs(data, fleet, "base"), key=lambda r: r["hosts"])
    for r in runs:
        s, j = r["steady"], r["jitter"]
        whole = 1000 * (r["user"] + r["sys"]) / r["answers"] if r["answers"] else None
        jit = f"{j['p50_ms']:.0f} / {j['p95_ms']:.0f} / {j['max_ms']:.0f} ms" if j else "-"
        misses = f"{j['misses']} of {j['misses'] + j['answers']}" if j else f"{r['failures']}"
        rss = (
            f"{s['rss_median_mb']:.1f} MB ({_fmt(s['rss_slope_kb_min'], '+.0f', ' KB/min')})"
            if s
            else "-"
        )
        label = f"{r['role']}{' ERROR' if r['error'] else ''}"
        lines.append(
            f"| {label} | {r['hosts']} x {r['ticks']} | {_loads(r)} "
            f"| {_fmt(_per_answer(r), '.3f', ' ms')} | {_fmt(_rate(s, 'answers'), '.0f')} "
            f"| {_fmt(_rate(s, 'samples'), ',.0f')} | {_fmt(_rate(s, 'cpu'), '.2f')} "
            f"| {_fmt(_rate(s, 'sim_cpu'), '.2f')} | {_fmt(whole, '.3f', ' ms')} | {jit} "
            f"| {misses} | {r.get('empty_ok', 0)} | {_stored_share(r)} | {rss} |"
        )
    return lines


def execute_line(data: dict[str, Any], fleet: str) -> str:
    runs = _execs(data, fleet)
    if not runs:
        return f"- `execute` ({fleet}): no successful run"
    cpus = ", ".join(f"{r['cpu']:.2f} s" for r in runs)
    per = ", ".join(f"{1000 * r['cpu'] / r['ok']:.2f} ms" for r in runs)
    walls = ", ".join(f"{r['wall']:.1f} s" for r in runs)
    loads = ", ".join(_loads(r) for r in runs)
    return (
        f"- `execute` on the same {runs[0]['hosts']} hosts, {len(runs)} runs: collector CPU "
        f"{cpus}, i.e. {per} per answer (start-up included); wall {walls}; load {loads}"
    )


def host_cpu_lines(data: dict[str, Any]) -> list[str]:
    watch = [r for r in _runs(data, "farm") if r["host_cpu"] is not None and r["answers"]]
    execs = [r for r in _execs(data, "farm") if r["host_cpu"] is not None and r["ok"]]
    lines = []
    for r in watch:
        s = r["steady"]
        steady = (
            f"{1000 * s['host_cpu'] / s['answers']:.2f} ms steady ({s['answers']} answers)"
            if s and s["host_cpu"] is not None and s["answers"]
            else "no steady window"
        )
        lines.append(
            f"- `watch` {r['hosts']} hosts x {r['ticks']} ticks: host CPU {r['host_cpu']:.2f} s "
            f"for {r['answers']} answers = {1000 * r['host_cpu'] / r['answers']:.2f} ms per "
            f"sample amortised (connections and probe start-ups included), {steady}; "
            f"collector CPU/answer {_fmt(_per_answer(r), '.3f', ' ms')} steady; load {_loads(r)}"
        )
    for r in execs:
        lines.append(
            f"- `execute` {r['hosts']} hosts: host CPU {r['host_cpu']:.2f} s for {r['ok']} "
            f"answers = {1000 * r['host_cpu'] / r['ok']:.1f} ms per sample; load {_loads(r)}"
        )
    return lines


def host_ratio(data: dict[str, Any]) -> tuple[float, float, float] | None:
    """(execute ms, watch amortised ms, watch steady ms) per sample on the farm: medians."""
    watch = [r for r in _runs(data, "farm") if r["host_cpu"] is not None and r["answers"]]
    execs = [r for r in _execs(data, "farm") if r["host_cpu"] is not None and r["ok"]]
    steady = [
        1000 * r["steady"]["host_cpu"] / r["steady"]["answers"]
        for r in watch
        if r["steady"] and (r["steady"]["host_cpu"] or 0) > 0 and r["steady"]["answers"]
    ]
    if not watch or not execs:
        return None
    one = statistics.median(1000 * r["host_cpu"] / r["ok"] for r in execs)
    amortised = statistics.median(1000 * r["host_cpu"] / r["answers"] for r in watch)
    return one, amortised, statistics.median(steady) if steady else amortised


def targets(data: dict[str, Any]) -> list[str]:
    """The issue's targets, measured at the largest simulated fleet: one table row each."""
    rows = ["| target (issue #13) | measured | |", "|---|---|---|"]
    if not data["settings"]["no_sim"]:
        rows += _sim_targets(data)
    ratio_host = host_ratio(data)
    if ratio_host:
        one, amortised, steady = ratio_host
        rows.append(
            f"| host CPU per sample an order of magnitude under one-shot (farm) "
            f"| {one / steady:.0f}x steady, {one / amortised:.0f}x amortised "
            f"({one:.1f} ms vs {steady:.2f} / {amortised:.2f} ms) "
            f"| {_verdict(one / steady >= TARGET_HOST_RATIO)} |"
        )
    return rows


def _sim_targets(data: dict[str, Any]) -> list[str]:
    rows = []
    n = max(data["settings"]["sizes"])
    fleet = [r for r in _runs(data, "sim") if r["hosts"] == n]
    interval = data["settings"]["interval"]
    per = [p for p in (_per_answer(r) for r in fleet) if p is not None]
    rows.append(
        _target(
            f"collector CPU ≤ {TARGET_CPU_MS} ms per answer (steady, {n} hosts x {interval:g} s)",
            per,
            " ms",
            lambda v: v <= TARGET_CPU_MS,
            ".3f",
        )
    )
    execs = [r for r in _execs(data, "sim") if r["ok"]]
    # a tiny smoke run can measure 0 ms of CPU per answer: no ratio then, not a crash
    if per and execs and statistics.median(per) > 0:
        one = statistics.median(1000 * r["cpu"] / r["ok"] for r in execs)
        ratio = one / statistics.median(per)
        rows.append(
            f"| collector CPU per answer 15x under `execute` ({n} hosts) | {ratio:.1f}x "
            f"({one:.2f} ms vs {statistics.median(per):.3f} ms) | {_verdict(ratio >= 15)} |"
        )
    rows.append(
        _target(
            f"RSS ≤ {TARGET_RSS_KB:.0f} KB per connected host ({n} hosts vs 1)",
            [kb for _, kb in rss_per_host_kb(data, n)],
            " KB",
            lambda v: v <= TARGET_RSS_KB,
            ".1f",
        )
    )
    rows.append(_jitter_target(fleet, n))
    rows.append(_flat_target(fleet))
    return rows


def _jitter_target(fleet: list[dict[str, Any]], n: int) -> str:
    """p95 over the answers; a miss (no answer by the deadline) counts as later than any."""
    shown, met = [], True
    for r in fleet:
        j = r["jitter"]
        if not j:
            continue
        share = j["misses"] / (j["misses"] + j["answers"])
        shown.append(f"{j['p95_ms']:.0f} ms (misses {100 * share:.1f}%)")
        met = met and j["p95_ms"] <= TARGET_JITTER_MS and share < 0.05
    text = f"tick jitter p95 ≤ {TARGET_JITTER_MS:.0f} ms ({n} hosts)"
    if not shown:
        return f"| {text} | not measured | |"
    return f"| {text} | {', '.join(shown)} per run | {_verdict(met)} |"


def _flat_target(fleet: list[dict[str, Any]]) -> str:
    """Flat: over the second half of a 10-minute steady window (after the connections and
    the first batches have settled) RSS grows by less than 2% of itself."""
    shown, met, long_enough = [], True, False
    for r in fleet:
        s = r["steady"]
        late = s.get("rss_late_slope_kb_min") if s else None
        if not s or late is None:
            continue
        minutes = (s["end"] - s["start"]) / 60
        growth_mb = late * minutes / 2 / 1024
        shown.append(
            f"{s['rss_start_mb']:.0f} → {s['rss_end_mb']:.0f} MB over {minutes:.1f} min; "
            f"second half {late:+.0f} KB/min ({growth_mb:+.1f} MB)"
        )
        met = met and abs(growth_mb) < 0.02 * s["rss_median_mb"]
        long_enough = long_enough or minutes >= 9
    text = "RSS flat over a 10-minute run"
    if not shown:
        return f"| {text} | not measured | |"
    verdict = _verdict(met) if long_enough else "not judged: needs a 10-minute run (--ticks 600)"
    return f"| {text} | {'; '.join(shown)} | {verdict} |"


def _target(
    text: str, values: Sequence[float], unit: str, ok: Callable[[float], bool], spec: str
) -> str:
    if not values:
        return f"| {text} | not measured | |"
    shown = ", ".join(f"{v:{spec}}{unit}" for v in values)
    return f"| {text} | {shown} (per run) | {_verdict(all(ok(v) for v in values))} |"


def _verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def merged(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The raw data of several invocations as one: the first's settings, everyone's runs."""
    data = runs[0]
    for other in runs[1:]:
        data["watch"] += other["watch"]
        data["execute"] += other["execute"]
        data["command"] += "\n" + other["command"]
        data["finished"] = other["finished"]
    return data


def markdown(data: dict[str, Any], raw_paths: Sequence[Path]) -> str:
    machine = data["machine"]
    s = data["settings"]
    section = s.get("section", "watch-bench")
    setup = (
        f"{machine['nproc']} CPUs ({machine['cpu']}), Python {machine['python']}, "
        f"asyncssh {machine['versions'].get('asyncssh', '?')}; interval {s['interval']:g} s; "
        f"every run on a fresh store (SQLite); CPU, RSS and the store read every "
        f"{s['sample_every']:g} s."
    )
    if s.get("switch_interval") is not None:
        setup += f" watch ran under sys.setswitchinterval({s['switch_interval']:g})."
    if not s["no_sim"]:
        setup += (
            f" Simulated fleet: {max(s['sizes'])} hosts on {s['workers']} asyncssh worker "
            f"processes on the same machine, concurrency {s['concurrency']}."
        )
    lines = [
        report.MARK.format(section=section, end="start"),
        f"## {s.get('title') or 'watch'} (`bench/watch_bench.py`)",
        "",
        f"Run {data['started']} - {data['finished']} with:",
        "",
        "```",
        data["command"],
        "```",
        "",
        setup,
        "",
        "### Targets",
        "",
        *_empty_warning(data),
        *targets(data),
    ]
    if not s["no_sim"]:
        lines += ["", "### Simulated fleet: `watch`", "", *_sim_lines(data)]
    if s["farm_hosts"]:
        lines += ["", "### Real sshd farm: host-side CPU per sample", ""]
        lines += host_cpu_lines(data) or ["- not measured"]
        lines += ["", *watch_table(data, "farm")]
    problems = [
        f"- {r['fleet']} {r['role']} run of {r['hosts']} hosts: {r['problem_count']} "
        "warning/error lines, e.g. " + "; ".join(f"`{p}`" for p in r["problems"][:3])
        for r in data["watch"]
        if r["problem_count"]
    ]
    if problems:
        lines += ["", "Log problems:", "", *problems]
    shown = ", ".join(f"`{_shown_path(path)}`" for path in raw_paths)
    lines += ["", *data["notes"], "", f"Raw data: {shown}."]
    lines.append(report.MARK.format(section=section, end="end"))
    return "\n".join(lines) + "\n"


def _empty_warning(data: dict[str, Any]) -> list[str]:
    """A line to read before the figures when watch stored `up` = 1 without samples."""
    empty = [r for r in data["watch"] if r.get("empty_ok")]
    if not empty:
        return []
    shown = ", ".join(f"{r['empty_ok']:,} ({r['hosts']} hosts x {r['ticks']})" for r in empty)
    return [
        f"**Warning:** watch stored `up` = 1 without any sample {shown} times: sessions "
        "that had died went on reporting their hosts up. Only rows with samples count as "
        "answers below.",
        "",
    ]


def profile_lines(run: dict[str, Any]) -> list[str]:
    """The profile of one run, as three short ranked lists."""
    p = run["profile"]

    def ranked(key: str) -> str:
        return "; ".join(f"{pct:.1f}% `{name}`" for name, pct in p[key])

    return [
        f"py-spy on the watch process, {run['hosts']} hosts, middle half of the run "
        f"({p['working']} working samples of {p['samples']} at 100 Hz; waits in epoll and "
        "idle worker threads left out; shares of the working samples):",
        "",
        f"- by module (self): {ranked('modules')}",
        f"- by function (self): {ranked('functions')}",
        f"- netmetrix functions (inclusive): {ranked('netmetrix_inclusive')}",
    ]


def _sim_lines(data: dict[str, Any]) -> list[str]:
    lines = [*watch_table(data, "sim"), "", execute_line(data, "sim")]
    per_host = rss_per_host_kb(data)
    if per_host:
        lines.append(
            "- RSS per connected host (steady median at N minus the 1-host base run, / (N-1)): "
            + ", ".join(f"{kb:.1f} KB at N={n}" for n, kb in per_host)
        )
    marginal = rss_marginal_kb(data)
    if marginal:
        lines.append(
            "- RSS per extra host between fleet sizes (medians of the steady medians): "
            + ", ".join(f"{kb:.1f} KB from N={a} to N={b}" for a, b, kb in marginal)
        )
    for r in _runs(data, "sim"):
        if r.get("profile"):
            lines += ["", *profile_lines(r)]
    for r in _runs(data, "sim"):
        if r["summaries"]:
            lines.append(
                f"- watch's own summary lines, {r['hosts']} hosts x {r['ticks']} ticks: "
                + "; ".join(f"`{m}`" for m in r["summaries"][:12])
            )
    return lines


def restudy(data: dict[str, Any]) -> None:
    """Work the steady windows out again from the raw points (--report-only after a
    change to ``_window``); jitter needs the store, so it stays as measured."""
    for r in data["watch"]:
        if r.get("ready") is None or r.get("t0") is None or not r["answers"]:
            continue
        run = WatchRun(
            fleet=r["fleet"],
            role=r["role"],
            hosts=r["hosts"],
            ticks=r["ticks"],
            interval=r["interval"],
            t0=r["t0"],
            ready=r["ready"],
            points=[Point(**p) for p in r["points"]],
        )
        if "empty_ok" not in r:  # raw data from before empty answers were counted
            for point in run.points:
                point.stored_real = None  # what it counted is not known: no window
            r["empty_ok"] = 0
        spa = (r["samples"] - r["failures"] - r.get("empty_ok", 0)) / r["answers"]
        steady = _window(run, spa)
        r["steady"] = asdict(steady) if steady else None


def _shown_path(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    try:
        return str(path.relative_to(HERE.parent))
    except ValueError:
        return str(path)


# ------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--hosts", default="1000", help="simulated fleet sizes, comma-separated (1000 or 200,1000)"
    )
    parser.add_argument("--interval", default="1s", help="watch --interval (1s, 2s...)")
    parser.add_argument("--ticks", type=int, default=60, help="ticks of the N-host watch runs")
    parser.add_argument(
        "--base-ticks", type=int, help="ticks of the 1-host base run (default: --ticks)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="times each measurement is made")
    parser.add_argument("--execute-runs", type=int, default=3, help="execute runs on the sim")
    parser.add_argument("--workers", type=int, default=4, help="simulator processes")
    parser.add_argument("--concurrency", type=int, default=100, help="<concurrency> of the sim")
    parser.add_argument("--sample-every", type=float, default=2.0, help="seconds between reads")
    parser.add_argument("--farm-hosts", type=int, default=100, help="hosts on the sshd farm")
    parser.add_argument("--farm-ticks", type=int, default=30)
    parser.add_argument("--farm-runs", type=int, default=3, help="execute runs on the farm")
    parser.add_argument("--farm-servers", type=int, default=4, help="sshd processes")
    parser.add_argument("--farm-concurrency", type=int, default=50)
    parser.add_argument("--login", choices=("auto", "bench", "current"), default="auto")
    parser.add_argument("--no-sim", action="store_true", help="skip the simulated fleet")
    parser.add_argument("--no-farm", action="store_true", help="skip the sshd farm")
    parser.add_argument("--quick", action="store_true", help="small and short: a quick look")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy (if installed) on the last run of the largest fleet: where its CPU goes",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="raw JSON directory")
    parser.add_argument("--markdown", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--workdir", type=Path, help="fleet files (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--report-only",
        type=Path,
        nargs="+",
        metavar="RAW.json",
        help="rewrite the section from raw data; several files: their runs in one section",
    )
    parser.add_argument(
        "--section",
        default="watch-bench",
        help="name of this report's section in --markdown (another name adds another)",
    )
    parser.add_argument("--title", default="watch", help="the section's heading")
    parser.add_argument(
        "--switch-interval",
        type=float,
        metavar="SECONDS",
        help="run watch under this sys.setswitchinterval (Python's default: 0.005)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.hosts, args.ticks, args.base_ticks, args.repeat = "100", 15, 8, 1
        args.execute_runs, args.farm_hosts, args.farm_ticks, args.farm_runs = 2, 20, 10, 1
        args.sample_every = 1.0
    args.interval_s = _seconds(args.interval, parser)
    if args.no_farm:
        args.farm_hosts = 0
    try:
        args.sizes = sorted({int(x) for x in str(args.hosts).split(",") if x.strip()})
    except ValueError:
        parser.error(f"--hosts: {args.hosts!r} is not a list of numbers")
    if not args.sizes or min(*args.sizes, args.ticks, args.base_ticks or 1, args.repeat) < 1:
        parser.error("--hosts, --ticks, --base-ticks and --repeat must be at least 1")
    if not re.fullmatch(r"[a-z0-9-]+", args.section):
        parser.error("--section: lowercase letters, digits and dashes")
    if args.farm_hosts < 0:
        parser.error("--farm-hosts must not be negative")
    if args.profile and not PY_SPY.exists():
        _log("watch-bench: --profile needs py-spy (pip install py-spy); not profiling")
        args.profile = False
    return args


def _seconds(text: str, parser: argparse.ArgumentParser) -> float:
    value = text.strip().removesuffix("s")
    try:
        seconds = float(value)
    except ValueError:
        parser.error(f"--interval: {text!r} is not seconds (1s, 2.5s)")
    if not 1 <= seconds <= 3600:
        parser.error("--interval: 1s to 1h")
    return seconds


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so that the fleets are stopped."""

    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _notes() -> list[str]:
    return [
        "How to read these figures: *steady* is the window from the first reading after "
        "the first tick with every host connected to the last reading before the last "
        "tick; "
        "*CPU/answer* is the watch process's user+sys over that window / the answers "
        "(`up` = 1) the store gained in it (one answer = one host's envelope of 24 samples, "
        "plus `up`); *cores* are CPU seconds per second over it; *whole run* divides the "
        "process's total CPU (start-up and every SSH handshake included) by every answer. "
        "*Jitter* is each answer's stored time (after verification) minus the scheduled "
        "time of the tick its request was sent for; *misses* are requests of the steady "
        "ticks that got no answer by the tick's deadline (stored as `up` = 0); *stored of "
        "requested* is the `up` rows stored / (hosts x ticks): the first tick or two of a "
        "run, while hosts connect, store nothing, and so do ticks skipped (the collector fell "
        "behind) or dropped (the store fell 10 ticks behind). The "
        "simulator's workers (and the farm's sshd and probes) share the collector's 2 "
        "cores, and other test suites ran on the machine (load averages in the tables): "
        "jitter and wall times are upper bounds; CPU times are the figures to compare.",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        data = merged([json.loads(path.read_text()) for path in args.report_only])
        restudy(data)
        data["notes"] = _notes()  # the method as this version describes it
        section = markdown(data, [path.resolve() for path in args.report_only])
        report.write_section(args.markdown, section, data["settings"].get("section", "watch-bench"))
        print(section)
        return 0
    report.precompile()
    shown = ["python", "bench/watch_bench.py", *(sys.argv[1:] if argv is None else argv)]
    results = Results(
        command=(os.environ.get("BENCH_COMMAND") or shlex.join(shown)).strip(),
        started=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        machine=harness.machine(),
        settings={
            "sizes": args.sizes,
            "interval": args.interval_s,
            "ticks": args.ticks,
            "base_ticks": args.base_ticks,
            "repeat": args.repeat,
            "execute_runs": args.execute_runs,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "sample_every": args.sample_every,
            "farm_hosts": 0 if args.no_farm else args.farm_hosts,
            "farm_ticks": args.farm_ticks,
            "farm_runs": args.farm_runs,
            "farm_servers": args.farm_servers,
            "no_sim": args.no_sim,
            "section": args.section,
            "switch_interval": args.switch_interval,
            "title": args.title,
            "profile": args.profile,
        },
        notes=_notes(),
    )
    args.interval = args.interval_s
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="netmetrix-watch-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)  # the farm's login user reaches its files below
    env = {**os.environ, "HOME": str(workdir / "home"), "NO_COLOR": "1"}
    env.pop("NETMETRIX_CONFIG", None)
    (workdir / "home").mkdir(exist_ok=True)
    try:
        with _terminate_as_interrupt():
            if not args.no_sim:
                bench_sim(args, results, workdir, env)
            if args.farm_hosts:
                bench_farm(args, results, workdir, env)
    except KeyboardInterrupt:
        _log("watch-bench: interrupted; the fleets are stopped")
        return 130
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    results.finished = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    data = asdict(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    raw_path = (args.out / f"watch-{stamp}.json").resolve()
    raw_path.write_text(json.dumps(data, indent=1) + "\n")
    section = markdown(data, [raw_path])
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    report.write_section(args.markdown, section, args.section)
    print(section)
    _log(f"watch-bench: wrote {raw_path} and {args.markdown}")
    failed = [r for r in results.watch if r.error] + [r for r in results.execute if r.error]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
