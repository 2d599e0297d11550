"""What an alert mail says: the subject, the body and the digest, one place for all three.

Pure: built from an ``AlertEvent`` (``alerts.evaluate``), the rule when it is
still configured, the host's address and the series' recent values, which
``pipeline`` reads from the store.  ``notify`` only delivers the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from netmetrix.alerts import breaches, rule_text
from netmetrix.checks import state_name
from netmetrix.config import AlertRule
from netmetrix.format import count, duration, exact, iso, series_name, significant, table
from netmetrix.model import AlertEvent, EventKind, Labels, RetireReason

RECENT = 6  # values of the series shown in a mail body
DIGITS = 3  # significant digits of a value in mail: 74.9, not 74.93908382066277
SUBJECT_MAX = 300  # a check's subject carries the plugin's text: keep it a subject


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """A sample moved an alert: what its mail needs."""

    kind: EventKind
    rule: AlertRule
    host: str
    address: str
    metric: str
    labels: Labels
    value: float
    ts: float  # the sample that caused it
    since: float  # when the incident started
    recent: tuple[tuple[float, float], ...] = ()  # (ts, value) of the series, oldest first


@dataclass(frozen=True, slots=True, kw_only=True)
class Retired:
    """A firing alert that a config change ended: no sample resolved it, so no rule
    (it may be gone) and no new value; what the mail says comes from the stored state."""

    reason: RetireReason
    rule: str  # rule_text as stored when the state was written
    severity: str
    host: str
    address: str
    metric: str
    labels: Labels
    value: float  # the last value evaluated
    seen: float  # when that value was sampled
    since: float  # when the incident started
    ts: float  # when it was retired (the run's time)


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestLine:
    """One notification folded into a digest mail."""

    kind: EventKind
    host: str
    severity: str
    ts: float
    subject: str


def render(
    event: AlertEvent,
    rule: AlertRule | None,
    address: str,
    recent: tuple[tuple[float, float], ...] = (),
    *,
    check: tuple[str, int, str] | None = None,
) -> tuple[str, str]:
    """(subject, body) of the mail for ``event``; ``rule`` is None once it left config.xml.

    ``check``: (name, status, text) of the custom check a ``check_status`` event is
    about: the subject then says the check's state and the plugin's words (#17).
    """
    if event.reason is not None or rule is None:
        retired = Retired(
            reason=event.reason or "rule changed",
            rule=event.rule,
            severity=event.severity,
            host=event.host,
            address=address,
            metric=event.metric,
            labels=event.labels,
            value=event.value,
            seen=event.seen,
            since=event.since,
            ts=event.ts,
        )
        return retired_subject(retired), retired_body(retired)
    moved = Event(
        kind=event.kind,
        rule=rule,
        host=event.host,
        address=address,
        metric=event.metric,
        labels=event.labels,
        value=event.value,
        ts=event.ts,
        since=event.since,
        recent=recent,
    )
    if check is not None:
        return check_subject(moved, *check), check_body(moved, check[2])
    return subject(moved), body(moved)


def check_subject(event: Event, name: str, status: int, text: str) -> str:
    """``ALERT [web1] check nginx is CRITICAL: PROCS CRITICAL: 0 processes ...`` (#17)."""
    word = "RESOLVED" if event.kind == "resolved" else "ALERT"
    return f"{word} [{event.host}] check {name} is {state_name(status)}: {text}"[:SUBJECT_MAX]


def check_body(event: Event, text: str) -> str:
    """The usual body, with the plugin's first line above it."""
    return f"The check's output: {text}\n\n" + body(event)


def value_text(value: float, rule: AlertRule | None = None) -> str:
    """A sample value for mail: ``74.9`` for 74.93908382066277, ``12`` for 12.0.

    With ``rule``, more digits when the short form would read as on the other
    side of the limit than the value is (``50.0004 > 50`` stays ``50.0004``,
    never ``50>50``).  The store keeps the exact value.
    """
    for digits in range(DIGITS, 18):  # 17 significant digits always round-trip
        text = significant(value, digits)
        if rule is None or breaches(rule.op, float(text), rule.limit) == breaches(
            rule.op, value, rule.limit
        ):
            return text
    return repr(float(value))


def subject(event: Event) -> str:
    """``ALERT [f4] cpu_percent is 38.5>20`` / ``RESOLVED [f4] cpu_percent is 12.0 (was >20)``."""
    rule = event.rule
    shown = value_text(event.value, rule)
    head = f"[{event.host}] {series_name(event.metric, event.labels)} is {shown}"
    limit = f"{rule.op}{exact(rule.limit)}"
    if event.kind == "resolved":
        return f"RESOLVED {head} (was {limit})"
    return f"ALERT {head}{limit}"


def retired_subject(retired: Retired) -> str:
    """``RESOLVED [f4] cpu_percent (rule changed)`` / ``(host removed)``."""
    name = series_name(retired.metric, retired.labels)
    return f"RESOLVED [{retired.host}] {name} ({retired.reason})"


_RETIRED_INTRO = {
    "rule changed": "its rule was changed or removed in config.xml",
    "host removed": "{host} was removed from config.xml",
    "host forgotten": "{host} was forgotten (`netmetrix hosts forget`)",
}
_RETIRED_AFTER = {
    "rule changed": "The rule as config.xml has it now is evaluated afresh from the next run:"
    " it alerts again if the value is past its limit.",
    "host removed": "Its stored samples stay until `netmetrix hosts forget {host}`.",
    "host forgotten": "Its samples, keys and alert state are gone from the store.",
}


def retired_body(retired: Retired) -> str:
    """The plain-text mail body of an alert that a config change resolved."""
    name = series_name(retired.metric, retired.labels)
    why = _RETIRED_INTRO[retired.reason].format(host=retired.host)
    fields = [
        ("Host", retired.host),
        ("Address", retired.address),
        ("Metric", retired.metric),
        ("Labels", _labels_line(retired.labels)),
        ("Value", f"{value_text(retired.value)} at {iso(retired.seen)} (the last one seen)"),
        ("Rule", retired.rule),
        ("Severity", retired.severity),
        ("Started", iso(retired.since) or ""),
        ("Resolved", f"{iso(retired.ts)} ({retired.reason})"),
    ]
    intro = f"{name} on {retired.host} is no longer watched: {why}."
    return _mail_text(intro, fields, ["", _RETIRED_AFTER[retired.reason].format(host=retired.host)])


def body(event: Event) -> str:
    """The plain-text mail body: what, where, since when, the recent values."""
    rule = event.rule
    name = series_name(event.metric, event.labels)
    value = value_text(event.value, rule)
    verb = "matching" if rule.op in ("==", "!=") else "past the limit"
    condition = f"{verb} {rule.op} {exact(rule.limit)}"
    if event.kind == "firing":
        intro = f"{name} on {event.host} is {value}, {condition}."
    elif event.kind == "repeat":
        intro = f"{name} on {event.host} is still {value}, {condition} (reminder)."
    else:
        intro = f"{name} on {event.host} is {value}: no longer {condition}."
    fields = [
        ("Host", event.host),
        ("Address", event.address),
        ("Metric", event.metric),
        ("Labels", _labels_line(event.labels)),
        ("Value", f"{value} at {iso(event.ts)}"),
        ("Rule", describe(rule)),
        ("Severity", rule.severity),
        ("Started", iso(event.since) or ""),
    ]
    if event.kind == "resolved":
        fields.append(("Resolved", iso(event.ts) or ""))
    recent: list[str] = []
    if event.recent:
        recent += ["", "Recent values (UTC, oldest first):"]
        recent += [f"  {iso(ts)}  {value_text(v, rule)}" for ts, v in event.recent]
    return _mail_text(intro, fields, recent)


def _labels_line(labels: Labels) -> str:
    """``mount="/", fs="ext4"``, or ``(none)``: the Labels field of a mail body."""
    return ", ".join(f'{k}="{v}"' for k, v in labels) or "(none)"


def _mail_text(intro: str, fields: Sequence[tuple[str, str]], tail: Sequence[str]) -> str:
    """A mail body: the intro line, the aligned fields, ``tail`` lines, the signature."""
    lines = [intro, ""]
    lines += [f"{label + ':':<10} {text}" for label, text in fields]
    lines += [*tail, "", "-- ", "netmetrix"]
    return "\n".join(lines) + "\n"


def describe(rule: AlertRule) -> str:
    """The rule in words: ``cpu_percent > 20, for 3 samples, repeat every 4h (line 14)``."""
    parts = [rule_text(rule)]
    if rule.for_count > 1:
        parts.append(f"for {rule.for_count} samples")
    if rule.clear is not None:
        parts.append(f"resolves once not {rule.op} {exact(rule.clear)}")
    if rule.repeat is not None:
        parts.append(f"repeat every {duration(rule.repeat)}")
    if not rule.resolved:
        parts.append("no mail when resolved")
    text = ", ".join(parts)
    return f"{text} (config line {rule.line})" if rule.line else text


def digest(lines: Sequence[DigestLine], recipient: str, digest_over: int) -> tuple[str, str]:
    """(subject, body) of one mail standing for ``lines``: ``ALERT 37 alerts on 25 hosts``.

    Resolves are counted apart (``ALERT 30 alerts, 7 resolved on 25 hosts``);
    a digest of resolves only says ``RESOLVED 7 alerts on 5 hosts``.
    """
    fired = sum(1 for line in lines if line.kind != "resolved")
    resolved = len(lines) - fired
    hosts = len({line.host for line in lines})
    on = f"on {count(hosts, 'host')}"
    if not fired:
        title = f"RESOLVED {count(resolved, 'alert')} {on}"
    elif not resolved:
        title = f"ALERT {count(fired, 'alert')} {on}"
    else:
        title = f"ALERT {count(fired, 'alert')}, {resolved} resolved {on}"
    ordered = sorted(lines, key=lambda line: (line.ts, line.host, line.subject))
    rows = [(iso(line.ts) or "", line.host, line.severity, line.subject) for line in ordered]
    text = [
        f"{len(lines)} notifications for {recipient} in one mail"
        f" (more than digest_over={digest_over}).",
        "",
    ]
    text += table(("TIME (UTC)", "HOST", "SEVERITY", "NOTIFICATION"), rows).splitlines()
    text += [
        "",
        "Details: netmetrix alerts active, netmetrix alerts history",
        "",
        "-- ",
        "netmetrix",
    ]
    return title, "\n".join(text) + "\n"
