"""Open (verify, decrypt, check) the probe's sealed messages; make keys and challenges.

The wire format is defined, and sealed, in ``probe.py`` (the probe must be one
self-contained file); this module is the collector's side of it.  A message is
accepted only if it verifies under one of the host's stored keys, names the
host the key was made for, and carries the challenge just sent (no replay).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from netmetrix import probe
from netmetrix.errors import EnvelopeError

MAX_LINE_BYTES = 1 << 20  # a real message is a few KiB; refuse anything absurd
_METRIC_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,127}$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$")
PREFIX = probe.MAGIC + "."


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    metric: str
    labels: tuple[tuple[str, str], ...]  # sorted (name, value) pairs
    value: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A verified probe message."""

    kid: str
    encrypted: bool
    probe_version: str
    python: str
    probe_time: float
    duration: float
    samples: tuple[Sample, ...]
    errors: tuple[str, ...]


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
    """
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
        raise EnvelopeError(f"bad message: sealed for host {header['host']!r}, not {host!r}")
    if not hmac.compare_digest(str(header["ch"]), challenge):
        raise EnvelopeError("bad message: stale challenge (a replayed message)")
    return _decode_payload(payload, header)


def _decode_header(text: str) -> dict[str, Any]:
    try:
        header = json.loads(probe.b64d(text))
    except ValueError as exc:
        raise EnvelopeError("bad message: header is not base64url JSON") from exc
    if not isinstance(header, dict):
        raise EnvelopeError("bad message: header is not an object")
    if header.get("v") != probe.PROTOCOL:
        raise EnvelopeError(f"bad message: unknown protocol version {header.get('v')!r}")
    if header.get("alg") not in ("A256GCM", "HS256"):
        raise EnvelopeError(f"bad message: unknown algorithm {header.get('alg')!r}")
    for name in ("host", "ch", "kid"):
        if not isinstance(header.get(name), str):
            raise EnvelopeError(f"bad message: header field {name!r} missing")
    if not isinstance(header.get("ts"), int | float):
        raise EnvelopeError("bad message: header field 'ts' missing")
    return header


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


def _decode_payload(payload: bytes, header: Mapping[str, Any]) -> Message:
    try:
        data = json.loads(payload)
        samples = tuple(_sample(item) for item in data["samples"])
        errors = tuple(str(e)[:500] for e in data.get("errors", ()))
        return Message(
            kid=header["kid"],
            encrypted=header["alg"] == "A256GCM",
            probe_version=str(data["probe"])[:40],
            python=str(data.get("python", "?"))[:40],
            probe_time=float(header["ts"]),
            duration=float(data.get("duration", 0.0)),
            samples=samples,
            errors=errors,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise EnvelopeError(f"bad message: malformed payload ({exc})") from exc


def _sample(item: Any) -> Sample:
    metric, labels, value = item
    if not isinstance(metric, str) or not _METRIC_RE.match(metric):
        raise ValueError(f"bad metric name {str(metric)[:40]!r}")
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and _LABEL_RE.match(k) and isinstance(v, str) and len(v) <= 256
        for k, v in labels.items()
    ):
        raise ValueError(f"bad labels for {metric}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"bad value for {metric}")
    return Sample(metric=metric, labels=tuple(sorted(labels.items())), value=float(value))
