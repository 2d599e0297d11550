"""Seal (probe.py) and open (envelope.py): round trips, tampering, replay, noise."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from netmetrix import envelope, probe, sanitize
from netmetrix.errors import EnvelopeError

KEY = bytes(range(32))
KEYS = {envelope.key_id(KEY): KEY}
CHALLENGE = "0123456789abcdef0123456789abcdef"

label_names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
samples = st.lists(
    st.tuples(
        st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True),
        st.dictionaries(label_names, st.text(max_size=30), max_size=3),
        st.floats(min_value=-envelope.MAX_VALUE, max_value=envelope.MAX_VALUE, width=64),
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
        (m, {k: sanitize.escape(v) for k, v in labels.items()}, float(v)) for m, labels, v in items
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


# -- whatever a host sends is that host's bad message (#10) --------------------

ROBUST = settings(
    deadline=None,  # a loaded machine must not turn slow examples into failures
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Every string kind a host could use against us: NUL, C0/C1 controls, escapes, lone
# surrogates (what surrogateescape makes of non-UTF-8 bytes), bidi overrides.
hostile_text = st.text(
    alphabet=st.one_of(
        st.characters(codec=None, categories=None),  # anything, surrogates included
        st.sampled_from('\x00\x1b\x07\x9b\x85\u202e\u2028\ud800\udcff[]{}"\\.\n\r'),
    ),
    max_size=40,
)
huge_ints = st.integers(min_value=10**300, max_value=10**400) | st.integers(max_value=-(10**300))
odd_floats = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324])
json_scalars = st.none() | st.booleans() | st.integers() | huge_ints | st.floats() | odd_floats
json_values = st.recursive(
    json_scalars | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=20,
)


# hypothesis raises the recursion limit while it runs a test: nest far beyond it
def deeply_nested(depth: int) -> st.SearchStrategy[Any]:
    return st.sampled_from(["[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth])


def either(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's valid value or arbitrary JSON, so both reach every later check."""
    return valid | json_values


near_samples = st.lists(
    either(
        st.tuples(
            either(st.sampled_from(["cpu_percent", "disk_percent", "cpu\n", "9x"])),
            either(
                st.dictionaries(
                    st.sampled_from(["mount", "a b"]) | hostile_text, either(hostile_text)
                )
            ),
            either(st.floats() | st.integers() | huge_ints),
        ).map(list)
    ),
    max_size=5,
)
near_payloads = st.fixed_dictionaries(
    {},
    optional={
        "probe": either(hostile_text),
        "python": either(hostile_text),
        "duration": either(st.floats() | huge_ints),
        "samples": either(near_samples),
        "errors": either(st.lists(either(hostile_text), max_size=60)),
    },
)


def assert_clean(message: envelope.Message) -> None:
    """Every string safe to store, log and show; every number finite."""
    strings = [message.probe_version, *message.errors]
    for s in message.samples:
        strings += [s.metric, *(k for k, _ in s.labels), *(v for _, v in s.labels)]
        assert math.isfinite(s.value)
    for text in strings:
        assert sanitize.escape(text) == text, text  # nothing left to escape
        text.encode("utf-8")  # no lone surrogates


def opens_cleanly_or_is_a_bad_message(line: str) -> None:
    outcome: envelope.Message | EnvelopeError
    try:
        outcome = open_(line)
    except EnvelopeError as exc:  # the only exception allowed out
        outcome = exc
    if isinstance(outcome, envelope.Message):
        assert_clean(outcome)
        return
    reason = str(outcome)
    assert reason.startswith("bad message: ")
    assert sanitize.clean(reason, 10_000) == reason  # one safe line


@ROBUST
@example(text="NMX1." + probe.b64e(b"[" * 100_000) + ".AA.AA")  # no key needed
@given(text=hostile_text | st.text() | st.text().map(lambda t: "NMX1." + t))
def test_arbitrary_text_is_only_ever_a_bad_message(text: str) -> None:
    opens_cleanly_or_is_a_bad_message(text)


@ROBUST
@given(data=st.binary(), codec=st.sampled_from(["latin-1", "utf-8"]), framed=st.booleans())
def test_arbitrary_bytes_are_only_ever_a_bad_message(data: bytes, codec: str, framed: bool) -> None:
    text = data.decode(codec, "surrogateescape")
    # framed: the bytes as a header, which is parsed before any key is needed
    opens_cleanly_or_is_a_bad_message(f"NMX1.{probe.b64e(data)}.AA.AA" if framed else text)


@ROBUST
@pytest.mark.parametrize("encrypt", [True, False])
@example(body="[" * 100_000 + "]" * 100_000, now=1.0)
@example(body={"probe": "1", "samples": [["cpu", {}, 10**400]]}, now=1.0)
@example(body={"probe": "1", "samples": []}, now=10**29)
@given(body=json_values | near_payloads | deeply_nested(100_000), now=either(st.floats(0, 2e9)))
def test_authentic_but_arbitrary_json_is_only_ever_a_bad_message(
    encrypt: bool, body: Any, now: Any
) -> None:
    """Sealed with the right key: the host is compromised or its probe broken."""
    raw = body if isinstance(body, str) and body[:1] in "[{" else json.dumps(body)
    line = sealed(encrypt, payload=raw.encode("utf-8", "surrogatepass"), now=now)
    opens_cleanly_or_is_a_bad_message(line)


def authentic(body: str, *, now: object = 1.0) -> str:
    return sealed(True, payload=body.encode("utf-8", "surrogatepass"), now=now)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        # no key needed: the header is parsed first (was RecursionError)
        (
            "NMX1." + probe.b64e(b"[" * 1000) + ".AA.AA",
            "bad message: malformed header (nested over 8 levels)",
        ),
        # authenticated, huge integers (were OverflowError)
        (authentic('{"probe": "1", "samples": []}', now=10**400), "integer of 401 digits"),
        (authentic('{"probe": "1", "samples": []}', now=10**25), "'ts' out of range"),
        (authentic('{"probe": "1", "samples": []}', now=-1.0), "'ts' out of range"),
        (authentic('{"probe": "1", "duration": 1' + "0" * 29 + ', "samples": []}'), "'duration'"),
        (authentic('{"probe": "1", "samples": [["cpu", {}, ' + "9" * 400 + "]]}"), "integer of"),
        (authentic('{"probe": "1", "samples": [["cpu", {}, ' + "9" * 25 + "]]}"), "bad value"),
        (authentic('{"probe": "1", "samples": [["cpu", {}, NaN]]}'), "NaN is not a number"),
        (authentic('{"probe": "1", "samples": [["cpu", {}, -Infinity]]}'), "-Infinity is not"),
        (authentic('{"probe": "1", "samples": [["cpu", {}, 1e999]]}'), "bad value for cpu"),
        (authentic('{"probe": "1", "samples": []}', now="1"), "header field 'ts' missing"),
        (authentic('{"probe": "1", "samples": [' + "[" * 50 + "]" * 50 + "]}"), "nested over 8"),
        (authentic('{"probe": "1", "samples": [["cpu\\n", {}, 1]]}'), "bad metric name"),
        (authentic('{"probe": "1", "samples": [["cpu", {}, 1, 2]]}'), "not [metric, labels"),
        (authentic('{"probe": 1, "samples": []}'), "'probe' is int"),
        (authentic('{"probe": "1", "samples": {}}'), "'samples' is dict"),
        (authentic('{"probe": "1", "samples": [], "errors": [1]}'), "not a list of strings"),
        (authentic('["probe"]'), "malformed payload (not an object)"),
        (authentic('{"probe": "\\ud800", "samples": []}'.replace("\\ud800", "\udfff")), "UTF-8"),
    ],
)
def test_hostile_messages_are_bad_messages(line: str, reason: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        open_(line)
    assert str(info.value).startswith("bad message: ")
    assert reason in str(info.value)


def test_too_many_samples_are_refused() -> None:
    rows = [["cpu", {"n": str(i)}, 1] for i in range(envelope.MAX_SAMPLES + 1)]
    with pytest.raises(EnvelopeError, match=r"10001 samples, over the 10000 limit"):
        open_(authentic(json.dumps({"probe": "1", "samples": rows})))


def test_a_hostile_challenge_string_is_a_stale_challenge() -> None:
    # hmac.compare_digest raises TypeError on non-ASCII str
    with pytest.raises(EnvelopeError, match=r"stale challenge"):
        open_(sealed(challenge="é" * 32))


def test_host_strings_arrive_clean() -> None:
    body = json.dumps(
        {
            "probe": "1.0\x1b]0;pwned\x07\x00",
            "python": "3.\ud800",
            "samples": [["disk_percent", {"mount": "/mnt/a\x1b[2J\nb\udcff"}, 1.5]],
            "errors": ["disk /x:\x00 " + "y" * 600, *(f"e{i}" for i in range(60))],
        }
    )
    message = open_(authentic(body))
    assert message.probe_version == "1.0\\x00"
    [sample] = message.samples
    assert sample.labels == (("mount", "/mnt/a\\x1b[2J\\x0ab\\udcff"),)  # kept distinct, visible
    assert message.errors[0].startswith("disk /x:\\x00 yyy")
    assert len(message.errors[0]) == 500
    assert message.errors[0].endswith("…")
    assert len(message.errors) == envelope.MAX_ERRORS + 1
    assert message.errors[-1] == "(11 more not shown)"
    assert_clean(message)


def test_nesting_is_measured_in_linear_time() -> None:
    """A string of escaped quotes made the first depth scan quadratic (hours for this one)."""
    import time

    body = '{"probe": "' + '\\"' * 300_000 + '", "samples": []}'
    started = time.monotonic()
    message = open_(authentic(body))
    assert message.probe_version.startswith('"""')
    assert time.monotonic() - started < 60  # linear: well under a second, even on a loaded box
