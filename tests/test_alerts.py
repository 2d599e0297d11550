"""alerts.py on its own: rule matching, the state machine, mail subjects and bodies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from conftest import rule
from hypothesis import given, settings
from hypothesis import strategies as st

from netmetrix import alerts, format, notice
from netmetrix.alerts import State
from netmetrix.config import AlertRule
from netmetrix.notice import DigestLine, Event

T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z
H = 3600.0


def run(
    r: AlertRule, values: Sequence[float], *, start: float = T0, every: float = 60.0
) -> list[Any]:
    """Feed ``values`` one sample ``every`` seconds apart; the event kind (or None) of each."""
    state: State | None = None
    kinds = []
    for i, value in enumerate(values):
        state, kind = alerts.step(r, state, value, start + i * every)
        kinds.append(kind)
    return kinds


# ---------------------------------------------------------------- matching

ROOT = {"metric": "disk_percent", "labels": (("mount", "/"),)}  # a rule on the / mount


@pytest.mark.parametrize(
    ("op", "value", "limit", "past"),
    [
        (">", 20.5, 20, True),
        (">", 20.0, 20, False),
        (">=", 20.0, 20, True),
        (">=", 19.9, 20, False),
        ("<", 0.5, 1, True),
        ("<", 1.0, 1, False),
        ("<=", 1.0, 1, True),
        ("<=", 1.1, 1, False),
        ("==", 0.0, 0, True),
        ("==", 1.0, 0, False),
        ("!=", 1.0, 0, True),
        ("!=", 0.0, 0, False),
    ],
)
def test_breaches(op: Any, value: float, limit: float, past: bool) -> None:
    assert alerts.breaches(op, value, limit) is past


@pytest.mark.parametrize(
    ("overrides", "host", "metric", "labels", "expected"),
    [
        ({}, "f4", "cpu_percent", {}, True),
        ({}, "f4", "mem_percent", {}, False),
        ({"metric": "disk_percent"}, "f4", "disk_percent", {"mount": "/var"}, True),
        (ROOT, "f4", "disk_percent", {"mount": "/"}, True),
        (ROOT, "f4", "disk_percent", {"mount": "/var"}, False),
        (ROOT, "f4", "disk_percent", {}, False),
        ({"hosts": ("db-*",)}, "db-1", "cpu_percent", {}, True),
        ({"hosts": ("db-*",)}, "web-1", "cpu_percent", {}, False),
        ({"hosts": ("web1", "db-?")}, "db-2", "cpu_percent", {}, True),
        ({"hosts": ("db-*",)}, "DB-1", "cpu_percent", {}, False),  # case matters, like names
    ],
)  # fmt: skip
def test_matches(
    overrides: dict[str, Any], host: str, metric: str, labels: dict[str, str], expected: bool
) -> None:
    assert alerts.matches(rule(**overrides), host, metric, labels) is expected


def test_rule_id_keeps_state_across_tuning_but_not_across_a_new_condition() -> None:
    base = alerts.rule_id(rule())
    assert base == alerts.rule_id(rule())
    assert len(base) == 16
    for tuned in ({"repeat": 3600.0}, {"for_count": 3}, {"severity": "critical"}, {"line": 9}):
        assert alerts.rule_id(rule(**tuned)) == base, tuned
    assert alerts.rule_id(rule(email=("ops@example.com", "b@example.com"))) == alerts.rule_id(
        rule(email=("b@example.com", "ops@example.com"))
    )
    for changed in (
        {"limit": 30.0},
        {"op": ">="},
        {"metric": "mem_percent"},
        {"labels": (("mount", "/"),)},
        {"hosts": ("db-*",)},
        {"email": ("dba@example.com",)},
    ):
        assert alerts.rule_id(rule(**changed)) != base, changed


def test_unique_rules_counts_a_repeated_rule_once() -> None:
    first, again, other = rule(line=3), rule(line=4), rule(limit=30.0)
    assert list(alerts.unique_rules([first, again, other]).values()) == [first, other]


# ---------------------------------------------------------------- the state machine


def test_fires_once_while_the_value_stays_past_the_limit() -> None:
    assert run(rule(), [38.5, 40.0, 99.0, 21.0]) == ["firing", None, None, None]


def test_for_three_needs_three_consecutive_samples() -> None:
    r = rule(for_count=3)
    assert run(r, [30, 30, 10, 30, 30, 30, 30]) == [None, None, None, None, None, "firing", None]


def test_pending_state_counts_and_keeps_when_it_started() -> None:
    r = rule(for_count=3)
    state, kind = alerts.step(r, None, 30.0, T0)
    first = State(
        phase="pending",
        count=1,
        since=T0,
        value=30.0,
        ts=T0,
        rule="cpu_percent > 20",  # rule and severity are kept for its mail
        severity="warning",
    )
    assert (state, kind) == (first, None)
    state, kind = alerts.step(r, state, 31.0, T0 + 60)
    assert (state, kind) == (replace(first, count=2, value=31.0, ts=T0 + 60), None)
    state, kind = alerts.step(r, state, 32.0, T0 + 120)
    assert kind == "firing"
    assert state == replace(
        first,
        phase="firing",
        count=3,
        fired=T0 + 120,
        notified=T0 + 120,
        value=32.0,
        ts=T0 + 120,
    )


def test_pending_that_recovers_goes_back_to_ok_without_mail() -> None:
    r = rule(for_count=2)
    state, _ = alerts.step(r, None, 30.0, T0)
    assert alerts.step(r, state, 10.0, T0 + 60) == (None, None)


def test_resolves_when_back_under_the_limit() -> None:
    assert run(rule(), [38.5, 12.0, 11.0, 38.5]) == ["firing", "resolved", None, "firing"]


def test_resolved_false_records_the_resolve_but_mails_nobody() -> None:
    r = rule(resolved=False, email=("a@example.com", "b@example.com"))
    assert run(r, [38.5, 12.0]) == ["firing", "resolved"]
    assert alerts.recipients(r, "firing") == ("a@example.com", "b@example.com")
    assert alerts.recipients(r, "resolved") == ()
    assert alerts.recipients(rule(), "resolved") == ("ops@example.com",)


def test_repeat_re_sends_once_the_interval_has_passed_since_the_last_mail() -> None:
    r = rule(repeat=4 * H)
    times = [0, 1 * H, 4 * H - 1, 4 * H, 5 * H, 8 * H - 1, 8 * H, 9 * H]
    state: State | None = None
    kinds = []
    for t in times:
        state, kind = alerts.step(r, state, 50.0, T0 + t)
        kinds.append(kind)
    assert kinds == ["firing", None, None, "repeat", None, None, "repeat", None]
    assert state is not None
    assert state.notified == T0 + 8 * H
    assert state.fired == T0  # a reminder does not restart the incident
    assert state.since == T0


def test_no_repeat_by_default() -> None:
    assert run(rule(), [50.0] * 5, every=24 * H) == ["firing", None, None, None, None]


@pytest.mark.parametrize(
    ("op", "limit", "clear", "values", "kinds"),
    [
        # fires above 90; between 80 and 90 it stays firing; resolves at 80 or below
        (">", 90, 80, [95, 85, 89.9, 91, 80.5, 80], ["firing", None, None, None, None, "resolved"]),
        (">=", 90, 80, [90, 80, 79.9], ["firing", None, "resolved"]),
        ("<", 10, 20, [5, 15, 19.9, 20], ["firing", None, None, "resolved"]),
        ("<=", 10, 20, [10, 20, 20.1], ["firing", None, "resolved"]),
    ],
)
def test_clear_is_hysteresis(
    op: Any, limit: float, clear: float, values: list[float], kinds: list[str | None]
) -> None:
    assert run(rule(op=op, limit=float(limit), clear=float(clear)), values) == kinds


def test_without_clear_a_value_wobbling_round_the_limit_flaps() -> None:
    wobble = [91, 89, 91, 89]
    assert run(rule(op=">", limit=90.0), wobble) == ["firing", "resolved", "firing", "resolved"]
    assert run(rule(op=">", limit=90.0, clear=80.0), wobble) == ["firing", None, None, None]


def test_a_sample_no_newer_than_the_last_changes_nothing() -> None:
    r = rule()
    state, _ = alerts.step(r, None, 50.0, T0)
    assert alerts.step(r, state, 1.0, T0) == (state, None)
    assert alerts.step(r, state, 1.0, T0 - 60) == (state, None)


values = st.sampled_from([0.0, 10.0, 19.9, 20.0, 20.1, 25.0, 90.0])


@settings(max_examples=300, deadline=None)
@given(
    samples=st.lists(st.tuples(values, st.floats(min_value=1, max_value=6 * H)), max_size=40),
    for_count=st.integers(min_value=1, max_value=4),
    repeat=st.one_of(st.none(), st.sampled_from([60.0, H, 4 * H])),
    clear=st.one_of(st.none(), st.sampled_from([5.0, 15.0, 20.0])),
)
def test_state_machine_properties(
    samples: list[tuple[float, float]], for_count: int, repeat: float | None, clear: float | None
) -> None:
    r = rule(for_count=for_count, repeat=repeat, clear=clear)
    state: State | None = None
    ts, streak, firing, last_mail = T0, 0, False, 0.0
    for value, gap in samples:
        ts += gap
        state, kind = alerts.step(r, state, value, ts)
        past = value > 20
        if not firing:
            streak = streak + 1 if past else 0
            # fires exactly on the for_count-th consecutive sample past the limit
            assert (kind == "firing") == (streak >= for_count)
            if kind == "firing":
                firing, last_mail = True, ts
            assert kind in (None, "firing")
        else:
            cleared = not (value > (20 if clear is None else clear))
            if cleared:
                assert kind == "resolved"
                firing, streak = False, 0
            elif repeat is not None and ts - last_mail >= repeat:
                assert kind == "repeat"
                last_mail = ts
            else:
                assert kind is None
        # the stored state says the same
        assert (state is not None and state.phase == "firing") == firing
        if state is None:
            assert streak == 0
        elif state.phase == "pending":
            assert state.count == streak < for_count


# ---------------------------------------------------------------- text


def event(kind: Any = "firing", **overrides: Any) -> Event:
    fields: dict[str, Any] = {
        "kind": kind,
        "rule": rule(),
        "host": "f4",
        "address": "192.0.2.4",
        "metric": "cpu_percent",
        "labels": (),
        "value": 38.5,
        "ts": T0 + 120,
        "since": T0,
    }
    fields.update(overrides)
    return Event(**fields)


@pytest.mark.parametrize(
    ("made", "subject"),
    [
        (event(), "ALERT [f4] cpu_percent is 38.5>20"),
        (event("repeat"), "ALERT [f4] cpu_percent is 38.5>20"),
        (event("resolved", value=12.0), "RESOLVED [f4] cpu_percent is 12 (was >20)"),
        (
            event(rule=rule(limit=50.0), value=74.93908382066277),
            "ALERT [f4] cpu_percent is 74.9>50",
        ),
        # more digits rather than a subject that reads as not past the limit
        (event(rule=rule(limit=50.0), value=50.0004), "ALERT [f4] cpu_percent is 50.0004>50"),
        (
            event("resolved", rule=rule(op=">=", limit=50.0), value=49.9996),
            "RESOLVED [f4] cpu_percent is 49.9996 (was >=50)",
        ),
        (
            event(
                rule=rule(metric="disk_percent", op=">", limit=90.0, labels=(("mount", "/"),)),
                metric="disk_percent",
                labels=(("mount", "/"),),
                value=91.2,
            ),
            'ALERT [f4] disk_percent{mount="/"} is 91.2>90',
        ),
        (
            event(
                rule=rule(metric="disk_read_bytes_per_sec", op=">=", limit=1.5e9),
                metric="disk_read_bytes_per_sec",
                labels=(("device", "sda"), ("mode", "x")),
                value=2128130.0,
            ),
            'ALERT [f4] disk_read_bytes_per_sec{device="sda",mode="x"} is 2128130>=1500000000',
        ),
        (
            event(rule=rule(metric="up", op="==", limit=0.0), metric="up", value=0.0),
            "ALERT [f4] up is 0==0",
        ),
        (event(rule=rule(op="<", limit=0.25), value=0.1), "ALERT [f4] cpu_percent is 0.1<0.25"),
    ],
)
def test_subjects(made: Event, subject: str) -> None:
    assert notice.subject(made) == subject


def test_body_values_are_short_too() -> None:
    body = notice.body(
        event(
            rule=rule(limit=50.0),
            value=74.93908382066277,
            recent=((T0, 12.345678), (T0 + 60, 50.000001), (T0 + 120, 74.93908382066277)),
        )
    )
    assert body.startswith("cpu_percent on f4 is 74.9, past the limit > 50.\n")
    assert "Value:     74.9 at 2026-09-21T14:15:20.000Z\n" in body
    assert (
        "  2026-09-21T14:13:20.000Z  12.3\n"
        "  2026-09-21T14:14:20.000Z  50.000001\n"  # past 50, so not written as 50
        "  2026-09-21T14:15:20.000Z  74.9\n"
    ) in body


def test_firing_body_says_what_where_since_when_and_recent_values() -> None:
    r = rule(
        metric="disk_percent",
        op=">=",
        limit=90.0,
        labels=(("mount", "/"),),
        for_count=3,
        repeat=4 * H,
        severity="critical",
        clear=80.0,
        hosts=("f*",),
        line=14,
    )
    body = notice.body(
        event(
            rule=r,
            metric="disk_percent",
            labels=(("mount", "/"),),
            value=91.2,
            recent=((T0, 90.5), (T0 + 60, 90.9), (T0 + 120, 91.2)),
        )
    )
    assert body == (
        'disk_percent{mount="/"} on f4 is 91.2, past the limit >= 90.\n'
        "\n"
        "Host:      f4\n"
        "Address:   192.0.2.4\n"
        "Metric:    disk_percent\n"
        'Labels:    mount="/"\n'
        "Value:     91.2 at 2026-09-21T14:15:20.000Z\n"
        'Rule:      disk_percent{mount="/"} >= 90 on f*, for 3 samples,'
        " resolves once not >= 80, repeat every 4h (config line 14)\n"
        "Severity:  critical\n"
        "Started:   2026-09-21T14:13:20.000Z\n"
        "\n"
        "Recent values (UTC, oldest first):\n"
        "  2026-09-21T14:13:20.000Z  90.5\n"
        "  2026-09-21T14:14:20.000Z  90.9\n"
        "  2026-09-21T14:15:20.000Z  91.2\n"
        "\n"
        "-- \n"
        "netmetrix\n"
    )


def test_resolved_and_reminder_bodies() -> None:
    resolved = notice.body(event("resolved", value=12.0, rule=rule(resolved=True)))
    assert resolved.startswith("cpu_percent on f4 is 12: no longer past the limit > 20.\n")
    assert "Labels:    (none)\n" in resolved
    assert "Started:   2026-09-21T14:13:20.000Z\nResolved:  2026-09-21T14:15:20.000Z\n" in resolved
    assert "Recent values" not in resolved
    reminder = notice.body(event("repeat"))
    assert reminder.startswith("cpu_percent on f4 is still 38.5, past the limit > 20 (reminder).")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (4 * H, "4h"),
        (90.0, "1.5m"),
        (30.0, "30s"),
        (86400.0, "1d"),
        (1.5 * 86400, "1.5d"),
        (7.0, "7s"),
    ],
)
def test_duration_text(seconds: float, text: str) -> None:
    assert format.duration(seconds) == text


def digest_lines(fired: int, resolved: int, hosts: int) -> list[DigestLine]:
    return [
        DigestLine(
            kind="firing" if i < fired else "resolved",
            host=f"h{i % hosts:02}",
            severity="warning",
            ts=T0 + i,
            subject=f"ALERT [h{i % hosts:02}] load1 is {i}.0>1",
        )
        for i in range(fired + resolved)
    ]


@pytest.mark.parametrize(
    ("fired", "resolved", "hosts", "subject"),
    [
        (37, 0, 25, "ALERT 37 alerts on 25 hosts"),
        (30, 7, 25, "ALERT 30 alerts, 7 resolved on 25 hosts"),
        (0, 7, 5, "RESOLVED 7 alerts on 5 hosts"),
        (1, 0, 1, "ALERT 1 alert on 1 host"),
    ],
)
def test_digest_subject(fired: int, resolved: int, hosts: int, subject: str) -> None:
    got, _ = notice.digest(digest_lines(fired, resolved, hosts), "ops@example.com", 10)
    assert got == subject


def test_digest_body_is_a_table_of_every_notification() -> None:
    _, body = notice.digest(digest_lines(2, 1, 2), "ops@example.com", 2)
    assert body == (
        "3 notifications for ops@example.com in one mail (more than digest_over=2).\n"
        "\n"
        "TIME (UTC)                HOST  SEVERITY  NOTIFICATION\n"
        "2026-09-21T14:13:20.000Z  h00   warning   ALERT [h00] load1 is 0.0>1\n"
        "2026-09-21T14:13:21.000Z  h01   warning   ALERT [h01] load1 is 1.0>1\n"
        "2026-09-21T14:13:22.000Z  h00   warning   ALERT [h00] load1 is 2.0>1\n"
        "\n"
        "Details: netmetrix alerts active, netmetrix alerts history\n"
        "\n"
        "-- \n"
        "netmetrix\n"
    )


def test_equality_rules_read_as_matching() -> None:
    up = rule(metric="up", op="==", limit=0.0)
    fired = notice.body(event(rule=up, metric="up", value=0.0))
    assert fired.startswith("up on f4 is 0, matching == 0.\n")
    back = notice.body(event("resolved", rule=up, metric="up", value=1.0))
    assert back.startswith("up on f4 is 1: no longer matching == 0.\n")
