"""format.py: numbers, durations, plurals and tables for people, in mail, logs and tables."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netmetrix.config import MAX_DURATION, parse_duration
from netmetrix.format import (
    bytes_text,
    count,
    duration,
    elapsed_text,
    file_size,
    series_name,
    significant,
    some,
    table,
    with_unit,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (74.93908382066277, "74.9"),
        (38.5, "38.5"),
        (12.0, "12"),
        (0.0, "0"),
        (-0.0, "0"),
        (2128130.0, "2128130"),  # never fewer digits than before the point
        (0.012345, "0.0123"),
        (-3.14159, "-3.14"),
        (99.96, "100"),
        (1e-9, "1e-09"),
        (1e20, "1e+20"),
        (math.inf, "inf"),
    ],
)
def test_significant(value: float, text: str) -> None:
    assert significant(value) == text


@given(st.floats(min_value=-1e14, max_value=1e14), st.integers(min_value=3, max_value=17))
def test_significant_is_close_and_17_digits_round_trip(value: float, digits: int) -> None:
    text = significant(value, digits)
    assert float(text) == pytest.approx(value, rel=10 ** (1 - digits), abs=1e-6)
    if digits == 17 and abs(value) >= 1e-6:
        assert float(text) == value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023.4, "1023 B"),
        (1023.9, "1.0 KiB"),
        (1024, "1.0 KiB"),
        (1048575, "1.0 MiB"),  # not "1024.0 KiB"
        (8373223424, "7.8 GiB"),
        (5 * 2**40, "5.0 TiB"),
    ],
)
def test_bytes_text(value: float, text: str) -> None:
    assert bytes_text(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0523, "52.3 ms"),
        (12.345, "12.3 s"),
        (60, "1m"),
        (303, "5m 3s"),
        (7200, "2h"),
        (7260, "2h 1m"),
        (90061, "1d 1h"),
        (1234567, "14d 6h"),
        (-1, "-1"),
    ],
)
def test_elapsed_text(seconds: float, text: str) -> None:
    assert elapsed_text(seconds) == text


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (38.456, "percent", "38.5%"),
        (72.0, "percent", "72.0%"),
        (8373223424, "bytes", "7.8 GiB"),
        (1258291.2, "bytes/s", "1.2 MiB/s"),
        (0.84, "", "0.84"),
        (1.0, "", "1.00"),
        (82.0, "count", "82"),
        (345600.0, "seconds", "4d"),
        (1.0, None, "1"),  # up: not in the catalogue
        (0.123456789, None, "0.123457"),
    ],
)
def test_with_unit(value: float, unit: str | None, text: str) -> None:
    assert with_unit(value, unit) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (36 * 3600, "1.5d"),  # config show said 36h, the mail 1.5d: one answer now
        (4 * 3600, "4h"),
        (90, "1.5m"),
        (45, "45s"),
        (0.5, "0.5s"),
        (1234567, "1234567s"),  # no unit fits: in full, not 1.23457e+06s
        (365 * 86400, "365d"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12)


@given(st.floats(min_value=1e-3, max_value=MAX_DURATION))
def test_config_xml_reads_back_every_duration_it_is_shown(seconds: float) -> None:
    assert parse_duration(duration(seconds)) == pytest.approx(seconds, rel=1e-12)


@given(st.integers(min_value=1, max_value=365 * 86400))
def test_whole_seconds_come_back_exactly(seconds: int) -> None:
    assert round(parse_duration(duration(seconds)), 6) == seconds


def test_count_series_name_and_some() -> None:
    assert [count(n, "host") for n in (0, 1, 2)] == ["0 hosts", "1 host", "2 hosts"]
    assert series_name("cpu_percent", ()) == "cpu_percent"
    assert series_name("disk_percent", (("mount", "/"),)) == 'disk_percent{mount="/"}'
    names = [f"h{i}" for i in range(12)]
    assert some(names[:3]) == "h0, h1, h2"
    assert some(names) == "h0, h1, h2, h3, h4, h5, h6, h7, h8, h9 and 2 more"
    assert some(names, 11) == "h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10 and 1 more"


@pytest.mark.parametrize(
    ("size", "text"),
    [(None, "unknown size"), (812, "812 B"), (12_345, "12.3 kB"), (4_200_000_000_000, "4200.0 GB")],
)
def test_file_size(size: int | None, text: str) -> None:
    assert file_size(size) == text


def test_table_aligns_columns_without_trailing_spaces() -> None:
    assert table(("host", "up", "note"), [("f4", "1", ""), ("web10", "0", "timeout")]) == (
        "host   up  note\nf4     1\nweb10  0   timeout\n"
    )
    assert table(("a", "b"), []) == "a  b\n"
