"""One-shot ``netmetrix execute`` at scale, side by side with a bare asyncssh loop.

    python bench/scale_bench.py                          # 1,000 and 10,000 hosts, 3 rounds
    python bench/scale_bench.py --quick                  # 200 hosts, 1 round: a quick look
    python bench/scale_bench.py --hosts 5000 --latency 20-200 --fail 2%

One simulated fleet (simfleet.py: asyncssh servers in worker processes on
127.77.x.y, real per-host SSH host keys and envelope keys, real sealed
envelopes) of the largest size is started once; every size N is its first N
hosts.  For every N, each contender runs once per round, the order rotated
from round to round (interleaved: a slow spell of the machine hits every
contender alike), each in its own process:

- ``netmetrix``: the real CLI, ``netmetrix --config config-N.xml execute``, on
  a fresh copy of the fleet's store (keys only) every run;
- ``floor``: ``bench/asyncssh_floor.py config-N.xml``, a bare asyncssh loop
  (connect, run, check an envelope came back; nothing stored);
- ``workers-K``: ``netmetrix ... execute --workers K`` for K in
  ``--workers-curve``, when this netmetrix has ``execute --workers``.

Per run: wall time; collector CPU, user+sys of the process and every process
it started (``os.wait4``); peak RSS of its largest process (``ru_maxrss``) and
of its whole process tree (summed RSS, read every 0.2 s); the simulator's CPU
meanwhile (its workers share the machine's cores).  The first N gets one
warm-up round first (``--warmup``), not counted.

Figures: CPU per host; *hosts per minute per collector core* = 60 x N /
collector CPU seconds (what one core of a collector machine would do, the
SSH servers being elsewhere); hosts per minute of wall time; the ratio of
netmetrix's CPU to the floor's in each round, and its median.  Writes raw
data as JSON to ``--out`` and its section of ``--markdown`` (between its
marks; the other benchmarks' sections are kept); prints the section.  Kills
only what it started, by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import harness  # noqa: E402
import report  # noqa: E402
import simfleet  # noqa: E402

BIN = Path(sys.executable).parent
SECTION = "scale-bench"
GOAL_RATIO = 1.15  # netmetrix CPU per host / the floor's (issue #15)
GOAL_PER_CORE = 15_000  # hosts per minute per collector core
GOAL_RSS_MB = 150.0  # peak RSS at 10,000 hosts
GOAL_RSS_N = 10_000
GOAL_WORKERS = 1.7  # hosts per minute, all cores / one worker
LABELS = {"netmetrix": "netmetrix execute", "floor": "bare asyncssh (floor)"}


@dataclass
class Run:
    contender: str
    hosts: int
    round: int  # 0: the warm-up
    wall: float
    user: float
    sys: float
    maxrss_mb: float  # the largest single process (ru_maxrss)
    tree_rss_mb: float  # peak of the summed RSS of the process and its descendants
    sim_cpu: float  # CPU seconds of the simulator's workers during the run
    ok: int
    expected_ok: int
    load1: float  # load average when the run started
    error: str | None = None

    @property
    def cpu(self) -> float:
        return self.user + self.sys


# ------------------------------------------------------------ running


def cpu_of(pids: Sequence[int]) -> Callable[[], float]:
    """A reader of the CPU seconds the processes ``pids`` have used so far."""

    def total() -> float:
        spent = 0.0
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                spent += times.user + times.system
        return spent

    return total


def argv_of(contender: str, config: Path) -> list[Any]:
    if contender == "floor":
        return [sys.executable, HERE / "asyncssh_floor.py", config]
    argv: list[Any] = [BIN / "netmetrix", "--config", config, "execute"]
    if contender.startswith("workers-"):
        argv += ["--workers", contender.removeprefix("workers-")]
    return argv


def has_workers(env: dict[str, str]) -> bool:
    """Whether this netmetrix's ``execute`` takes ``--workers``."""
    done = subprocess.run(
        [BIN / "netmetrix", "execute", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    return "--workers" in done.stdout


def measure(
    contender: str,
    fleet: simfleet.SimFleet,
    n: int,
    round_no: int,
    env: dict[str, str],
    pristine: Path,
) -> Run:
    config = fleet.root / f"config-{n}.xml"
    fresh_store(fleet.database, pristine)
    sim_cpu = cpu_of(fleet.worker_pids)
    expected = sum(1 for h in fleet.hosts[:n] if h.fail is None)
    load1 = os.getloadavg()[0]
    before = sim_cpu()
    done = harness.run_measured(
        argv_of(contender, config),
        env=env,
        cwd=fleet.root,
        timeout=300 + 0.5 * n + fleet.command_timeout * (n - expected),
        sample_rss=True,
    )
    name = "floor" if contender == "floor" else "netmetrix"
    ok = harness.ok_count(done.stderr, name)
    error = None
    if ok != expected or (done.returncode != 0 and expected == n):
        error = f"{ok} ok, expected {expected}; exit {done.returncode}: {done.stderr[-1500:]}"
    return Run(
        contender=contender,
        hosts=n,
        round=round_no,
        wall=done.wall,
        user=done.user,
        sys=done.sys,
        maxrss_mb=done.maxrss_mb,
        tree_rss_mb=done.tree_rss_mb or 0.0,
        sim_cpu=sim_cpu() - before,
        ok=ok,
        expected_ok=expected,
        load1=load1,
        error=error,
    )


def fresh_store(database: Path, pristine: Path) -> None:
    """Put back the store as it was before any run (keys only): every run starts equal."""
    for suffix in ("-wal", "-shm"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    shutil.copy2(pristine, database)


def rotated(names: Sequence[str], k: int) -> list[str]:
    """``names`` rotated by ``k``: no contender always runs first, or after the same one."""
    k %= len(names)
    return [*names[k:], *names[:k]]


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _report_run(run: Run) -> None:
    status = "ok" if run.error is None else f"FAILED: {run.error[-300:]}"
    _log(
        f"       wall {run.wall:7.2f}s  cpu {run.cpu:7.2f}s ({1000 * run.cpu / run.hosts:.2f} "
        f"ms/host)  rss {run.maxrss_mb:5.0f} MB  tree {run.tree_rss_mb:5.0f} MB  "
        f"sim cpu {run.sim_cpu:6.2f}s  load {run.load1:.1f}  {status}"
    )


def bench(
    args: argparse.Namespace, names: Sequence[str], env: dict[str, str], workdir: Path
) -> list[Run]:
    largest = max(args.sizes)
    _log(f"scale-bench: starting a simulated fleet of {largest} hosts")
    runs: list[Run] = []
    with simfleet.simfleet(
        workdir / "sim",
        largest,
        workers=args.sim_workers,
        concurrency=args.concurrency,
        command_timeout=args.command_timeout,
        latency=args.latency,
        fail=args.fail,
        modes=args.fail_modes,
    ) as fleet:
        pristine = fleet.database.with_name("netmetrix.db.pristine")
        shutil.copy2(fleet.database, pristine)
        for n in args.sizes:
            fleet.config_for(n)
            warmups = args.warmup if n == args.sizes[0] else 0
            for round_no in range(1 - warmups, args.runs + 1):
                for contender in rotated(names, round_no):
                    what = "warm-up" if round_no < 1 else f"round {round_no}/{args.runs}"
                    _log(f"scale-bench: N={n} {contender} {what}")
                    runs.append(measure(contender, fleet, n, max(round_no, 0), env, pristine))
                    _report_run(runs[-1])
                    if not fleet.alive():
                        raise SystemExit("scale-bench: a simulator worker died; see its log")
    return runs


# ------------------------------------------------------------ the report


@dataclass(frozen=True)
class Row:
    hosts: int
    contender: str
    runs: int
    failed: int
    wall: float
    wall_min: float
    wall_max: float
    cpu: float
    maxrss_mb: float
    tree_rss_mb: float
    sim_cpu: float

    @property
    def per_host_ms(self) -> float:
        return 1000 * self.cpu / self.hosts

    @property
    def per_core_minute(self) -> float:
        return 60 * self.hosts / self.cpu if self.cpu else 0.0

    @property
    def per_wall_minute(self) -> float:
        return 60 * self.hosts / self.wall if self.wall else 0.0


def measured(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The counted runs (no warm-up) that collected every host they should have."""
    return [r for r in data["runs"] if r["round"] > 0 and r["error"] is None]


def rows(data: dict[str, Any]) -> list[Row]:
    """One row per (N, contender): medians of its good counted runs; peaks over all runs."""
    found = []
    good = measured(data)
    for n in data["settings"]["sizes"]:
        for name in data["settings"]["contenders"]:
            mine = [r for r in good if r["hosts"] == n and r["contender"] == name]
            every = [r for r in data["runs"] if r["hosts"] == n and r["contender"] == name]
            if not mine:
                continue
            walls = [r["wall"] for r in mine]
            found.append(
                Row(
                    hosts=n,
                    contender=name,
                    runs=len(mine),
                    failed=sum(1 for r in every if r["error"] is not None),
                    wall=statistics.median(walls),
                    wall_min=min(walls),
                    wall_max=max(walls),
                    cpu=statistics.median(r["user"] + r["sys"] for r in mine),
                    maxrss_mb=max(r["maxrss_mb"] for r in every),
                    tree_rss_mb=max(r["tree_rss_mb"] for r in every),
                    sim_cpu=statistics.median(r["sim_cpu"] for r in mine),
                )
            )
    return found


def paired(
    data: dict[str, Any], n: int, a: str, b: str, key: Callable[[dict[str, Any]], float]
) -> list[float]:
    """``key(a's run) / key(b's run)`` for every round in which both ran well at N=``n``."""
    by_round: dict[tuple[str, int], dict[str, Any]] = {
        (r["contender"], r["round"]): r for r in measured(data) if r["hosts"] == n
    }
    rounds = sorted({k for _, k in by_round})
    return [
        key(by_round[a, k]) / key(by_round[b, k])
        for k in rounds
        if (a, k) in by_round and (b, k) in by_round and key(by_round[b, k])
    ]


def label(contender: str) -> str:
    if contender.startswith("workers-"):
        return f"netmetrix execute --workers {contender.removeprefix('workers-')}"
    return LABELS.get(contender, contender)


def table(data: dict[str, Any]) -> list[str]:
    lines = [
        "| N | contender | runs | wall median (min-max) | hosts/min (wall) | collector CPU "
        "| CPU/host | hosts/min per collector core | peak RSS (largest process) "
        "| peak RSS (process tree) | simulator CPU/host |",
        "|" + "---|" * 11,
    ]
    for r in rows(data):
        failed = f" ({r.failed} failed)" if r.failed else ""
        lines.append(
            f"| {r.hosts:,} | {label(r.contender)} | {r.runs}{failed} "
            f"| {r.wall:.1f} s ({r.wall_min:.1f}-{r.wall_max:.1f}) | {r.per_wall_minute:,.0f} "
            f"| {r.cpu:.2f} s | {r.per_host_ms:.2f} ms | {r.per_core_minute:,.0f} "
            f"| {r.maxrss_mb:.0f} MB | {r.tree_rss_mb:.0f} MB "
            f"| {1000 * r.sim_cpu / r.hosts:.2f} ms |"
        )
    return lines


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else "**met**" if met else "**not met**"


def _ratios(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def goals(data: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(goal, what was measured, met) for the issue's goals this bench measures."""
    found = {(r.hosts, r.contender): r for r in rows(data)}
    sizes = data["settings"]["sizes"]
    largest = max(sizes)
    result: list[tuple[str, str, bool | None]] = []
    for n in sizes:
        text = f"N={n:,}: netmetrix collector CPU per host ≤ {GOAL_RATIO}x the floor's"
        ratios = paired(data, n, "netmetrix", "floor", lambda r: r["user"] + r["sys"])
        nmx, floor = found.get((n, "netmetrix")), found.get((n, "floor"))
        if not ratios or nmx is None or floor is None:
            result.append((text, "not measured (both need a good run in the same round)", None))
            continue
        median = statistics.median(ratios)
        result.append(
            (
                text,
                f"{median:.2f}x (median of rounds: {_ratios(ratios)}; "
                f"{nmx.per_host_ms:.2f} vs {floor.per_host_ms:.2f} ms)",
                median <= GOAL_RATIO,
            )
        )
    nmx = found.get((largest, "netmetrix"))
    text = f"≥ {GOAL_PER_CORE:,} hosts per minute per collector core, store included"
    if nmx is None:
        result.append((text, "not measured", None))
    else:
        result.append(
            (
                text,
                f"{nmx.per_core_minute:,.0f} at N={largest:,} ({nmx.per_host_ms:.2f} ms CPU/host)",
                nmx.per_core_minute >= GOAL_PER_CORE,
            )
        )
    text = f"peak RSS ≤ {GOAL_RSS_MB:.0f} MB at N={GOAL_RSS_N:,} one-shot"
    big = found.get((GOAL_RSS_N, "netmetrix"))
    if big is None:
        shown = f"N={largest:,}: {nmx.maxrss_mb:.0f} MB; " if nmx else ""
        result.append((text, f"not measured ({shown}needs N={GOAL_RSS_N:,})", None))
    else:
        result.append((text, f"{big.maxrss_mb:.0f} MB", big.maxrss_mb <= GOAL_RSS_MB))
    curve = [c for c in data["settings"]["contenders"] if c.startswith("workers-")]
    text = f"`--workers` on all cores: ≥ {GOAL_WORKERS}x the hosts per minute of one worker"
    if "workers-1" not in curve or len(curve) < 2:
        why = data["settings"].get("no_workers") or "not run"
        result.append((text, f"not measured ({why})", None))
    else:
        best = curve[-1]
        ratios = paired(data, largest, best, "workers-1", lambda r: 1 / r["wall"])
        if not ratios:
            result.append((text, "not measured (no round with both runs good)", None))
        else:
            median = statistics.median(ratios)
            result.append(
                (
                    text,
                    f"{median:.2f}x for {label(best)} at N={largest:,} "
                    f"(median of rounds: {_ratios(ratios)})",
                    median >= GOAL_WORKERS,
                )
            )
    return result


def _commit(data: dict[str, Any]) -> str:
    commit = data.get("commit")
    return f" (commit {commit})" if commit else ""


def git_commit() -> str | None:
    """The checkout's commit, with ``+`` when it has changes: which netmetrix ran."""
    try:
        head = subprocess.run(
            ["git", "-C", HERE.parent, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", HERE.parent, "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+" if dirty else "")


def _setup(data: dict[str, Any]) -> str:
    m, s = data["machine"], data["settings"]
    versions = ", ".join(
        f"{k} {v}" for k, v in m["versions"].items() if k in ("netmetrix", "asyncssh")
    )
    loads = [r["load1"] for r in data["runs"]]
    load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "?"
    fail = "no failing hosts"
    if s["fail"]:
        fail = f"{100 * s['fail']:g}% failing hosts ({', '.join(s['fail_modes'])})"
    return (
        f"{m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}; {versions}{_commit(data)}. "
        f"Simulated fleet of {max(s['sizes']):,} hosts on {s['sim_workers']} asyncssh worker "
        f"process{'es' * (s['sim_workers'] != 1)} on the same machine (127.77.x.y, one "
        f"address and host key per host), answer latency {s['latency']}, {fail}; "
        f"concurrency {s['concurrency']}; SQLite store, a fresh copy (keys only) every run. "
        f"Load average (1 min) at the start of the runs: {load}."
    )


NOTES = (
    "How to read these figures: medians of the counted rounds (the first size's warm-up "
    "round is not counted), each contender once per round, the order rotated from round "
    "to round. *Collector CPU* is user+sys of the contender's process and every process "
    "it started (os.wait4); *hosts/min per collector core* = 60 x N / collector CPU "
    "seconds: what one core of a collector would do if the SSH servers were elsewhere; "
    "*hosts/min (wall)* counts the simulator too, whose workers run on the same cores "
    "(their CPU per host is in the last column), and every other job on the machine. "
    "The CPU ratio to the floor is taken round by round, then its median: on a shared, "
    "loaded machine the ratio of interleaved runs is the figure to trust, not the "
    "absolute times. *Peak RSS (largest process)* is ru_maxrss; *process tree* sums the "
    "RSS of the process and its children, read every 0.2 s (shared pages counted in each)."
)


def markdown(data: dict[str, Any], raw_path: Path) -> str:
    lines = [
        "## One-shot at scale on a simulated fleet (`bench/scale_bench.py`)",
        "",
        f"Run {data['started']} - {data['finished']} with:",
        "",
        "```",
        data["command"],
        "```",
        "",
        _setup(data),
        "",
        "### Goals",
        "",
        "| goal | measured | |",
        "|---|---|---|",
        *[f"| {text} | {value} | {_verdict(met)} |" for text, value, met in goals(data)],
        "",
        "### Runs",
        "",
        *table(data),
    ]
    failed = [r for r in data["runs"] if r["error"]]
    if failed:
        lines += ["", "Failed runs (not counted):", ""]
        lines += [
            f"- N={r['hosts']} {label(r['contender'])} round {r['round']}: "
            f"`{r['error'].splitlines()[0][:200]}`"
            for r in failed
        ]
    shown = raw_path.resolve()
    repo = HERE.parent
    if shown.is_relative_to(repo):
        shown = shown.relative_to(repo)
    lines += ["", NOTES, "", f"Raw data: `{shown}`."]
    return report.marked(SECTION, "\n".join(lines))


# ------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hosts", default="1000,10000", help="fleet sizes N, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="counted rounds per N (default 3)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="uncounted rounds before the first N (default 1)"
    )
    parser.add_argument("--quick", action="store_true", help="N=200, 1 round: a quick look")
    parser.add_argument("--concurrency", type=int, default=100, help="<concurrency> (default 100)")
    parser.add_argument(
        "--contenders",
        default="netmetrix,floor,workers",
        help="some of netmetrix,floor,workers (workers: the --workers-curve, if netmetrix has it)",
    )
    parser.add_argument(
        "--workers-curve",
        default="1,2" + (",auto" if (os.cpu_count() or 1) > 2 else ""),
        help="netmetrix execute --workers values to run (default 1,2 and, with more than "
        "2 cores, auto: all of them)",
    )
    simfleet.add_fleet_options(parser, workers_flag="--sim-workers")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="raw JSON directory")
    parser.add_argument("--markdown", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--workdir", type=Path, help="the fleet's files (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--report-only", type=Path, metavar="RAW.json", help="rewrite the section from raw data"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.hosts, args.runs = "200", 1
    try:
        args.sizes = sorted({int(x) for x in str(args.hosts).split(",") if x.strip()})
    except ValueError:
        parser.error(f"--hosts: {args.hosts!r} is not a list of numbers")
    if not args.sizes or min(args.sizes) < 1 or max(args.sizes) > simfleet.MAX_HOSTS:
        parser.error(f"--hosts: sizes 1 to {simfleet.MAX_HOSTS}")
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1, --warmup at least 0")
    wanted = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if not wanted or set(wanted) - {"netmetrix", "floor", "workers"}:
        parser.error("--contenders: some of netmetrix,floor,workers")
    args.wanted = wanted
    curve = [w.strip() for w in args.workers_curve.split(",") if w.strip()]
    if not curve or any(w != "auto" and not w.isdigit() for w in curve):
        parser.error("--workers-curve: numbers or auto, comma-separated")
    args.curve = curve
    return args


def contenders(args: argparse.Namespace, env: dict[str, str]) -> tuple[list[str], str | None]:
    """The contenders to run, and why the workers curve is left out (or None)."""
    names = [c for c in args.wanted if c != "workers"]
    if "workers" not in args.wanted:
        return names, "not asked for (--contenders)"
    if not has_workers(env):
        return names, "this netmetrix has no `execute --workers`"
    return names + [f"workers-{w}" for w in args.curve], None


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so that the fleet and the running contender are stopped."""

    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _command(shown: Sequence[str]) -> str:
    """How this run was started: the script's command line, and ``make bench``'s if that ran it."""
    mine = shlex.join(shown)
    make = " ".join(os.environ.get("BENCH_COMMAND", "").split())
    return f"{make}   # ran: {mine}" if make else mine


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        data = json.loads(args.report_only.read_text())
        section = markdown(data, args.report_only)
        report.write_section(args.markdown, section, SECTION)
        print(section)
        return 0
    report.precompile()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="netmetrix-scale-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(workdir / "home"), "NO_COLOR": "1"}
    env.pop("NETMETRIX_CONFIG", None)
    (workdir / "home").mkdir(exist_ok=True)
    names, no_workers = contenders(args, env)
    if no_workers and "workers" in args.wanted:
        _log(f"scale-bench: no workers curve: {no_workers}")
    shown = ["python", "bench/scale_bench.py", *(sys.argv[1:] if argv is None else argv)]
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    try:
        with _terminate_as_interrupt():
            runs = bench(args, names, env, workdir) if names else []
    except KeyboardInterrupt:
        _log("scale-bench: interrupted; the fleet is stopped")
        return 130
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    data = {
        "command": _command(shown),
        "started": started,
        "finished": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": harness.machine(),
        "commit": git_commit(),
        "settings": {
            "sizes": args.sizes,
            "runs": args.runs,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "contenders": names,
            "no_workers": no_workers,
            "sim_workers": args.sim_workers,
            "latency": str(args.latency),
            "fail": args.fail,
            "fail_modes": list(args.fail_modes),
            "command_timeout": args.command_timeout,
        },
        "runs": [{**asdict(r), "cpu": r.cpu} for r in runs],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    raw_path = (args.out / f"scale-{stamp}.json").resolve()
    raw_path.write_text(json.dumps(data, indent=1) + "\n")
    section = markdown(data, raw_path)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    report.write_section(args.markdown, section, SECTION)
    print(section)
    _log(f"scale-bench: wrote {raw_path} and {args.markdown}")
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
