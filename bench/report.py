"""Turn the harness's raw results (a dict, as in bench/results/*.json) into tables and goals.

Also ``write_section``, which every benchmark uses to put its own section into
bench/RESULTS.md: between its marks, leaving the other benchmarks' sections as they are.
"""

from __future__ import annotations

import compileall
import statistics
from pathlib import Path
from typing import Any, NamedTuple

LABELS = {
    "netmetrix": "netmetrix execute",
    "spec": "spec design (paramiko + Pool)",
    "ansible": "ansible -m raw",
    "pssh": "parallel-ssh",
    "floor": "bare asyncssh (floor, not a contender)",
}
GOAL_N = 200
RSS_N = 1000
MARK = "<!-- {section}:{end} -->"  # a section of RESULTS.md: between its start and end marks
SECTION = "harness"  # this report's own section
TITLE = "# Benchmarks\n"  # a new RESULTS.md starts with it


def marked(section: str, text: str) -> str:
    """``text`` between the marks of ``section``."""
    start, end = MARK.format(section=section, end="start"), MARK.format(section=section, end="end")
    return f"{start}\n{text.strip(chr(10))}\n{end}\n"


def write_section(path: Path, section: str, name: str) -> None:
    """Replace section ``name`` of ``path`` (from its start mark to its end mark) with
    ``section`` (marks included), or append it; the rest of the file stays as it was."""
    text = path.read_text() if path.exists() else TITLE
    start_mark = MARK.format(section=name, end="start")
    end_mark = MARK.format(section=name, end="end")
    start, end = text.find(start_mark), text.find(end_mark)
    if start >= 0 and end > start:
        after = text[end + len(end_mark) :].removeprefix("\n")
        text = text[:start] + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


class Row(NamedTuple):
    hosts: int
    contender: str
    runs: int
    failed: int
    wall: float
    wall_min: float
    wall_max: float
    cpu: float
    maxrss_mb: float
    tree_pss_mb: float | None
    host_cpu: float

    @property
    def rate(self) -> float:
        return self.hosts / self.wall if self.wall else 0.0


def rows(data: dict[str, Any]) -> list[Row]:
    """One row per (N, contender): medians of the measured runs that collected every host."""
    found: list[Row] = []
    for n in data["settings"]["hosts"]:
        for name in data["settings"]["contenders"]:
            mine = [r for r in data["runs"] if r["hosts"] == n and r["contender"] == name]
            good = [r for r in mine if not r["warmup"] and r["error"] is None]
            warm = [r for r in mine if r["warmup"]]
            if not good:
                continue
            walls = [r["wall"] for r in good]
            pss = [r["tree_pss_mb"] for r in warm if r["tree_pss_mb"]]
            found.append(
                Row(
                    hosts=n,
                    contender=name,
                    runs=len(good),
                    failed=sum(1 for r in mine if r["error"] is not None),
                    wall=statistics.median(walls),
                    wall_min=min(walls),
                    wall_max=max(walls),
                    cpu=statistics.median(r["user"] + r["sys"] for r in good),
                    maxrss_mb=max(r["maxrss_mb"] for r in mine),
                    tree_pss_mb=max(pss) if pss else None,
                    host_cpu=statistics.median(r["host_cpu"] for r in good),
                )
            )
    return found


def _find(all_rows: list[Row], n: int, name: str) -> Row | None:
    return next((r for r in all_rows if r.hosts == n and r.contender == name), None)


HEADER = (
    "| N | contender | wall median (min-max) | hosts/s | collector CPU | CPU/host "
    "| peak RSS (largest process) | peak PSS (whole tree) | host-side CPU/host "
    "| CPU-bound wall floor |"
)


def table(data: dict[str, Any]) -> str:
    cores = data["machine"]["nproc"] or 1
    lines = [HEADER, "|" + "---|" * 10]
    for r in rows(data):
        floor = (r.cpu + r.host_cpu) / cores
        pss = f"{r.tree_pss_mb:.0f} MB" if r.tree_pss_mb else "-"
        failed = f" ({r.failed} failed runs)" if r.failed else ""
        lines.append(
            f"| {r.hosts} | {LABELS[r.contender]}{failed} "
            f"| {r.wall:.2f} s ({r.wall_min:.2f}-{r.wall_max:.2f}) | {r.rate:.0f} "
            f"| {r.cpu:.2f} s | {1000 * r.cpu / r.hosts:.1f} ms "
            f"| {r.maxrss_mb:.0f} MB | {pss} | {1000 * r.host_cpu / r.hosts:.0f} ms "
            f"| {floor:.2f} s |"
        )
    return "\n".join(lines)


class Goal(NamedTuple):
    text: str
    measured: str
    met: bool | None  # None: not measured in this run


def slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of (N, seconds) points, or None with fewer than two sizes."""
    if len({n for n, _ in points}) < 2:
        return None
    mean_n = statistics.fmean(n for n, _ in points)
    mean_c = statistics.fmean(c for _, c in points)
    num = sum((n - mean_n) * (c - mean_c) for n, c in points)
    den = sum((n - mean_n) ** 2 for n, _ in points)
    return num / den


def goals(data: dict[str, Any]) -> list[Goal]:
    found = rows(data)
    nmx, spec, ansible = (_find(found, GOAL_N, c) for c in ("netmetrix", "spec", "ansible"))
    result: list[Goal] = []

    def ratio(text: str, a: Row | None, b: Row | None, attr: str, limit: float) -> None:
        if a is None or b is None:
            result.append(Goal(text, f"not measured (needs N={GOAL_N})", None))
            return
        x, y = getattr(a, attr), getattr(b, attr)
        result.append(Goal(text, f"{x / y:.2f}x ({x:.2f} s vs {y:.2f} s)", x / y <= limit))

    ratio(f"N={GOAL_N}: netmetrix wall ≤ 0.75x spec design", nmx, spec, "wall", 0.75)
    ratio(f"N={GOAL_N}: netmetrix wall ≤ 0.25x ansible -m raw", nmx, ansible, "wall", 0.25)
    ratio(f"N={GOAL_N}: netmetrix collector CPU ≤ 0.5x spec design", nmx, spec, "cpu", 0.5)
    points = [(r.hosts, r.cpu) for r in found if r.contender == "netmetrix"]
    per_host = slope(points)
    result.append(
        Goal(
            "netmetrix collector CPU per extra host ≤ 3 ms",
            "not measured (needs two sizes)"
            if per_host is None
            else f"{1000 * per_host:.1f} ms (least-squares slope over N = "
            + ", ".join(str(n) for n, _ in points)
            + ")",
            None if per_host is None else per_host <= 0.003,
        )
    )
    big = _find(found, RSS_N, "netmetrix")
    result.append(
        Goal(
            f"netmetrix peak RSS at N={RSS_N} ≤ 150 MB",
            f"not measured (needs N={RSS_N})" if big is None else f"{big.maxrss_mb:.0f} MB",
            None if big is None else big.maxrss_mb <= 150,
        )
    )
    startup = data.get("startup") or {}
    if startup:
        median = startup["median"]
        result.append(
            Goal(
                "`netmetrix --help` ≤ 150 ms",
                f"{1000 * median:.0f} ms (median of {startup['runs']}; "
                f"min {1000 * startup['min']:.0f} ms)",
                median <= 0.150,
            )
        )
    return result


def scaling(data: dict[str, Any]) -> str:
    """Collector CPU per extra host (least-squares slope over the sizes run), per contender."""
    found = rows(data)
    parts = []
    for name in data["settings"]["contenders"]:
        per_host = slope([(r.hosts, r.cpu) for r in found if r.contender == name])
        if per_host is not None:
            parts.append(f"{LABELS[name]} {1000 * per_host:.1f} ms")
    return "Collector CPU per extra host: " + "; ".join(parts) + "." if parts else ""


def goals_text(data: dict[str, Any]) -> str:
    lines = ["| goal | measured | |", "|---|---|---|"]
    for g in goals(data):
        verdict = "not measured" if g.met is None else "**met**" if g.met else "**not met**"
        lines.append(f"| {g.text} | {g.measured} | {verdict} |")
    return "\n".join(lines)


def _machine(data: dict[str, Any]) -> str:
    m = data["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    login = data["settings"].get("login", {})
    return (
        f"- {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB memory, Linux {m['kernel']}\n"
        f"- Python {m['python']}; {versions}\n"
        f"- {m['openssh']}\n"
        f"- farm: {data['settings']['servers']} sshd processes on 127.0.0.1, "
        f"concurrency {data['settings']['concurrency']}, login `{login.get('user')}` "
        f"(shell `{login.get('shell')}`), hosts' Python `{login.get('python')}`\n"
        "- load average (1/5/15 min): "
        + "; ".join(
            f"{x['when']} {x['load1']:.2f}/{x['load5']:.2f}/{x['load15']:.2f}" for x in data["load"]
        )
    )


def _probe(data: dict[str, Any]) -> str:
    lines = []
    for name, p in (data.get("probe_cpu") or {}).items():
        what = "netmetrix probe (client.py)" if name == "netmetrix" else "spec probe (psutil)"
        lines.append(
            f"- {what}: {1000 * p['cpu_median']:.0f} ms CPU, {1000 * p['wall_median']:.0f} ms "
            f"wall, {p['maxrss_mb']:.0f} MB RSS per run (median of {p['runs']}, run directly "
            "as the login user; the rest of the host-side CPU above is sshd and the shell)"
            + (f"; FAILED: {p['error']}" if p.get("error") else "")
        )
    return "\n".join(lines)


def markdown(data: dict[str, Any], raw_path: Path, analysis: Path) -> str:
    """The harness's section of RESULTS.md, between its marks (``write_section``)."""
    notes = analysis.read_text().strip() if analysis.exists() else ""
    skipped = data["settings"].get("skipped") or []
    startup = data.get("startup") or {}
    parts = [
        f"Run {data['started']} - {data['finished']} with:",
        "",
        "```",
        data["command"],
        "```",
        "",
        "## Machine",
        "",
        _machine(data),
        "",
        "## Results",
        "",
        f"Medians of {data['settings']['runs']} runs per contender after one warm-up, "
        "interleaved. *Collector CPU* is user+sys of the contender's process and every "
        "process it started (os.wait4); *peak RSS* is ru_maxrss, the largest single "
        "process; *peak PSS* is the whole process tree, sampled every 0.2 s during the "
        "warm-up; *host-side CPU* is what the farm's sshd processes spent (sshd, shell, "
        "probe), per host.",
        "",
        table(data),
        "",
        "*CPU-bound wall floor* = (collector CPU + host-side CPU) / cores: the least "
        "wall time this run could take on this machine, since the farm's sshd and probes "
        "run on the same cores as the collector.",
        "",
        scaling(data),
        "",
        "## Goals",
        "",
        goals_text(data),
        "",
        "## Start-up and probe",
        "",
        f"- `netmetrix --help`: median {1000 * startup.get('median', 0):.0f} ms wall, "
        f"{1000 * startup.get('cpu_median', 0):.0f} ms CPU over {startup.get('runs')} runs "
        "after 3 warm-ups",
        _probe(data),
    ]
    if skipped:
        parts += ["", f"Skipped (package not installed): {', '.join(skipped)}."]
    if notes:
        parts += ["", notes]
    repo = Path(__file__).resolve().parent.parent
    shown = raw_path.resolve()
    if shown.is_relative_to(repo):
        shown = shown.relative_to(repo)
    parts += ["", f"Raw data: `{shown}`."]
    return marked(SECTION, "\n".join(parts))


def precompile() -> None:
    """Byte-compile netmetrix's sources, as ``pip install`` does for a user.

    An editable install (``make venv``) has no .pyc files until a run writes
    them, and none is ever written under PYTHONDONTWRITEBYTECODE: every run
    measured would then compile ~11,000 lines first (~0.3 s of CPU) that no
    installed netmetrix pays.
    """
    compileall.compile_dir(Path(__file__).resolve().parent.parent / "src", quiet=1)
