"""One renderer for every query command: ``--format table|json|csv`` over the same rows.

Rows are flat mappings with stable keys.  JSON is a list of objects (labels
stay an object); CSV has a header row (labels as ``k=v,k2=v2``); the table is
drawn by rich on a terminal and as plain aligned columns otherwise.
Timestamps are ISO 8601 UTC with milliseconds and a ``Z``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

import click

FORMATS = ("table", "json", "csv")
Row = Mapping[str, Any]


def iso(ts: float | None) -> str | None:
    """Unix seconds -> ``2026-11-24T21:54:54.757Z`` (None stays None)."""
    if ts is None:
        return None
    stamp = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def number(value: float) -> str:
    """A sample value for people: integers in full (``2128130``), others to 6 digits."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def labels_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return labels_text(value)
    if isinstance(value, float):
        return number(value)
    return str(value)


def render(rows: Sequence[Row], columns: Sequence[str], fmt: str, out: IO[str]) -> None:
    """Write ``rows`` to ``out`` in ``fmt``; ``columns`` fixes the order (and CSV header)."""
    if fmt == "json":
        json.dump([{c: row.get(c) for c in columns} for row in rows], out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(row.get(c)) for c in columns] for row in rows)
    else:
        _table(rows, columns, out)


def _table(rows: Sequence[Row], columns: Sequence[str], out: IO[str]) -> None:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    if out.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns, box=None, header_style="bold")
        for line in cells:
            table.add_row(*line)
        Console(file=out).print(table)
        return
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    buffer = io.StringIO()
    for line in [list(columns), *cells]:
        buffer.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
        buffer.write("\n")
    out.write(buffer.getvalue())


def format_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--format table|json|csv`` (table by default)."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format: an aligned table, a JSON list of objects, or CSV with a header.",
    )(func)
