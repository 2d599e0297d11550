"""Make host-supplied text safe to store, log and show.

Whatever a host sends (probe stderr, the probe's error list and version
strings, label values, an SSH server's disconnect reason) may carry bytes
that break something downstream: a NUL that PostgreSQL refuses, a lone
surrogate that UTF-8 cannot encode, a newline that forges a log line, a
terminal escape (``\\x1b[2J`` clears the screen; OSC sequences retitle the
window or write the clipboard) or bidi controls that reorder what a reader
sees.  Two functions, for two kinds of string:

``clean(text, limit)``
    *Messages* (errors, versions, stderr tails): one printable line.  Terminal
    escape sequences are dropped whole, line breaks and tabs become spaces,
    any other unsafe character is shown as ``\\xNN`` / ``\\uNNNN`` text, and
    the result is capped at ``limit`` characters, the last one an ellipsis.

``escape(text)``
    *Data* (label values such as a mount point or interface name): a mount
    named ``/mnt/a\\x1b[2J`` is a real, distinct series, so nothing is
    dropped and nothing is cut; every unsafe character is shown as
    ``\\xNN`` / ``\\uNNNN`` visible text.  The caller bounds the length.
    A backslash is kept as is, so a value that already spells ``\\x1b``
    literally reads the same as an escaped ESC: a deliberate trade for
    readable Windows-style names; both are harmless.

Unsafe: C0 and C1 control characters and DEL, lone surrogates (what
``surrogateescape`` makes of non-UTF-8 bytes), the line and paragraph
separators U+2028/U+2029, and the bidi controls.  This module imports
nothing from netmetrix, so anything may use it.
"""

from __future__ import annotations

import re

ELLIPSIS = "…"

# ESC or the 8-bit introducers: CSI (ESC [ or \x9b) ... final byte; OSC/DCS/SOS/PM/APC
# (ESC ] P X ^ _ or \x9d \x90 \x98 \x9e \x9f) ... up to BEL or ST (ESC \ or \x9c), or
# to the end of the text when unterminated; any other two-character ESC sequence.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -~]?"
)
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
_BLANKS = re.compile(r"[\t\n\v\f\r\x85\u2028\u2029]+")
# A cut that ends inside one of our escapes (``\x1``, ``\ud8``) would read as garbage.
_PARTIAL_ESCAPE = re.compile(r"\\(?:x[0-9a-f]?|u[0-9a-f]{0,3})?\Z")


def _show(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape(text: str) -> str:
    """Show every unsafe character of ``text`` as ``\\xNN``/``\\uNNNN``; drop nothing."""
    return _UNSAFE.sub(_show, text)


def clean(text: str, limit: int = 200) -> str:
    """One safe printable line of at most ``limit`` characters (see the module docstring)."""
    line = _BLANKS.sub(" ", _SEQUENCE.sub("", text)).strip()
    line = escape(line)
    if len(line) <= limit:
        return line
    return _PARTIAL_ESCAPE.sub("", line[: max(0, limit - 1)]) + ELLIPSIS
