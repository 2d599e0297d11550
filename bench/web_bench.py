"""The dashboard against a big SQLite store: `/` render time, a host's 24 h chart data
time and the page weight of `/` (issue #14, item 6).

    .venv/bin/python bench/web_bench.py          # 1,000 hosts x 25 series, 24 h every 10 s
    .venv/bin/python bench/web_bench.py --hosts 100 --hours 2            # a quick one
    .venv/bin/python bench/web_bench.py --markdown bench/RESULTS.md      # + its Web section

The store is built once per shape (hosts, hours, interval) under --workdir and
reused: its samples end at the time it was built, and every measurement takes
that time as "now", so a reused store is measured as it was fresh.  The
samples are written in SQL (a recursive CTE per batch of series, in primary-key
order), not through ``Store.record_runs``: 216 million rows through Python would
take hours and measure the writer, not the pages.

What is timed is what the server does for a request, without HTTP: ``/`` is
``views.fleet`` (the store's queries) plus the template; the chart data is
``views.host_charts`` plus ``json.dumps``, exactly what ``/hosts/NAME/series.json``
returns.  Medians of --runs after one warm-up, each on another host.  Page
weight: the HTML of ``/`` as served (plain and gzip, as the server sends it to
a browser that accepts gzip) plus every script, stylesheet and icon it loads
(static files are sent uncompressed).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from netmetrix.config import Config, load_config  # noqa: E402
from netmetrix.configxml import SSH, ConfigXml, Host, render  # noqa: E402
from netmetrix.store import Store  # noqa: E402
from netmetrix.store.schema import labels_json  # noqa: E402
from netmetrix.web import pages, views  # noqa: E402

STATIC = ROOT / "src" / "netmetrix" / "web" / "static"
# 25 series a host, as the probe reports them on a machine with two mounts, two
# interfaces and one disk (plus `up`).
SERIES: tuple[tuple[str, dict[str, str]], ...] = (
    ("up", {}),
    *((m, {}) for m in ("uptime_sec", "cpu_percent", "mem_percent", "load1", "load5", "load15")),
    *((m, {}) for m in ("cpu_count", "mem_total_bytes", "mem_available_bytes", "swap_percent")),
    *(
        (m, {"mount": mount})
        for mount in ("/", "/var")
        for m in ("disk_percent", "disk_used_bytes", "disk_total_bytes")
    ),
    *(
        (m, {"interface": i})
        for i in ("eth0", "eth1")
        for m in ("net_rx_bytes_per_sec", "net_tx_bytes_per_sec")
    ),
    ("disk_read_bytes_per_sec", {"device": "vda"}),
    ("disk_write_bytes_per_sec", {"device": "vda"}),
    ("procs_total", {}),
    ("procs_running", {}),
)
GOALS = {"render_ms": 300.0, "chart_ms": 200.0, "weight_kb": 300.0}
BATCH = 40  # series per INSERT statement


@dataclass(frozen=True, slots=True, kw_only=True)
class Shape:
    hosts: int
    hours: float
    interval: float  # seconds between samples

    @property
    def samples_per_series(self) -> int:
        return int(self.hours * 3600 / self.interval)

    @property
    def rows(self) -> int:
        return self.hosts * len(SERIES) * self.samples_per_series

    @property
    def name(self) -> str:
        return f"web-{self.hosts}h-{self.hours:g}x{self.interval:g}s"


# ---------------------------------------------------------------- the store


def host_names(count: int) -> list[str]:
    return [f"h{i:04d}" for i in range(1, count + 1)]


def build(shape: Shape, workdir: Path) -> tuple[Path, float, float]:
    """The store (and config.xml) of ``shape``, built unless there; (dir, end, build s)."""
    where = workdir / shape.name
    done = where / "built.json"
    if done.exists():
        return where, float(json.loads(done.read_text())["end"]), 0.0
    where.mkdir(parents=True, exist_ok=True)
    for leftover in where.glob("netmetrix.db*"):
        leftover.unlink()
    started = time.monotonic()
    write_config(where, shape.hosts)
    end = float(int(time.time()))
    with Store.open(f"sqlite:///{where / 'netmetrix.db'}"):
        pass  # the schema, by migration
    fill(where / "netmetrix.db", shape, end)
    seconds = time.monotonic() - started
    done.write_text(json.dumps({"end": end, "build_seconds": seconds, **asdict(shape)}))
    return where, end, seconds


def write_config(where: Path, hosts: int) -> None:
    config = ConfigXml(
        database="netmetrix.db",
        ssh=SSH(known_hosts="known_hosts"),
        hosts=[
            Host(name=name, address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
            for i, name in enumerate(host_names(hosts), start=1)
        ],
    )
    (where / "config.xml").write_text(render(config))


def fill(db: Path, shape: Shape, end: float) -> None:
    """Series, samples and host rows in SQL; progress on stderr."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-1000000")  # 1 GB
        names = host_names(shape.hosts)
        rows = [(h, m, labels_json(lb)) for h in names for m, lb in SERIES]
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO series (host, metric, labels) VALUES (?, ?, ?)", rows)
        conn.executemany(
            "INSERT INTO hosts (name, address, last_seen_ms, probe_version, updated_ms)"
            " VALUES (?, '192.0.2.1', ?, '0.1.0', ?)",
            [(h, int(end * 1000), int(end * 1000)) for h in names],
        )
        conn.execute("COMMIT")
        total = conn.execute("SELECT max(id) FROM series").fetchone()[0]
        count = shape.samples_per_series
        step_ms = int(shape.interval * 1000)
        first_ms = int(end * 1000) - (count - 1) * step_ms
        for low in range(1, total + 1, BATCH):
            high = min(low + BATCH - 1, total)
            conn.execute("BEGIN")
            conn.execute(
                # outer loop: series (CROSS JOIN keeps the order), inner: time; so rows
                # arrive in primary-key order.  Values: `up` 1, others a slow wave per
                # host plus noise, so sparklines and averages have something to show.
                "WITH RECURSIVE t(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM t WHERE i < ?)"
                " INSERT INTO samples (series_id, ts_ms, value)"
                " SELECT s.id, ? + t.i * ?,"
                "  CASE WHEN s.metric = 'up' THEN 1.0"
                "   ELSE 50.0 + 30.0 * ((t.i + s.id * 37) % 720 - 360) / 360.0"
                "        + (abs(random()) % 1000) / 100.0 END"
                " FROM series AS s CROSS JOIN t WHERE s.id BETWEEN ? AND ?",
                (count - 1, first_ms, step_ms, low, high),
            )
            conn.execute("COMMIT")
            if high % 1000 < BATCH or high == total:
                print(f"  {high * count:,} of {total * count:,} samples", file=sys.stderr)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


# ---------------------------------------------------------------- measuring


def timed(call: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """Median wall and CPU milliseconds of ``runs`` calls after one warm-up; the last
    result.  CPU time is this process's: what other load on the machine leaves alone."""
    result = call()
    wall, cpu = [], []
    for _ in range(runs):
        started, used = time.perf_counter(), time.process_time()
        result = call()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - used) * 1000)
    return statistics.median(wall), statistics.median(cpu), result


def render_overview(config: Config, store: Store, now: float) -> str:
    """What GET / does: the store's queries, then the template."""
    found = views.fleet(config, store, now)
    return bytes(pages._render("overview.html", fleet=found, refresh=10).body).decode()


def measure(where: Path, end: float, runs: int) -> dict[str, Any]:
    config = load_config(where / "config.xml")
    names = [h.name for h in config.hosts]
    with Store.open(f"sqlite:///{where / 'netmetrix.db'}") as store:
        fleet_ms, _, _ = timed(lambda: views.fleet(config, store, end), runs)
        render_ms, render_cpu, html = timed(lambda: render_overview(config, store, end), runs)
        hosts = iter(names * (runs + 2))
        chart_ms, chart_cpu, data = timed(
            lambda: json.dumps(views.host_charts(store, next(hosts), end - 86400, end)), runs
        )
    assets = re.findall(r'(?:src|href)="/static/([^"?]+)', html)
    asset_bytes = {name: (STATIC / name).stat().st_size for name in assets}
    zipped = len(gzip.compress(html.encode(), compresslevel=9))  # GZipMiddleware's level
    charts = json.loads(data)["charts"]
    return {
        "fleet_ms": fleet_ms,
        "render_ms": render_ms,
        "render_cpu_ms": render_cpu,
        "html_bytes": len(html.encode()),
        "html_gzip_bytes": zipped,
        "assets": asset_bytes,
        "weight_bytes": zipped + sum(asset_bytes.values()),
        "weight_plain_bytes": len(html.encode()) + sum(asset_bytes.values()),
        "sparklines": html.count('<path d="M'),
        "chart_ms": chart_ms,
        "chart_cpu_ms": chart_cpu,
        "chart_bytes": len(data),
        "charts": len(charts),
        "chart_points": max(len(c["x"]) for c in charts),
    }


# ---------------------------------------------------------------- the report


def markdown(shape: Shape, result: dict[str, Any], build_seconds: float, command: str) -> str:
    kb = 1000
    weight = result["weight_bytes"] / kb
    assets = ", ".join(f"{name} {size / kb:.1f} KB" for name, size in result["assets"].items())
    rows = [
        (
            "`/` rendered server-side (queries + template)",
            f"{result['render_ms']:.0f} ms ({result['render_cpu_ms']:.0f} ms CPU)",
            f"≤ {GOALS['render_ms']:.0f} ms",
            result["render_ms"] <= GOALS["render_ms"],
        ),
        (
            "a host's 24 h chart data (`/hosts/NAME/series.json`)",
            f"{result['chart_ms']:.0f} ms ({result['chart_cpu_ms']:.0f} ms CPU)",
            f"≤ {GOALS['chart_ms']:.0f} ms",
            result["chart_ms"] <= GOALS["chart_ms"],
        ),
        (
            "page weight of `/` (gzip HTML + scripts, CSS, icon)",
            f"{weight:.0f} KB",
            f"≤ {GOALS['weight_kb']:.0f} KB",
            weight <= GOALS["weight_kb"],
        ),
    ]
    table = "\n".join(
        f"| {what} | {got} | {goal} | {'**met**' if ok else '**not met**'} |"
        for what, got, goal, ok in rows
    )
    built = f"built in {build_seconds:.0f} s" if build_seconds else "reused from an earlier run"
    load = " → ".join("/".join(f"{x:.2f}" for x in avg) for avg in result["load"])
    return f"""## Web

`{command}` ({os.cpu_count()} CPUs, Python {platform.python_version()}, SQLite
{sqlite3.sqlite_version}; load average before → after: {load}). The store:
{shape.hosts:,} hosts x {len(SERIES)} series, {shape.hours:g} h of samples every
{shape.interval:g} s = {shape.rows:,} samples in one SQLite file ({built}).
Medians of the runs after a warm-up, wall time and this process's CPU time; the
server's work for a request without HTTP (`views.fleet` and the template;
`views.host_charts` and `json.dumps`).

| measure | result | goal | |
|---|---|---|---|
{table}

- `/`: {result["html_bytes"] / kb:.0f} KB of HTML, {result["html_gzip_bytes"] / kb:.0f} KB
  gzip-compressed as served, {result["sparklines"]:,} sparklines; the store's queries and
  the view alone take {result["fleet_ms"]:.0f} ms. It loads {assets}
  ({result["weight_plain_bytes"] / kb:.0f} KB in all for a client that does not take gzip).
- a host's 24 h: {result["charts"]} charts, at most {result["chart_points"]} points per
  series (2-minute averages made by the database), {result["chart_bytes"] / kb:.0f} KB of JSON.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "farm")
    parser.add_argument("--json", type=Path, help="write the raw result here")
    parser.add_argument("--markdown", type=Path, help="replace the Web section of this file")
    args = parser.parse_args()
    shape = Shape(hosts=args.hosts, hours=args.hours, interval=args.interval)
    print(f"store: {shape.rows:,} samples ({shape.name})", file=sys.stderr)
    where, end, build_seconds = build(shape, args.workdir)
    before = os.getloadavg()
    result = measure(where, end, args.runs)
    result["load"] = [before, os.getloadavg()]
    result.update(shape=asdict(shape), rows=shape.rows, build_seconds=build_seconds)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        command = "python bench/web_bench.py " + " ".join(sys.argv[1:])
        section = markdown(shape, result, build_seconds, command.strip())
        replace_section(args.markdown, section)
    return 0


def replace_section(path: Path, section: str) -> None:
    """Put ``section`` (starting "## Web") in place of the file's own, or at its end."""
    text = path.read_text() if path.exists() else ""
    start = text.find("\n## Web\n")
    if start == -1:
        path.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    end = text.find("\n## ", start + 1)
    rest = text[end:] if end != -1 else "\n"
    path.write_text(text[: start + 1] + section + rest)


if __name__ == "__main__":
    sys.exit(main())
