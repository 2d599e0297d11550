"""What the dashboard's pages show, as plain values: no HTTP, no templates.

``fleet`` (the overview), ``host_charts`` (a host page's chart data) and the
small pure helpers they use (``chart_step``, ``spark_path``, ``ago``).  Each
reads the store through the same methods as the JSON API and the CLI, and the
records of ``netmetrix.rows`` where the CLI prints one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netmetrix.checks import state_name
from netmetrix.config import Config
from netmetrix.format import elapsed_text, labels_text, series_name, with_unit
from netmetrix.model import UP
from netmetrix.probe import METRICS
from netmetrix.store import ActiveAlert, Buckets, HostRow, Sparkline, Store
from netmetrix.store.checkresults import CheckRow

UNITS = {name: unit for name, unit, _kind, _help in METRICS}
HELP = {name: text for name, _unit, _kind, text in METRICS}
HELP[UP] = "1 when the host answered and its message verified, 0 when not."
UNITS[UP] = "count"
# The overview's columns: (column, metric, labels) of the series shown with a sparkline.
OVERVIEW: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("cpu", "cpu_percent", {}),
    ("mem", "mem_percent", {}),
    ("disk", "disk_percent", {"mount": "/"}),
    ("load1", "load1", {}),
)
SPARK_POINTS = 12  # a sparkline's values: the last hour, every 5 minutes (store.sparklines)
SPARK_STEP = 300.0  # seconds between them
SPARK_WIDTH, SPARK_HEIGHT = 60, 20  # the SVG viewBox, in CSS pixels
MAX_POINTS = 1000  # per series of a chart; steps are chosen to stay below
NICE_STEPS = (
    *(1, 2, 5, 10, 15, 30),
    *(60, 120, 300, 600, 900, 1800),
    *(3600, 7200, 10800, 21600, 43200, 86400),
)


# ---------------------------------------------------------------- small helpers


def chart_step(span: float, max_points: int = MAX_POINTS) -> float:
    """The shortest round step (1 s, 5 s, 1 min, 15 min...) that cuts ``span`` seconds into
    at most ``max_points`` steps; whole days beyond the table."""
    wanted = span / max_points
    for step in NICE_STEPS:
        if step >= wanted:
            return float(step)
    return float(math.ceil(wanted / 86400) * 86400)


def ago(ts: float | None, now: float) -> str:
    """``12 s ago``, ``5m 3s ago``, ``never`` (None); ``just now`` for the future (clock skew)."""
    if ts is None:
        return "never"
    if ts > now - 1:
        return "just now"
    return f"{elapsed_text(now - ts).replace('.0 s', ' s')} ago"


def spark_path(
    points: Sequence[tuple[float, float]], until: float, top: float | None = None
) -> str:
    """An SVG path (``d``) of a sparkline's ``points`` (at SPARK_POINTS instants SPARK_STEP
    apart, the last at ``until``) in a SPARK_WIDTH x SPARK_HEIGHT box; y from 0 to
    ``top`` (the largest value when None).

    Integer coordinates keep the page small; a missing instant breaks the line.
    """
    if not points:
        return ""
    highest = top if top is not None else max(v for _, v in points)
    scale = SPARK_HEIGHT / highest if highest > 0 else 0.0
    last = SPARK_POINTS - 1
    first = until - last * SPARK_STEP
    width = SPARK_WIDTH / last
    # plain arithmetic, no min/max calls: a thousand hosts' overview draws 48,000 points
    parts: list[str] = []
    previous = -2
    for ts, value in points:
        slot = round((ts - first) / SPARK_STEP)
        slot = 0 if slot < 0 else last if slot > last else slot
        clipped = 0.0 if value < 0 else highest if value > highest else value
        xy = f"{round(slot * width)},{SPARK_HEIGHT - round(clipped * scale)}"
        if slot - previous > 1:
            # a new line; a lone point before it is a line to itself, which the round
            # line cap draws as a dot
            if parts and parts[-1][0] == "M":
                parts.append(" " + parts[-1][1:])
            parts.append("M" + xy)
        else:
            parts.append(" " + xy)
        previous = slot
    if parts[-1][0] == "M":
        parts.append(" " + parts[-1][1:])
    return "".join(parts)


def value_text(metric: str, value: float | None) -> str:
    """A value in its metric's unit (``38.5%``, ``1.2 MiB/s``); empty for None."""
    return "" if value is None else with_unit(value, UNITS.get(metric))


def host_state(row: HostRow | None) -> str:
    """up, down, or unknown (never collected)."""
    if row is None or row.up is None:
        return "unknown"
    return "up" if row.up >= 1 else "down"


# ---------------------------------------------------------------- the overview


@dataclass(frozen=True, slots=True, kw_only=True)
class Cell:
    """One metric of one host on the overview: latest value and the last hour."""

    column: str  # OVERVIEW's name for it: cpu, mem, disk, load1
    value: float | None
    text: str  # the value in its unit
    spark: str  # SVG path, empty without data


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetLine:
    name: str
    state: str  # up | down | unknown
    last_seen: float | None
    last_seen_text: str
    last_error: str | None
    collector: str | None  # who collected its last run: "db1 (2/3)"
    cells: tuple[Cell, ...]  # in OVERVIEW's order
    firing: tuple[str, ...]  # series names of the host's firing alerts
    pending: int
    failing_checks: tuple[str, ...] = ()  # "nginx CRITICAL": its custom checks not OK (#17)
    ok_checks: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Fleet:
    lines: tuple[FleetLine, ...]
    up: int
    down: int
    unknown: int
    firing: int
    pending: int
    now: float


def fleet(config: Config, store: Store, now: float) -> Fleet:
    """Every configured host's line of the overview, in config.xml's order."""
    names = [h.name for h in config.hosts]
    stored = {row.name: row for row in store.hosts()}
    wanted = [(metric, labels) for _, metric, labels in OVERVIEW]
    # one series per metric was asked for: (host, metric) names it
    sparks = {
        (s.host, s.metric): s
        for s in store.sparklines(names, wanted, now, SPARK_STEP, SPARK_POINTS)
    }
    alerts: dict[str, list[ActiveAlert]] = {}
    for alert in store.alerts_active(names):
        alerts.setdefault(alert.host, []).append(alert)
    checks: dict[str, list[CheckRow]] = {}
    for check in store.checks(names):
        checks.setdefault(check.host, []).append(check)
    lines = tuple(
        _with_checks(
            _line(name, stored.get(name), sparks, alerts.get(name, ()), now), checks.get(name, ())
        )
        for name in names
    )
    states = [line.state for line in lines]
    return Fleet(
        lines=lines,
        up=states.count("up"),
        down=states.count("down"),
        unknown=states.count("unknown"),
        firing=sum(len(line.firing) for line in lines),
        pending=sum(line.pending for line in lines),
        now=now,
    )


def _line(
    name: str,
    row: HostRow | None,
    sparks: Mapping[tuple[str, str], Sparkline],
    alerts: Sequence[ActiveAlert],
    now: float,
) -> FleetLine:
    """``alerts``: the host's own."""
    cells = tuple(_cell(column, sparks.get((name, metric)), now) for column, metric, _ in OVERVIEW)
    firing = tuple(
        series_name(a.metric, sorted(a.labels.items())) for a in alerts if a.state == "firing"
    )
    last_seen = row.last_seen if row else None
    return FleetLine(
        name=name,
        state=host_state(row),
        last_seen=last_seen,
        last_seen_text=ago(last_seen, now),
        last_error=row.last_error if row else None,
        collector=row.collector if row else None,
        cells=cells,
        firing=firing,
        pending=sum(1 for a in alerts if a.state == "pending"),
    )


_WORST = {2: 0, 3: 1, 1: 2}  # CRITICAL, then UNKNOWN, then WARNING: Nagios' order


def _with_checks(line: FleetLine, checks: Sequence[CheckRow]) -> FleetLine:
    """``line`` with its host's custom checks: those not OK by name and state, worst
    first, and how many are OK (#17)."""
    failing = sorted((c for c in checks if c.status != 0), key=lambda c: (_WORST[c.status], c.name))
    return dataclasses.replace(
        line,
        failing_checks=tuple(f"{c.name} {state_name(c.status)}" for c in failing),
        ok_checks=len(checks) - len(failing),
    )


def _cell(column: str, spark: Sparkline | None, now: float) -> Cell:
    metric, top = _COLUMNS[column]
    value = spark.latest if spark else None
    return Cell(
        column=column,
        value=value,
        text=value_text(metric, value),
        spark=spark_path(spark.points, now, top) if spark else "",
    )


# column -> (metric, top of its sparkline: 100 for percentages, else the highest value)
_COLUMNS = {
    column: (metric, 100.0 if UNITS.get(metric) == "percent" else None)
    for column, metric, _labels in OVERVIEW
}
# column -> what its header says on hover
COLUMN_TITLES = {
    column: f"{series_name(metric, sorted(labels.items()))}: the latest value, and a"
    f" sparkline of the last hour (every {SPARK_STEP / 60:g} minutes)"
    for column, metric, labels in OVERVIEW
}


# ---------------------------------------------------------------- a host's charts


def chart_order(metric: str) -> tuple[int, str]:
    """``up`` first, then the catalogue's order, then other metrics by name."""
    order = [UP, *UNITS]
    return (order.index(metric), "") if metric in order else (len(order), metric)


def host_charts(
    store: Store, host: str, since: float, until: float, max_points: int = MAX_POINTS
) -> dict[str, Any]:
    """Every series of ``host`` from ``since`` to ``until`` for uPlot, one chart per metric.

    ``{"host", "since", "until", "step", "charts": [{"metric", "unit", "help", "x": [ts...],
    "series": [{"labels": {...}, "label": "mount=/", "y": [value or null...]}]}]}``:
    each chart's series share its ``x`` (the steps that have a sample in any of them).
    """
    step = chart_step(until - since, max_points)
    by_metric: dict[str, list[Buckets]] = {}
    for found in store.history_buckets([host], [], step, since, until):
        by_metric.setdefault(found.metric, []).append(found)
    charts = [_chart(metric, by_metric[metric]) for metric in sorted(by_metric, key=chart_order)]
    return {"host": host, "since": since, "until": until, "step": step, "charts": charts}


def _chart(metric: str, series: Sequence[Buckets]) -> dict[str, Any]:
    xs = sorted({ts for s in series for ts, _ in s.points})
    return {
        "metric": metric,
        "unit": UNITS.get(metric),
        "help": HELP.get(metric, ""),
        "x": xs,
        "series": [_aligned(metric, s, xs) for s in series],
    }


def _aligned(metric: str, series: Buckets, xs: Sequence[float]) -> dict[str, Any]:
    values = dict(series.points)
    return {
        "labels": series.labels,
        "label": labels_text(series.labels) or metric,
        "y": [values.get(ts) for ts in xs],
    }
