"""Open (verify, decrypt, check) the probe's sealed messages; make keys and challenges.

The wire format is defined, and sealed, in ``probe.py`` (the probe must be one
self-contained file); this module is the collector's side of it.  A message is
accepted only if it verifies under one of the host's stored keys, names the
host the key was made for, and carries the challenge just sent (no replay).

Whatever a host sends, ``open_envelope`` returns a clean ``Message`` or raises
``EnvelopeError("bad message: ...")``, never anything else: the host may hold
its key and still be hostile or broken.  The rules, checked before a value is
used (a valid message from the real probe is far inside every one):

- the line is at most ``MAX_LINE_BYTES``, the decoded header ``MAX_HEADER_BYTES``;
- JSON is strict UTF-8, nests at most ``MAX_DEPTH`` levels, has no NaN or
  Infinity, and no integer longer than ``MAX_INT_DIGITS`` digits;
- every field has its type (a number is an int or float, never a bool);
- numbers are finite and in range: sample values within +-``MAX_VALUE``, the
  probe's clock and its duration in [0, year 10000) seconds;
- at most ``MAX_SAMPLES`` samples of at most ``MAX_LABELS`` labels each;
  metric and label names match the catalogue's syntax; label values are at
  most 256 characters (as the probe sends them);
- strings are made safe (``netmetrix.sanitize``): versions and the probe's
  error texts are cleaned and capped, label values escaped (kept distinct).
  At most ``MAX_ERRORS`` error texts are kept.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from netmetrix import probe
from netmetrix.checks import NAME_PATTERN, CheckReport
from netmetrix.errors import EnvelopeError
from netmetrix.model import Sample
from netmetrix.sanitize import clean, escape

MAX_LINE_BYTES = 1 << 20  # a real message is a few KiB; refuse anything absurd
MAX_HEADER_BYTES = 1024  # the probe's header is about 200 bytes
MAX_DEPTH = 8  # the payload nests 4 deep: {"samples": [[name, {labels}, value]]}
MAX_INT_DIGITS = 30  # bounds int() work before any range check
MAX_SAMPLES = 10_000  # a host with hundreds of mounts and interfaces sends a few thousand
MAX_LABELS = 16
MAX_LABEL_VALUE = 256  # probe.MAX_LABEL
MAX_VALUE = 2.0**63  # anything a 64-bit counter holds; beyond is garbage, not a metric
MAX_TIME = 253402300800.0  # 10000-01-01: what datetime (and so every table) can show
MAX_ERRORS = 50
MAX_CHECKS = 1000
MAX_CHECK_TEXT = 1000  # probe.MAX_CHECK_TEXT
_CHECK_NAME_RE = re.compile(NAME_PATTERN)
_METRIC_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,127}")  # fullmatch: no trailing newline
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}")
PREFIX = probe.MAGIC + "."


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A verified probe message."""

    kid: str
    encrypted: bool
    probe_version: str
    samples: tuple[Sample, ...]
    errors: tuple[str, ...]
    checks: tuple[CheckReport, ...] = ()  # custom checks' states and texts (#17)


def new_key() -> bytes:
    """A fresh random 256-bit host key."""
    return secrets.token_bytes(probe.KEY_BYTES)


def new_challenge() -> str:
    """A fresh random challenge for one probe run."""
    return secrets.token_hex(probe.CHALLENGE_HEX // 2)


def key_id(key: bytes) -> str:
    return str(probe.key_id(key))


def find_envelope(output: str) -> str:
    """Return the one envelope line in ``output``, ignoring MOTD and shell noise."""
    found = [line.strip() for line in output.splitlines() if line.startswith(PREFIX)]
    if not found:
        tail = output.strip().splitlines()[-1:] or [""]
        raise EnvelopeError(f"bad message: no envelope in probe output (ends {tail[0][:60]!r})")
    if len(found) > 1:
        raise EnvelopeError(f"bad message: {len(found)} envelopes in probe output, expected one")
    return found[0]


def open_envelope(
    line: str,
    *,
    keys: Mapping[str, bytes],
    host: str,
    challenge: str,
    require_encryption: bool = False,
) -> Message:
    """Verify and decode one envelope line; raise EnvelopeError saying why not.

    ``keys`` maps key id -> key: during a key rotation a host may hold either.
    Never raises anything but EnvelopeError (see the module docstring).
    """
    try:
        return _open(line, keys, host, challenge, require_encryption)
    except EnvelopeError:
        raise
    except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError) as exc:
        # Defence in depth: the checks below are meant to be total; if one is
        # not, the host still gets a bad message, not the whole run a traceback.
        raise EnvelopeError(f"bad message: unreadable ({type(exc).__name__})") from exc


def challenge_of(line: str) -> str | None:
    """The challenge a line claims to answer, unverified; None for what is no envelope.

    Only for telling a late answer to an earlier tick from this tick's
    (``watch``): a line is trusted only after ``open_envelope``.
    """
    parts = line.split(".")
    if len(parts) != 4 or parts[0] != probe.MAGIC or len(parts[1]) > 2 * MAX_HEADER_BYTES:
        return None
    try:
        challenge = _decode_header(parts[1])["ch"]
    except EnvelopeError:
        return None
    return challenge if isinstance(challenge, str) else None


def _open(
    line: str, keys: Mapping[str, bytes], host: str, challenge: str, require_encryption: bool
) -> Message:
    if len(line) > MAX_LINE_BYTES:
        raise EnvelopeError(f"bad message: {len(line)} bytes, over the {MAX_LINE_BYTES} limit")
    parts = line.split(".")
    if len(parts) != 4 or parts[0] != probe.MAGIC:
        raise EnvelopeError("bad message: not a netmetrix envelope")
    _, hdr_text, body_text, tag_text = parts
    header = _decode_header(hdr_text)
    key = keys.get(header["kid"])
    if key is None:
        raise EnvelopeError("bad message: sealed with an unknown key (run upload again)")
    signed = f"{probe.MAGIC}.{hdr_text}"
    try:
        body, tag = probe.b64d(body_text), probe.b64d(tag_text)
    except ValueError as exc:
        raise EnvelopeError("bad message: body is not base64url") from exc
    if header["alg"] == "A256GCM":
        payload = _decrypt(key, header, signed, body, tag)
    else:
        if require_encryption:
            raise EnvelopeError(
                "bad message: host sent HS256 (no `cryptography` on its python) "
                'but <security encryption="required"/>'
            )
        _verify_mac(key, f"{signed}.{body_text}", tag)
        payload = body
    if header["host"] != host:
        raise EnvelopeError(
            f"bad message: sealed for host {clean(header['host'], 64)!r}, not {host!r}"
        )
    if not hmac.compare_digest(_utf8(header["ch"]), _utf8(challenge)):
        raise EnvelopeError("bad message: stale challenge (a replayed message)")
    return _decode_payload(payload, header)


def _utf8(text: str) -> bytes:
    # compare_digest refuses non-ASCII str; a hostile challenge must not make it raise
    return text.encode("utf-8", "surrogatepass")


def _decode_header(text: str) -> dict[str, Any]:
    try:
        raw = probe.b64d(text)
    except ValueError as exc:
        raise EnvelopeError("bad message: header is not base64url JSON") from exc
    if len(raw) > MAX_HEADER_BYTES:
        raise EnvelopeError(
            f"bad message: header of {len(raw)} bytes, over the {MAX_HEADER_BYTES} limit"
        )
    header = _json(raw, "header")
    if not isinstance(header, dict):
        raise EnvelopeError("bad message: header is not an object")
    if header.get("v") != probe.PROTOCOL:
        raise EnvelopeError(f"bad message: unknown protocol version {_shown(header.get('v'))}")
    if header.get("alg") not in ("A256GCM", "HS256"):
        raise EnvelopeError(f"bad message: unknown algorithm {_shown(header.get('alg'))}")
    for name in ("host", "ch", "kid"):
        if not isinstance(header.get(name), str):
            raise EnvelopeError(f"bad message: header field {name!r} missing")
    if not isinstance(header.get("ts"), int | float) or isinstance(header["ts"], bool):
        raise EnvelopeError("bad message: header field 'ts' missing")
    return header


def _shown(value: object) -> str:
    """A host-supplied value for an error message: repr, made safe and short."""
    return clean(repr(value), 40)


def _json(data: bytes, what: str) -> Any:
    """Parse strict, bounded JSON; raise EnvelopeError naming ``what``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EnvelopeError(f"bad message: malformed {what} (not UTF-8)") from exc
    depth = _depth(text)
    if depth > MAX_DEPTH:
        raise EnvelopeError(f"bad message: malformed {what} (nested over {MAX_DEPTH} levels)")
    try:
        return json.loads(text, parse_constant=_no_constant, parse_int=_bounded_int)
    except (ValueError, RecursionError) as exc:
        raise EnvelopeError(
            f"bad message: malformed {what} (not JSON: {clean(str(exc), 80)})"
        ) from exc


# A JSON string, to its closing quote or to the end when unterminated: every match
# ends where the next search starts, so this is linear even for '"\\"\\"\\"...'.
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"?')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]++")
_DEEPER = {"[": 1, "{": 1, "]": -1, "}": -1}


def _depth(text: str) -> int:
    """How deep ``text``'s brackets nest, outside strings; stops counting past MAX_DEPTH.

    json.loads recurses once per level: 1000 ``[`` raise RecursionError, so
    the nesting is bounded before parsing, not caught after.  The regexes
    leave only the brackets (a few hundred in a real message) to count.
    """
    level = deepest = 0
    for bracket in _NOT_BRACKETS.sub("", _STRING.sub("", text)):
        level += _DEEPER[bracket]
        if level > deepest:
            deepest = level
            if deepest > MAX_DEPTH:
                break
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer of {len(digits)} digits")
    return int(digits)


def _decrypt(key: bytes, header: Mapping[str, Any], signed: str, body: bytes, tag: bytes) -> bytes:
    try:
        nonce = probe.b64d(header.get("n"))
    except ValueError as exc:
        raise EnvelopeError("bad message: missing GCM nonce") from exc
    if len(nonce) != 12 or len(tag) != 16:
        raise EnvelopeError("bad message: wrong GCM nonce or tag size")
    try:
        plain: bytes = AESGCM(probe.subkey(key, b"enc")).decrypt(
            nonce, body + tag, signed.encode("ascii")
        )
    except InvalidTag as exc:
        raise EnvelopeError("bad message: authentication failed (tampered or wrong key)") from exc
    return plain


def _verify_mac(key: bytes, signed: str, tag: bytes) -> None:
    expected = hmac.new(probe.subkey(key, b"mac"), signed.encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, tag):
        raise EnvelopeError("bad message: authentication failed (tampered or wrong key)")


class _Malformed(ValueError):
    """One rule of the payload broken; the text says which."""


def _decode_payload(payload: bytes, header: Mapping[str, Any]) -> Message:
    data = _json(payload, "payload")
    try:
        return _message(data, header)
    except _Malformed as exc:
        raise EnvelopeError(f"bad message: malformed payload ({exc})") from exc


def _message(data: Any, header: Mapping[str, Any]) -> Message:
    if not isinstance(data, dict):
        raise _Malformed("not an object")
    items = _field(data, "samples", list)
    if len(items) > MAX_SAMPLES:
        raise _Malformed(f"{len(items)} samples, over the {MAX_SAMPLES} limit")
    errors = _field(data, "errors", list, ())
    if not all(isinstance(e, str) for e in errors):
        raise _Malformed("'errors' is not a list of strings")
    shown = [clean(e, 500) for e in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        shown.append(f"({len(errors) - MAX_ERRORS} more not shown)")
    # Checked though not kept: a message whose clock or duration is out of range is bad.
    _number(header["ts"], "'ts'", 0.0, MAX_TIME)
    _number(_field(data, "duration", (int, float), 0.0), "'duration'", 0.0, MAX_TIME)
    _field(data, "python", str, "?")
    return Message(
        kid=header["kid"],
        encrypted=header["alg"] == "A256GCM",
        probe_version=clean(_field(data, "probe", str), 40),
        samples=tuple(_sample(item) for item in items),
        errors=tuple(shown),
        checks=_checks(_field(data, "checks", list, [])),
    )


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], *default: Any) -> Any:
    """``data[name]`` if it has type ``kind``; ``default`` when missing (if one is given)."""
    if name not in data:
        if default:
            return default[0]
        raise _Malformed(f"no {name!r}")
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _Malformed(f"{name!r} is {type(value).__name__}")
    return value


def _number(value: Any, what: str, low: float, high: float) -> float:
    """``value`` as a float if it is a finite number in [low, high]."""
    kind = type(value)  # exact types: bool is an int subclass, and never a number here
    if kind is not float and kind is not int:
        raise _Malformed(f"{what} is not a number")
    if not low <= value <= high:  # NaN fails too; checked before float() of a huge int
        raise _Malformed(f"{what} out of range")
    return float(value)


def _sample(item: Any) -> Sample:
    if type(item) is not list or len(item) != 3:
        raise _Malformed("a sample is not [metric, labels, value]")
    metric, labels, value = item
    if type(metric) is not str or not _METRIC_RE.fullmatch(metric):
        raise _Malformed(f"bad metric name {_shown(metric)}")
    if type(labels) is not dict or len(labels) > MAX_LABELS:
        raise _Malformed(f"bad labels for {metric}")
    pairs = []
    for name, text in labels.items():
        if (
            type(text) is not str
            or len(text) > MAX_LABEL_VALUE
            or type(name) is not str
            or not _LABEL_RE.fullmatch(name)
        ):
            raise _Malformed(f"bad labels for {metric}")
        pairs.append((name, escape(text)))
    kind = type(value)
    if (kind is not float and kind is not int) or not -MAX_VALUE <= value <= MAX_VALUE:
        raise _Malformed(f"bad value for {metric}")
    pairs.sort()
    return Sample(metric=metric, labels=tuple(pairs), value=float(value))


def _checks(items: list[Any]) -> tuple[CheckReport, ...]:
    if len(items) > MAX_CHECKS:
        raise _Malformed(f"{len(items)} checks, over the {MAX_CHECKS} limit")
    return tuple(_check(item) for item in items)


def _check(item: Any) -> CheckReport:
    if type(item) is not dict:
        raise _Malformed("a check is not an object")
    name = _field(item, "name", str)
    if not _CHECK_NAME_RE.fullmatch(name):
        raise _Malformed(f"bad check name {_shown(name)}")
    status = _field(item, "status", int)
    if not 0 <= status <= 3:
        raise _Malformed(f"check {name}: status {status} is not 0-3")
    return CheckReport(
        name=name,
        status=status,
        text=clean(_field(item, "text", str), MAX_CHECK_TEXT),
        at=_number(_field(item, "at", (int, float)), "check 'at'", 0.0, MAX_TIME),
        duration=_number(_field(item, "duration", (int, float)), "check 'duration'", 0.0, MAX_TIME),
    )
