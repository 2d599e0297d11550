"""What the dashboard's pages show, as plain values: no HTTP, no templates.

``fleet`` (the overview), ``host_charts`` (a host page's chart data) and the
small pure helpers they use (``chart_step``, ``spark_path``, ``ago``).  Each
reads the store through the same methods as the JSON API and the CLI, and the
records of ``netmetrix.rows`` where the CLI prints one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netmetrix.config import Config
from netmetrix.format import elapsed_text, labels_text, series_name, with_unit
from netmetrix.model import UP
from netmetrix.probe import METRICS
from netmetrix.store import ActiveAlert, Buckets, HostRow, Store, StoredSample

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
SPARK_SPAN = 3600.0  # seconds of history in a sparkline
SPARK_POINTS = 30  # ... averaged into this many steps
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
    points: Sequence[tuple[float, float]], since: float, top: float | None = None
) -> str:
    """An SVG path (``d``) of ``points`` in a SPARK_WIDTH x SPARK_HEIGHT box: x from
    ``since`` over SPARK_SPAN, y from 0 to ``top`` (the largest value when None).

    Integer coordinates keep the page small; a missing step breaks the line.
    """
    if not points:
        return ""
    highest = top if top is not None else max(v for _, v in points)
    scale = SPARK_HEIGHT / highest if highest > 0 else 0.0
    step = SPARK_SPAN / SPARK_POINTS
    width = SPARK_WIDTH / SPARK_POINTS
    lines: list[list[str]] = []
    previous: int | None = None
    for ts, value in points:
        slot = round((ts - since) / step)
        x = round(min(max(slot, 0), SPARK_POINTS) * width)
        y = SPARK_HEIGHT - round(min(max(value, 0.0), highest) * scale)
        if previous is None or slot - previous > 1:
            lines.append([])
        lines[-1].append(f"{x},{y}")
        previous = slot
    # a lone point is a line to itself, which the round line cap draws as a dot
    return "".join("M" + " ".join(line * 2 if len(line) == 1 else line) for line in lines)


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
    text: str
    spark: str  # SVG path, empty without data
    title: str  # e.g. "disk_percent{mount="/"}, last hour: 12.0% to 14.5%"


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetLine:
    name: str
    state: str  # up | down | unknown
    last_seen: float | None
    last_seen_text: str
    last_error: str | None
    cells: tuple[Cell, ...]  # in OVERVIEW's order
    firing: tuple[str, ...]  # series names of the host's firing alerts
    pending: int


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
    metrics = sorted({metric for _, metric, _ in OVERVIEW})
    stored = {row.name: row for row in store.hosts()}
    latest = _by_series(store.latest(names, metrics))
    since = now - SPARK_SPAN
    step = SPARK_SPAN / SPARK_POINTS
    sparks = {
        (b.host, b.metric, labels_text(b.labels)): b.points
        for b in store.history_buckets(names, metrics, step, since, now)
    }
    alerts = store.alerts_active(names)
    lines = tuple(
        _line(name, stored.get(name), latest, sparks, alerts, since, now) for name in names
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


SeriesKey = tuple[str, str, str]  # host, metric, labels_text


def _by_series(found: Iterable[StoredSample]) -> dict[SeriesKey, float]:
    return {(s.host, s.metric, labels_text(s.labels)): s.value for s in found}


def _line(
    name: str,
    row: HostRow | None,
    latest: Mapping[SeriesKey, float],
    sparks: Mapping[SeriesKey, Sequence[tuple[float, float]]],
    alerts: Sequence[ActiveAlert],
    since: float,
    now: float,
) -> FleetLine:
    cells = []
    for column, metric, labels in OVERVIEW:
        key = (name, metric, labels_text(labels))
        cells.append(_cell(column, metric, labels, latest.get(key), sparks.get(key, ()), since))
    mine = [a for a in alerts if a.host == name]
    last_seen = row.last_seen if row else None
    return FleetLine(
        name=name,
        state=host_state(row),
        last_seen=last_seen,
        last_seen_text=ago(last_seen, now),
        last_error=row.last_error if row else None,
        cells=tuple(cells),
        firing=tuple(
            series_name(a.metric, sorted(a.labels.items())) for a in mine if a.state == "firing"
        ),
        pending=sum(1 for a in mine if a.state == "pending"),
    )


def _cell(
    column: str,
    metric: str,
    labels: Mapping[str, str],
    value: float | None,
    points: Sequence[tuple[float, float]],
    since: float,
) -> Cell:
    top = 100.0 if UNITS.get(metric) == "percent" else None
    name = series_name(metric, sorted(labels.items()))
    if points:
        low, high = min(v for _, v in points), max(v for _, v in points)
        span = f"{value_text(metric, low)} to {value_text(metric, high)}"
        title = f"{name}, last hour: {span}"
    else:
        title = f"{name}: no samples in the last hour"
    return Cell(
        column=column,
        value=value,
        text=value_text(metric, value),
        spark=spark_path(points, since, top),
        title=title,
    )


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
