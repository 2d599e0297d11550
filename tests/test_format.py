"""format.py: numbers for people, in mail and in tables."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netmetrix.format import bytes_text, elapsed_text, significant, with_unit


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
