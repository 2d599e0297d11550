"""Benchmark netmetrix against the spec's design, ``ansible -m raw`` and parallel-ssh.

    python bench/harness.py                       # N = 50, 200, 1000; 3 runs each
    python bench/harness.py --quick               # N = 50, 1 run: a quick look while developing
    python bench/harness.py --hosts 4 --runs 1 --out /tmp/x --markdown /tmp/x/RESULTS.md

Starts a farm of real sshd processes on 127.0.0.1 (see farm.py), uploads the
probes once per fleet size, then for every N runs each contender once as a
warm-up (the one run whose memory is sampled) and ``--runs`` more times,
interleaved, each in its own process so that its CPU and peak RSS are its own
(``os.wait4``: user+sys of the process and every descendant it waited for;
their largest ru_maxrss, measured by GNU time).  Host-side CPU is what the
sshd listeners reaped from their sessions (sshd, shell, probe) during a run.
Writes raw data as JSON to ``--out`` and its section of ``--markdown``
(between its marks; the other benchmarks' sections are kept); prints the table.

The harness kills only what it started, by PID: a contender's own process
group on timeout or Ctrl-C, then the farm's sshd sessions and listeners.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import farm as farmlib  # noqa: E402
import report  # noqa: E402
from asyncssh_floor import collector_id  # noqa: E402

BIN = Path(sys.executable).parent
GNU_TIME = Path("/usr/bin/time")  # measures a child's peak RSS from a small parent
CONTENDERS = ("netmetrix", "spec", "ansible", "pssh", "floor")
NEEDS = {
    "netmetrix": "asyncssh",
    "spec": "paramiko",
    "ansible": "ansible",
    "pssh": "pssh",
    "floor": "asyncssh",
}


@dataclass
class Run:
    contender: str
    hosts: int
    warmup: bool
    wall: float
    user: float
    sys: float
    maxrss_mb: float  # largest single process of the contender's tree (ru_maxrss)
    host_cpu: float  # CPU the farm spent on this run: sshd, shells, probes
    returncode: int
    ok: int
    tree_pss_mb: float | None = None  # peak sum of PSS over the whole tree (warm-up only)
    error: str | None = None

    @property
    def cpu(self) -> float:
        return self.user + self.sys


@dataclass
class Results:
    command: str
    started: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    startup: dict[str, Any] = field(default_factory=dict)
    probe_cpu: dict[str, Any] = field(default_factory=dict)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    load: list[dict[str, Any]] = field(default_factory=list)
    finished: str = ""


# ------------------------------------------------------------ running one process


def _kill_group(pgid: int) -> None:
    """SIGTERM the process group we started, then SIGKILL what is left (bounded)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            os.killpg(pgid, 0)  # raises ProcessLookupError once the group is gone
            time.sleep(0.05)
        os.killpg(pgid, signal.SIGKILL)


class _TreeSampler(threading.Thread):
    """Peak of the summed PSS (or RSS: ``rss``) of a process and its descendants, sampled
    every ``interval``.  RSS is cheap to read; PSS reads every mapping (smaps)."""

    def __init__(self, pid: int, interval: float = 0.2, *, rss: bool = False) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.rss, self.peak = pid, interval, rss, 0
        self.done = threading.Event()

    def run(self) -> None:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.pid)
            while not self.done.wait(self.interval):
                total = 0
                for proc in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        if self.rss:
                            total += proc.memory_info().rss
                        else:
                            total += proc.memory_full_info().pss
                self.peak = max(self.peak, total)


@dataclass
class Finished:
    wall: float
    user: float
    sys: float
    maxrss_mb: float
    returncode: int
    stderr: str
    tree_pss_mb: float | None
    tree_rss_mb: float | None = None


def run_measured(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: dict[str, str],
    cwd: Path,
    timeout: float,
    sample_memory: bool = False,
    sample_rss: bool = False,
    user: tuple[int, int] | None = None,
) -> Finished:
    """Run ``argv`` in its own process group; its wall time and its tree's rusage.

    ``sample_memory``: also the peak PSS of its process tree; ``sample_rss``: of RSS.
    The peak RSS comes from GNU time (``%M``) when it is installed: the ru_maxrss
    that ``os.wait4`` gives is never under this process's own RSS, which the child
    inherited at fork (Linux keeps the high-water mark across exec).
    """
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as peak:
        command = [os.fspath(a) for a in argv]
        if GNU_TIME.exists():
            if user:
                os.chown(peak.name, *user)  # GNU time writes it as the user it runs as
            command = [str(GNU_TIME), "-q", "-f", "%M", "-o", peak.name, *command]
        started = time.perf_counter()
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            user=user[0] if user else None,
            group=user[1] if user else None,
            extra_groups=[] if user else None,
        )
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            _kill_group(proc.pid)

        timer = threading.Timer(timeout, expire)
        timer.start()
        sampler = _TreeSampler(proc.pid) if sample_memory else None
        rss = _TreeSampler(proc.pid, rss=True) if sample_rss else None
        for reader in (sampler, rss):
            if reader:
                reader.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - started
        except BaseException:
            _kill_group(proc.pid)
            raise
        finally:
            timer.cancel()
            for reader in (sampler, rss):
                if reader:
                    reader.done.set()
                    reader.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 0)  # something of it outlived it (a daemonised ssh?)
            _kill_group(proc.pid)
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
        maxrss_kb = _peak_kb(peak.read()) or usage.ru_maxrss
    if expired.is_set():
        text += f"\nbench: killed after the {timeout:g}s timeout"
    return Finished(
        wall=wall,
        user=usage.ru_utime,
        sys=usage.ru_stime,
        maxrss_mb=maxrss_kb / 1024,
        returncode=proc.returncode,
        stderr=text,
        tree_pss_mb=sampler.peak / 2**20 if sampler else None,
        tree_rss_mb=rss.peak / 2**20 if rss else None,
    )


def _peak_kb(text: str) -> int | None:
    """GNU time's ``%M`` (kilobytes) from its output file, or None (not run, killed)."""
    words = text.split()
    return int(words[-1]) if words and words[-1].isdigit() else None


# ------------------------------------------------------------ contenders


def contender_argv(name: str, bench: farmlib.BenchFarm, n: int, concurrency: int) -> list[Any]:
    config = bench.root / f"config-{n}.xml"
    py = sys.executable
    return {
        "netmetrix": [BIN / "netmetrix", "--config", config, "execute"],
        "spec": [py, HERE / "spec_baseline.py", "--config", config, "execute"],
        "ansible": [
            py,
            HERE / "ansible_runner.py",
            bench.root / f"inventory-{n}.ini",
            farmlib.SPEC_SCRIPT,
            str(concurrency),
        ],
        "pssh": [py, HERE / "pssh_runner.py", config],
        "floor": [py, HERE / "asyncssh_floor.py", config],
    }[name]


def ok_count(stderr: str, name: str) -> int:
    """Hosts the contender reports as done, from its summary line."""
    verb = {"netmetrix": "execute", "spec": "execute"}.get(name, name)
    for line in reversed(stderr.splitlines()):
        if line.startswith(f"{verb}: "):
            words = line.split()
            if len(words) > 2 and words[2].rstrip(",") == "ok" and words[1].isdigit():
                return int(words[1])
            return 0
    return 0


def measure(
    name: str,
    bench: farmlib.BenchFarm,
    n: int,
    args: argparse.Namespace,
    env: dict[str, str],
    *,
    warmup: bool,
) -> Run:
    before = bench.sshd_cpu()
    done = run_measured(
        contender_argv(name, bench, n, args.concurrency),
        env=env,
        cwd=bench.root,
        timeout=args.timeout + args.timeout_per_host * n,
        sample_memory=warmup,
    )
    bench.wait_sessions_closed()
    ok = ok_count(done.stderr, name)
    error = None
    if done.returncode != 0 or ok != n:
        error = done.stderr.strip()[-1500:]
    return Run(
        contender=name,
        hosts=n,
        warmup=warmup,
        wall=done.wall,
        user=done.user,
        sys=done.sys,
        maxrss_mb=done.maxrss_mb,
        host_cpu=bench.sshd_cpu() - before,
        returncode=done.returncode,
        ok=ok,
        tree_pss_mb=done.tree_pss_mb,
        error=error,
    )


# ------------------------------------------------------------ start-up and probe CPU


def startup_time(env: dict[str, str], cwd: Path, runs: int) -> dict[str, Any]:
    """`netmetrix --help`, hyperfine-style: 3 warm-ups, then the median of ``runs``."""
    argv: list[str | Path] = [BIN / "netmetrix", "--help"]
    for _ in range(3):
        run_measured(argv, env=env, cwd=cwd, timeout=30)
    done = [run_measured(argv, env=env, cwd=cwd, timeout=30) for _ in range(runs)]
    walls = [d.wall for d in done]
    return {
        "command": "netmetrix --help",
        "runs": runs,
        "median": statistics.median(walls),
        "min": min(walls),
        "max": max(walls),
        "cpu_median": statistics.median(d.user + d.sys for d in done),
        "maxrss_mb": max(d.maxrss_mb for d in done),
    }


def probe_cpu(bench: farmlib.BenchFarm, n: int, runs: int) -> dict[str, Any]:
    """Each probe run directly as the login user, as a host runs it: CPU and wall per run.

    netmetrix's probe gets the collector id of the store of N=``n``, whose key it reads.
    """
    host = bench.hosts[0]
    login = bench.login
    env = {"PATH": "/usr/bin:/bin", "HOME": str(host.directory), "LANG": "C.UTF-8"}
    as_user = (login.uid, login.gid) if os.getuid() == 0 and login.uid != 0 else None
    result: dict[str, Any] = {}
    for name, script in (("netmetrix", farmlib.NMX_SCRIPT), ("spec", farmlib.SPEC_SCRIPT)):
        argv: list[Any] = [login.python, host.directory / script]
        if name == "netmetrix":
            store = bench.root / f"netmetrix-{n}.db"
            argv += [secrets.token_hex(16), collector_id(f"sqlite:///{store}")]
        for _ in range(2):
            run_measured(argv, env=env, cwd=host.directory, timeout=30, user=as_user)
        done = [
            run_measured(argv, env=env, cwd=host.directory, timeout=30, user=as_user)
            for _ in range(runs)
        ]
        failed = [d.stderr for d in done if d.returncode != 0]
        result[name] = {
            "cpu_median": statistics.median(d.user + d.sys for d in done),
            "wall_median": statistics.median(d.wall for d in done),
            "maxrss_mb": max(d.maxrss_mb for d in done),
            "runs": runs,
            "error": failed[0][-500:] if failed else None,
        }
    return result


# ------------------------------------------------------------ machine


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in ("netmetrix", "asyncssh", "paramiko", "ansible-core", "parallel-ssh", "psutil"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[dist] = version(dist)
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False)
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "openssh": (ssh.stderr or ssh.stdout).strip(),
        "versions": versions,
    }


def load_now(label: str) -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    return {"when": label, "load1": one, "load5": five, "load15": fifteen}


# ------------------------------------------------------------ main


def available(names: Sequence[str]) -> list[str]:
    return [n for n in names if importlib.util.find_spec(NEEDS[n]) is not None]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hosts", default="50,200,1000", help="fleet sizes N, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per N (after a warm-up)")
    parser.add_argument("--quick", action="store_true", help="N=50, 1 run: for development")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--servers", type=int, default=4, help="sshd processes in the farm")
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help="comma-separated subset of " + ",".join(CONTENDERS) + " (missing packages: skipped)",
    )
    parser.add_argument("--login", choices=("auto", "bench", "current"), default="auto")
    parser.add_argument("--help-runs", type=int, default=20, help="runs of `netmetrix --help`")
    parser.add_argument("--probe-runs", type=int, default=10, help="direct probe runs for CPU")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per run, plus...")
    parser.add_argument("--timeout-per-host", type=float, default=0.6, help="...seconds per host")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="raw JSON directory")
    parser.add_argument("--markdown", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--workdir", type=Path, help="farm directory (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the farm directory")
    parser.add_argument(
        "--report-only", type=Path, metavar="RAW.json", help="rewrite --markdown from raw data"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.hosts, args.runs, args.help_runs, args.probe_runs = "50", 1, 10, 3
    args.sizes = sorted({int(x) for x in str(args.hosts).split(",") if x.strip()})
    wanted = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = set(wanted) - set(CONTENDERS)
    if unknown or not args.sizes or min(args.sizes) < 1 or args.runs < 1:
        parser.error(f"bad --hosts/--runs/--contenders ({', '.join(sorted(unknown))})")
    args.contender_list = available(wanted)
    args.skipped = sorted(set(wanted) - set(args.contender_list))
    return args


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _interleaved(names: list[str], run: int) -> list[str]:
    """Rotate the order every run so no contender always follows the same one."""
    k = run % len(names)
    return names[k:] + names[:k]


def _prepare(
    bench: farmlib.BenchFarm, n: int, args: argparse.Namespace, env: dict[str, str]
) -> list[dict[str, Any]]:
    """Write the fleet files for N and upload both probes (timed, for the record)."""
    bench.config(n, args.concurrency)
    bench.inventory(n)
    config = bench.root / f"config-{n}.xml"
    uploads = []
    steps: list[tuple[str, list[Any]]] = [
        ("netmetrix upload", [BIN / "netmetrix", "--config", config, "-q", "upload"]),
    ]
    if {"spec", "ansible", "pssh"} & set(args.contender_list):
        steps.append(
            (
                "spec upload",
                [sys.executable, HERE / "spec_baseline.py", "--config", config, "upload"],
            )
        )
    for label, argv in steps:
        done = run_measured(
            argv, env=env, cwd=bench.root, timeout=args.timeout + args.timeout_per_host * n
        )
        if done.returncode != 0:
            raise SystemExit(f"bench: {label} failed at N={n}:\n{done.stderr[-3000:]}")
        uploads.append({"hosts": n, "step": label, "wall": done.wall, "cpu": done.user + done.sys})
    return uploads


def bench_all(args: argparse.Namespace, results: Results, workdir: Path) -> None:
    login = farmlib.login_for(args.login)
    results.settings["login"] = asdict(login)
    env = {**os.environ, "HOME": str(workdir / "home"), "NO_COLOR": "1"}
    env.pop("NETMETRIX_CONFIG", None)
    (workdir / "home").mkdir(parents=True, exist_ok=True)
    _log(f"bench: netmetrix --help x{args.help_runs}")
    results.startup = startup_time(env, workdir, args.help_runs)
    names = args.contender_list
    with farmlib.bench_farm(workdir / "fleet", max(args.sizes), args.servers, login) as bench:
        for n in args.sizes:
            results.load.append(load_now(f"before N={n}"))
            results.uploads += _prepare(bench, n, args, env)
            for name in names:
                _log(f"bench: N={n} {name} warm-up")
                results.runs.append(measure(name, bench, n, args, env, warmup=True))
                _report_run(results.runs[-1])
            if not results.probe_cpu:
                results.probe_cpu = probe_cpu(bench, n, args.probe_runs)
            for r in range(args.runs):
                for name in _interleaved(names, r):
                    _log(f"bench: N={n} {name} run {r + 1}/{args.runs}")
                    results.runs.append(measure(name, bench, n, args, env, warmup=False))
                    _report_run(results.runs[-1])
            results.load.append(load_now(f"after N={n}"))


def _report_run(run: Run) -> None:
    status = "ok" if run.error is None else f"FAILED ({run.ok}/{run.hosts} ok): {run.error[-300:]}"
    _log(
        f"       wall {run.wall:7.2f}s  cpu {run.cpu:6.2f}s  rss {run.maxrss_mb:6.1f} MB"
        f"  host cpu {run.host_cpu:6.2f}s  {status}"
    )


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the farm and the running contender are cleaned up."""

    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        data = json.loads(args.report_only.read_text())
        section = report.markdown(data, args.report_only, HERE / "analysis.md")
        report.write_section(args.markdown, section, report.SECTION)
        print(report.table(data) + "\n\n" + report.goals_text(data))
        return 0
    report.precompile()
    shown = ["python", "bench/harness.py", *(sys.argv[1:] if argv is None else argv)]
    results = Results(
        command=(os.environ.get("BENCH_COMMAND") or shlex.join(shown)).strip(),
        started=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        machine=machine(),
        settings={
            "hosts": args.sizes,
            "runs": args.runs,
            "concurrency": args.concurrency,
            "servers": args.servers,
            "contenders": args.contender_list,
            "skipped": args.skipped,
        },
    )
    if args.skipped:
        _log(f"bench: skipping {', '.join(args.skipped)} (package not installed)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="netmetrix-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)  # the hosts' login user must reach its files below
    code = 0
    try:
        with _terminate_as_interrupt():
            bench_all(args, results, workdir)
    except KeyboardInterrupt:
        _log("bench: interrupted; the farm is stopped")
        code = 130
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if code:
        return code
    results.finished = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    data = asdict(results)
    for raw, run in zip(data["runs"], results.runs, strict=True):
        raw["cpu"] = run.cpu
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    raw_path = args.out / f"bench-{stamp}.json"
    raw_path.write_text(json.dumps(data, indent=1) + "\n")
    text = report.markdown(data, raw_path, HERE / "analysis.md")
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    report.write_section(args.markdown, text, report.SECTION)  # the other sections stay
    print(report.table(data))
    print()
    print(report.goals_text(data))
    _log(f"bench: wrote {raw_path} and {args.markdown}")
    failed = [r for r in results.runs if r.error is not None]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
