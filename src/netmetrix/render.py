"""One renderer for every query command: ``--format table|json|csv`` over the same rows.

The click and rich side of output; the words and numbers themselves come from
``netmetrix.format``.  Rows are flat mappings with stable keys.  JSON is a list
of objects (labels stay an object); CSV has a header row (labels as
``k=v,k2=v2``); the table is drawn by rich on a terminal and as plain aligned
columns (``format.table``) otherwise.
Timestamps are ISO 8601 UTC with milliseconds and a ``Z``.  A table may show
a column in other words than its stored value (``cells``: sample values in
their metric's unit); JSON and CSV always carry the exact values.
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

import click

from netmetrix.format import exact, labels_text, number, table, with_unit

FORMATS = ("table", "json", "csv")
Row = Mapping[str, Any]
Cells = Mapping[str, Callable[[Row], str]]  # column -> its table text, from the whole row


@functools.cache
def _units() -> dict[str, str]:
    from netmetrix.probe import METRICS  # the catalogue: name, unit, kind, help

    return {name: unit for name, unit, _kind, _help in METRICS}


def value_in_unit(row: Row) -> str:
    """A row's ``value`` in its ``metric``'s unit (``7.8 GiB``); ``up`` and others plain."""
    value = row.get("value")
    if not isinstance(value, int | float):
        return _cell(value)
    return with_unit(float(value), _units().get(str(row.get("metric"))))


def exact_value(row: Row) -> str:
    """A row's ``value`` in full, as CSV writes it (``74.93908382066277``)."""
    value = row.get("value")
    return exact(value) if isinstance(value, int | float) else _cell(value)


def value_cells(raw: bool) -> Cells:
    """The table text of a sample ``value`` column: exact with ``--raw``, else in units."""
    return {"value": exact_value if raw else value_in_unit}


def _cell(value: Any, full: bool = False) -> str:
    """A value as table text (``number``: 6 digits) or, ``full``, as CSV text (``exact``)."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return labels_text(value)
    if isinstance(value, float):
        return exact(value) if full else number(value)
    return str(value)


def render(
    rows: Sequence[Row],
    columns: Sequence[str],
    fmt: str,
    out: IO[str],
    *,
    cells: Cells | None = None,
) -> None:
    """Write ``rows`` to ``out`` in ``fmt``; ``columns`` fixes the order (and CSV header).

    ``cells`` gives some columns other text in the table only (``value_cells``).
    """
    if fmt == "json":
        json.dump([{c: row.get(c) for c in columns} for row in rows], out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(row.get(c), full=True) for c in columns] for row in rows)
    else:
        _table(rows, columns, out, cells or {})


def _table(rows: Sequence[Row], columns: Sequence[str], out: IO[str], shown: Cells) -> None:
    def text(row: Row, column: str) -> str:
        return shown[column](row) if column in shown else _cell(row.get(column))

    cells = [[text(row, c) for c in columns] for row in rows]
    if not out.isatty():
        out.write(table(columns, cells))
        return
    from rich.console import Console
    from rich.table import Table

    drawn = Table(*columns, box=None, header_style="bold")
    for line in cells:
        drawn.add_row(*line)
    Console(file=out).print(drawn)


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


def raw_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--raw``: exact values in the table instead of human units."""
    return click.option(
        "--raw",
        is_flag=True,
        help="Table: exact values instead of units (7.8 GiB, 1.2 MiB/s, 38.5%)."
        " JSON and CSV always have the exact values.",
    )(func)
