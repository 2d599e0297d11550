"""The probe's Nagios perfdata parser: the grammar, base units, and no traceback on any input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netmetrix.probe import parse_perfdata, parse_range

INF = math.inf


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10", (0.0, 10.0, False)),
        ("10:", (10.0, INF, False)),
        ("~:20", (-INF, 20.0, False)),
        ("10:20", (10.0, 20.0, False)),
        ("@5:10", (5.0, 10.0, True)),
        ("@10", (0.0, 10.0, True)),
        ("-5:-1", (-5.0, -1.0, False)),
        ("", None),
    ],
)
def test_ranges(text: str, expected: tuple[float, float, bool] | None) -> None:
    assert parse_range(text) == expected


@pytest.mark.parametrize("text", ["abc", "20:10", "1:2:3", "@", "~"])
def test_bad_ranges_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="range"):
        parse_range(text)


@pytest.mark.parametrize(
    ("uom", "value", "unit"),
    [
        ("", 12.0, ""),
        ("s", 12.0, "s"),
        ("ms", 0.012, "s"),
        ("us", 12e-6, "s"),
        ("%", 12.0, "%"),
        ("B", 12.0, "B"),
        ("KB", 12 * 1024.0, "B"),
        ("MB", 12 * 1024.0**2, "B"),
        ("GB", 12 * 1024.0**3, "B"),
        ("TB", 12 * 1024.0**4, "B"),
        ("c", 12.0, "c"),
    ],
)
def test_units_convert_to_base_units(uom: str, value: float, unit: str) -> None:
    items, warnings = parse_perfdata(f"x=12{uom};10;20;0;100")
    assert warnings == []
    [item] = items
    assert item["value"] == pytest.approx(value)
    assert item["unit"] == unit
    factor = value / 12
    assert item["warn"] == pytest.approx((0.0, 10 * factor, False))
    assert item["crit"] == pytest.approx((0.0, 20 * factor, False))
    assert item["min"] == 0.0
    assert item["max"] == pytest.approx(100 * factor)


def test_check_disk_style_line_with_quoted_labels() -> None:
    text = "'/'=3421MB;8000;9000;0;10000 '/var/lib/it''s here'=12% time=12ms;;;0; 'load 1'=0.5"
    items, warnings = parse_perfdata(text)
    assert warnings == []
    assert [(i["label"], i["unit"]) for i in items] == [
        ("/", "B"),
        ("/var/lib/it's here", "%"),
        ("time", "s"),
        ("load 1", ""),
    ]
    assert items[0]["value"] == 3421 * 1024.0**2
    assert items[2]["value"] == pytest.approx(0.012)
    assert (items[2]["warn"], items[2]["min"], items[2]["max"]) == (None, 0.0, None)


def test_unknown_value_u_is_skipped_quietly() -> None:
    assert parse_perfdata("a=U;1;2 b=3") == (
        [
            {"label": "b", "value": 3.0, "unit": "", "warn": None, "crit": None}
            | {"min": None, "max": None}
        ],
        [],
    )


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        ("a=1xyz", "perfdata 'a': unknown unit 'xyz'"),
        ("a=abc", "perfdata 'a': bad value 'abc'"),
        ("a=1;20:10", "perfdata 'a': range '20:10' starts after it ends"),
        ("'a=1", "perfdata: unterminated quoted label"),
        ("novalue", "perfdata: no '=' after label 'novalue'"),
        ("=5", "perfdata '': empty label"),
        ("a=1;;;x", "perfdata 'a': bad min/max 'x'"),
    ],
)
def test_malformed_items_are_warnings_and_the_rest_arrives(text: str, warning: str) -> None:
    items, warnings = parse_perfdata(text + " ok=1")
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(warning), warnings
    assert [i["label"] for i in items] == (["ok"] if not text.startswith("'") else [])


@settings(max_examples=400)
@given(st.text(alphabet=st.sampled_from("ab '=;:@~.-+0123456789eEUmsuKMGTBc%\t\n"), max_size=80))
def test_any_text_gives_items_and_warnings_never_a_traceback(text: str) -> None:
    items, warnings = parse_perfdata(text)
    assert all(isinstance(w, str) and len(w) <= 200 for w in warnings)
    for item in items:
        assert math.isfinite(item["value"])
        assert item["unit"] in {"", "s", "%", "B", "c"}
        assert item["label"]


@given(st.text(max_size=60))
def test_any_unicode_never_raises(text: str) -> None:
    parse_perfdata(text)
