"""``metrics history --plot``: stored samples as a chart in the terminal (plotext).

Imported only when a chart is asked for: plotext is not needed otherwise.
Times are UTC on the x axis; one line per host and label set.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Mapping, Sequence
from typing import IO

import plotext  # type: ignore[import-untyped]  # no type hints shipped

from netmetrix.format import labels_text
from netmetrix.store import StoredSample

PLAIN_SIZE = (100, 24)  # columns and lines of a chart that is not drawn on a terminal
MAX_WIDTH = 200
MAX_TICKS = 8


def title(hosts: Sequence[str], metric: str, labels: Mapping[str, str] | None) -> str:
    """``f4 load1``, ``f4,f5 disk_percent{mount=/}``; beyond three hosts, ``12 hosts load1``."""
    shown = ",".join(hosts) if len(hosts) <= 3 else f"{len(hosts)} hosts"
    return f"{shown} {metric}" + (f"{{{labels_text(labels)}}}" if labels else "")


def draw(samples: Sequence[StoredSample], heading: str, out: IO[str], *, by_host: bool) -> None:
    """Write a chart of ``samples`` (oldest first, at least one) to ``out``.

    On a terminal: its size (at most 200 columns, 12 to 40 lines) and colour;
    elsewhere 100x24 characters without escape codes.  ``by_host`` names each
    line after its host as well as its labels.
    """
    tty = out.isatty()
    width, height = PLAIN_SIZE
    if tty:
        columns, lines = shutil.get_terminal_size()
        width, height = min(columns, MAX_WIDTH), max(12, min(lines - 2, 40))
    first, last = samples[0].ts, samples[-1].ts
    day = _day(first) if _day(first) == _day(last) else None
    form = "%H:%M:%S" if day else "%Y-%m-%d %H:%M:%S"  # the date goes in the title
    plotext.terminal.limit(False, False)  # the size is ours: see above
    fig = plotext.figure
    fig.clear()
    fig.plot_size(width, height)
    fig.date().activate(form=form, origin=dt.datetime(1970, 1, 1, tzinfo=dt.UTC), zone=0)
    series = _series(samples, by_host=by_host)
    for name, (xs, ys) in series.items():
        signal = fig.signal(xs, ys).lines()
        if name and len(series) > 1:
            signal.label(name)
        fig.draw(signal)
    fig.ruler("x").ticks(*_time_ticks(first, last, form, width))
    fig.title(f"{heading} (UTC, {day})" if day else f"{heading} (UTC)")
    chart = str(fig.build())
    fig.clear()
    out.write((chart if tty else plotext.uncolorize(chart)).rstrip("\n") + "\n")


def _series(
    samples: Sequence[StoredSample], *, by_host: bool
) -> dict[str, tuple[list[dt.datetime], list[float]]]:
    """(times, values) per line of the chart, by its name."""
    series: dict[str, tuple[list[dt.datetime], list[float]]] = {}
    for s in samples:
        name = f"{s.host} {labels_text(s.labels)}".strip() if by_host else labels_text(s.labels)
        xs, ys = series.setdefault(name, ([], []))
        # datetimes, not text: samples seconds apart (or closer) never share one x
        xs.append(dt.datetime.fromtimestamp(s.ts, tz=dt.UTC))
        ys.append(s.value)
    return series


def _day(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d")


def _time_ticks(
    first: float, last: float, form: str, width: int
) -> tuple[list[dt.datetime], list[str]]:
    """Evenly spaced x ticks from the first sample to the last, as many as their labels fit."""
    size = len(dt.datetime.fromtimestamp(first, tz=dt.UTC).strftime(form)) + 4
    count = 1 if last <= first else max(2, min(MAX_TICKS, (width - 10) // size))
    step = (last - first) / max(1, count - 1)
    stamps = [dt.datetime.fromtimestamp(first + i * step, tz=dt.UTC) for i in range(count)]
    return stamps, [stamp.strftime(form) for stamp in stamps]
