"""Seal (probe.py) and open (envelope.py): round trips, tampering, replay, noise."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netmetrix import envelope, probe
from netmetrix.errors import EnvelopeError

KEY = bytes(range(32))
KEYS = {envelope.key_id(KEY): KEY}
CHALLENGE = "0123456789abcdef0123456789abcdef"

label_names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
samples = st.lists(
    st.tuples(
        st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True),
        st.dictionaries(label_names, st.text(max_size=30), max_size=3),
        st.floats(allow_nan=False, allow_infinity=False, width=64),
    ),
    max_size=20,
)


def payload(items: list[tuple[str, dict[str, str], float]] | None = None) -> bytes:
    rows = [list(i) for i in (items if items is not None else [("cpu_percent", {}, 38.5)])]
    return probe.build_payload(rows, [], 0.0, 1.0)


def sealed(encrypt: bool = True, **overrides: object) -> str:
    args: dict[str, object] = {
        "key": KEY,
        "host": "f4",
        "challenge": CHALLENGE,
        "payload": payload(),
        "now": 1.0,
    }
    args.update(overrides)
    return probe.seal(encrypt=encrypt, **args)  # type: ignore[arg-type]


def open_(line: str, **overrides: object) -> envelope.Message:
    args: dict[str, object] = {"keys": KEYS, "host": "f4", "challenge": CHALLENGE}
    args.update(overrides)
    return envelope.open_envelope(line, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("encrypt", [True, False])
@given(items=samples)
def test_round_trip(encrypt: bool, items: list[tuple[str, dict[str, str], float]]) -> None:
    message = open_(sealed(encrypt, payload=payload(items)))
    assert message.encrypted is encrypt
    assert [(s.metric, dict(s.labels), s.value) for s in message.samples] == [
        (m, labels, float(v)) for m, labels, v in items
    ]


def test_encrypted_body_hides_the_values() -> None:
    line = sealed(True, payload=payload([("secret_metric", {}, 12345.0)]))
    assert "secret_metric" not in line
    assert b"secret_metric" not in probe.b64d(line.split(".")[2])


@pytest.mark.parametrize("encrypt", [True, False])
@given(position=st.floats(min_value=0, max_value=1, exclude_max=True), pick=st.integers(0, 9))
def test_any_flipped_character_is_rejected(encrypt: bool, position: float, pick: int) -> None:
    line = sealed(encrypt)  # a fresh nonce each time: draw position and pick, not characters
    index = int(position * len(line))
    replacement = [c for c in "ABCxyz019-_." if c != line[index]][pick]
    tampered = line[:index] + replacement + line[index + 1 :]
    with pytest.raises(EnvelopeError) as info:
        open_(tampered)
    assert str(info.value).startswith("bad message: ")


@pytest.mark.parametrize(
    ("line_args", "open_args", "reason"),
    [
        ({}, {"challenge": "f" * 32}, "bad message: stale challenge (a replayed message)"),
        ({"host": "f5"}, {}, "bad message: sealed for host 'f5', not 'f4'"),
        ({"key": b"\x07" * 32}, {}, "bad message: sealed with an unknown key (run upload again)"),
        (
            {"encrypt": False},
            {"require_encryption": True},
            "bad message: host sent HS256 (no `cryptography` on its python) "
            'but <security encryption="required"/>',
        ),
    ],
)
def test_rejections(
    line_args: dict[str, object], open_args: dict[str, object], reason: str
) -> None:
    encrypt = bool(line_args.pop("encrypt", True))
    with pytest.raises(EnvelopeError) as info:
        open_(sealed(encrypt, **line_args), **open_args)
    assert str(info.value) == reason


def test_unknown_version_is_rejected() -> None:
    header = {"v": 2, "alg": "HS256", "host": "f4", "ch": CHALLENGE, "ts": 1, "kid": "x"}
    hdr = probe.b64e(json.dumps(header).encode())
    with pytest.raises(EnvelopeError, match=r"^bad message: unknown protocol version 2$"):
        open_(f"NMX1.{hdr}.e30.AAAA")


@pytest.mark.parametrize(
    ("bad_payload", "reason"),
    [
        (b"not json", "malformed payload"),
        (b'{"probe": "1", "samples": [["cpu", {}, "NaN"]]}', "bad value for cpu"),
        (b'{"probe": "1", "samples": [["9bad", {}, 1]]}', "bad metric name '9bad'"),
        (b'{"probe": "1", "samples": [["cpu", {"a b": "x"}, 1]]}', "bad labels for cpu"),
        (b'{"probe": "1", "samples": [["cpu", {}, true]]}', "bad value for cpu"),
        (b'{"samples": []}', "malformed payload"),
    ],
)
def test_malformed_payload_is_rejected_even_when_authentic(bad_payload: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError, match=r"^bad message: malformed payload") as info:
        open_(sealed(True, payload=bad_payload))
    assert reason in str(info.value)


def test_envelope_found_among_noise() -> None:
    line = sealed()
    noise = f"Welcome to Ubuntu\nLast login: yesterday\n{line}\r\n"
    assert open_(envelope.find_envelope(noise)).samples[0].value == 38.5


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("", "no envelope in probe output"),
        ("motd only\n", "no envelope in probe output (ends 'motd only')"),
        ("NMX1.a.b.c\nNMX1.d.e.f\n", "2 envelopes in probe output, expected one"),
    ],
)
def test_find_envelope_errors(output: str, reason: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        envelope.find_envelope(output)
    assert reason in str(info.value)


def test_oversized_line_is_refused_before_parsing() -> None:
    with pytest.raises(EnvelopeError, match=r"over the 1048576 limit"):
        open_("NMX1." + "A" * envelope.MAX_LINE_BYTES)


def test_keys_and_challenges_are_random() -> None:
    assert len({envelope.new_key() for _ in range(50)}) == 50
    assert len(envelope.new_key()) == 32
    challenges = {envelope.new_challenge() for _ in range(50)}
    assert len(challenges) == 50
    assert all(len(c) == 32 and int(c, 16) >= 0 for c in challenges)
