"""sanitize: host strings made safe to store, log and show (#10)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netmetrix.sanitize import ELLIPSIS, clean, escape

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
anything = st.text(
    alphabet=st.characters(codec=None, categories=None) | st.sampled_from("\x1b[]\x07\x9b\\"),
    max_size=200,
)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("oops\x00", "oops\\x00"),
        ("\x1b[2J\x1b[31mred\x1b[0m", "red"),  # screen clear and colours dropped whole
        ("a\x1b]0;title\x07b", "ab"),  # OSC ended by BEL
        ("a\x1b]52;c;cGF5bG9hZA==\x1b\\b", "ab"),  # OSC 52 (clipboard write) ended by ST
        ("a\x9b2Jb", "ab"),  # 8-bit CSI
        ("a\x1b]0;never ended", "a"),
        ("line1\r\nline2\tend\n", "line1 line2 end"),  # one line
        ("\ud800x\udcff", "\\ud800x\\udcff"),  # lone surrogates
        ("\u202eevil", "\\u202eevil"),  # bidi override
        ("a\u2028b", "a b"),
        ("déjà vu ✓", "déjà vu ✓"),  # printable text is kept as is
        ("\x7f\x85", "\\x7f"),  # DEL shown; NEL is a line break
    ],
)
def test_clean(text: str, shown: str) -> None:
    assert clean(text) == shown


def test_clean_caps_with_an_ellipsis_and_never_splits_an_escape() -> None:
    assert clean("x" * 300, 10) == "x" * 9 + ELLIPSIS
    assert clean("x" * 10, 10) == "x" * 10
    assert clean("abcdef\x00gh", 9) == "abcdef" + ELLIPSIS  # not "abcdef\\x"
    assert clean("abcdef\ud800gh", 10) == "abcdef" + ELLIPSIS  # not "abcdef\\ud"


def test_escape_keeps_data_distinct_and_visible() -> None:
    assert escape("/mnt/a\x1b[2J\nb") == "/mnt/a\\x1b[2J\\x0ab"
    assert escape("/mnt/a\x1b[2J\nb") != escape("/mnt/a\x1b[2K\nb")
    assert escape("eth0") == "eth0"
    assert escape("x" * 1000) == "x" * 1000  # the caller bounds the length


@settings(deadline=None)
@given(text=anything, limit=st.integers(1, 300))
def test_clean_output_is_always_one_safe_line(text: str, limit: int) -> None:
    line = clean(text, limit)
    assert len(line) <= limit
    assert not UNSAFE.search(line)
    assert "\x1b" not in line
    line.encode("utf-8")
    assert clean(line, limit) == line  # idempotent: cleaning twice changes nothing


@settings(deadline=None)
@given(text=anything)
def test_escape_output_is_always_safe(text: str) -> None:
    shown = escape(text)
    assert not UNSAFE.search(shown)
    shown.encode("utf-8")
    assert escape(shown) == shown
