"""Text for people: timestamps, labels, numbers with units, durations, plurals, tables.

Pure (no click, no rich, no probe import), so the alert mail, the logs and the
CLI share one answer.  JSON and CSV never go through the human forms here: they
keep the exact stored values.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence

_IEC = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_ELAPSED = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def iso(ts: float | None) -> str | None:
    """Unix seconds -> ``2026-11-24T21:54:54.757Z`` (None stays None)."""
    if ts is None:
        return None
    stamp = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def number(value: float) -> str:
    """A sample value for people: integers in full (``2128130``), others to 6 digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def exact(value: float) -> str:
    """A stored value in full: ``72`` for 72.0, others round-trip (``74.93908382066277``)."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def labels_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def significant(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, never dropping a digit before the point.

    ``74.93908382066277`` -> ``74.9``, ``38.5`` -> ``38.5``, ``12.0`` -> ``12``,
    ``2128130.5`` -> ``2128131``, ``0.012345`` -> ``0.0123``.  No exponent between
    1e-6 and 1e15; NaN and infinities as Python writes them.
    """
    if not math.isfinite(value) or value == 0:
        return "0" if value == 0 else repr(value)
    magnitude = math.floor(math.log10(abs(value)))
    if not -6 <= magnitude < 15:
        return f"{value:.{digits}g}"
    text = f"{value:.{max(0, digits - 1 - magnitude)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def bytes_text(value: float) -> str:
    """``8373223424`` -> ``7.8 GiB``: powers of 1024, one decimal; under 1 KiB in whole bytes."""
    if abs(round(value)) < 1024:
        return f"{value:.0f} B"
    scaled = float(value)
    for unit in _IEC:
        scaled /= 1024
        if abs(round(scaled, 1)) < 1024 or unit == _IEC[-1]:
            return f"{scaled:.1f} {unit}"
    raise AssertionError("unreachable")


def elapsed_text(seconds: float) -> str:
    """A span for people: ``52.3 ms``, ``12.4 s``, ``5m 3s``, ``14d 6h`` (the two largest units)."""
    if seconds < 0 or not math.isfinite(seconds):
        return number(seconds)
    if seconds < 1:
        return f"{significant(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    left = round(seconds)
    parts: list[tuple[int, str]] = []
    for unit, size in _ELAPSED:
        count, left = divmod(left, size)
        if count or parts:
            parts.append((count, unit))
    shown = parts[:2] if parts[1:2] and parts[1][0] else parts[:1]
    return " ".join(f"{count}{unit}" for count, unit in shown)


def with_unit(value: float, unit: str | None) -> str:
    """A sample value in its metric's unit (``probe.METRICS``): ``38.5%``, ``1.2 MiB/s``...

    Percentages get one decimal, load averages (unit "") two; counts, ``up``
    and metrics outside the catalogue (unit None) get ``number``.
    """
    if unit == "percent":
        return f"{value:.1f}%"
    if unit == "bytes":
        return bytes_text(value)
    if unit == "bytes/s":
        return f"{bytes_text(value)}/s"
    if unit == "seconds":
        return elapsed_text(value)
    if unit == "":
        return f"{value:.2f}"
    return number(value)


def series_name(metric: str, labels: Iterable[tuple[str, str]]) -> str:
    """``cpu_percent``, or ``disk_percent{mount="/"}`` with labels."""
    inner = ",".join(f'{key}="{value}"' for key, value in labels)
    return f"{metric}{{{inner}}}" if inner else metric


def count(n: int, noun: str) -> str:
    """``1 host``, ``3 hosts``: a number and its noun (the plural adds an s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def duration(seconds: float) -> str:
    """``4h``, ``1.5d``, ``1.5m``, ``45s``: the largest unit that reads well.

    THE duration text: mail, ``config show`` and logs use it, and config.xml
    (``config.parse_duration``) reads it back; seconds that no unit divides
    into tenths are written in full (``1234567s``), never rounded.
    """
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and (seconds / size * 10).is_integer():
            return f"{exact(seconds / size)}{unit}"
    return f"{exact(seconds)}s"


def elapsed(seconds: float) -> str:
    """A time span for log lines: ``0.8s``, ``45s``, ``2m13s``, ``3h05m``, ``2d4h``."""
    if seconds < 10:
        return f"{seconds:.1f}s".replace(".0s", "s")
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600}h"


def some(names: Sequence[str], shown: int = 10) -> str:
    """``a, b, c`` or, past ``shown`` names, ``a, b, ... j and 5 more``."""
    text = ", ".join(names[:shown])
    return f"{text} and {len(names) - shown} more" if len(names) > shown else text


def file_size(n: int | None) -> str:
    """A file's size in decimal units (``812 B``, ``12.3 MB``); None: ``unknown size``."""
    if n is None:
        return "unknown size"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Plain text columns: a header line, then one line per row, each column as wide as
    its widest cell, two spaces apart, no trailing spaces (terminal tables, mail digests)."""
    lines = [list(columns), *(list(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        + "\n"
        for line in lines
    )
