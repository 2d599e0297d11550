"""Alert rules against samples: matching, the per-(rule, series) state machine, mail text.

Pure: no I/O and no clock.  Times come in with the samples (unix seconds);
the store keeps the state between runs and the outbox (see ``store.py``),
``notify.py`` delivers the mail.

One state per (rule, series), moved only by a new sample of that series::

    ok --breach--> pending --breach x for--> firing --cleared--> ok
     |                | no breach: ok           | still past: repeat mail
     +-- breach with for=1 -----------------> firing  once `repeat` has passed

A series with no new sample (a host that did not answer, a mount that went
away) keeps its state untouched: it neither fires, resolves nor advances.
"ok" is not stored; ``step`` returns None for it.

``clear`` is hysteresis: a firing alert resolves only when the value is no
longer past ``clear`` (compared with the rule's operator), so with
``op=">" limit="90" clear="80"`` it fires above 90 and resolves at 80 or below.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from netmetrix.config import AlertRule, Operator
from netmetrix.format import iso, significant

Phase = Literal["pending", "firing"]
EventKind = Literal["firing", "repeat", "resolved"]
# Why an alert ended without a sample: its rule left config.xml (rule_id changed), its
# host left config.xml, or `hosts forget` dropped a host that is still configured.
RetireReason = Literal["rule changed", "host removed", "host forgotten"]
Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs

RECENT = 6  # values of the series shown in a mail body
DIGITS = 3  # significant digits of a value in mail: 74.9, not 74.93908382066277

_COMPARE: Mapping[Operator, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class State:
    """A (rule, series) that is not ok."""

    phase: Phase
    count: int  # consecutive samples past the limit
    since: float  # the first of them (unix seconds): when the incident started
    fired: float | None = None  # when it became firing
    notified: float | None = None  # last ALERT mail (the first one or a repeat)
    value: float  # latest value seen
    ts: float  # latest sample evaluated


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something to tell the rule's recipients (and to keep in the alert history)."""

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
class Unmatched:
    """A rule that matched no series although a host it watches answered (or it names none)."""

    rule: AlertRule
    why: str  # "no such series on f4, f5" / "no host in config.xml matches hosts=db-*"


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestLine:
    """One notification folded into a digest mail."""

    kind: EventKind
    host: str
    severity: str
    ts: float
    subject: str


# ---------------------------------------------------------------- rules


def rule_id(rule: AlertRule) -> str:
    """A stable id for the state of ``rule``: what it watches, its condition, who it tells.

    Changing ``for``, ``repeat``, ``resolved``, ``severity`` or ``clear`` keeps the
    state; changing the metric, labels, operator, limit, hosts or addresses
    starts afresh.
    """
    identity = [rule.metric, rule.labels, rule.op, rule.limit, rule.hosts, sorted(rule.email)]
    digest = hashlib.sha256(json.dumps(identity, separators=(",", ":")).encode())
    return digest.hexdigest()[:16]


def rule_text(rule: AlertRule) -> str:
    """``disk_percent{mount="/"} >= 90``, plus `` on db-*`` when limited to some hosts."""
    text = f"{series_name(rule.metric, rule.labels)} {rule.op} {limit_text(rule.limit)}"
    return f"{text} on {','.join(rule.hosts)}" if rule.hosts else text


def unique_rules(rules: Iterable[AlertRule]) -> dict[str, AlertRule]:
    """Rules by id; a repeated rule counts once (the first)."""
    found: dict[str, AlertRule] = {}
    for rule in rules:
        found.setdefault(rule_id(rule), rule)
    return found


def matches(rule: AlertRule, host: str, metric: str, labels: Mapping[str, str]) -> bool:
    """Whether ``rule`` watches this series: same metric, a matching host, its labels present."""
    if metric != rule.metric:
        return False
    if not _watches(rule, host):
        return False
    return all(labels.get(key) == value for key, value in rule.labels)


def unmatched(
    rules: Iterable[AlertRule],
    *,
    configured: Collection[str],
    answered: Mapping[str, Iterable[tuple[str, Labels]]],
) -> list[Unmatched]:
    """The rules that matched no series this run although they could have, by config line.

    ``configured`` are config.xml's hosts; ``answered`` maps each host that
    answered this run to its series (metric, labels).  A rule could have
    matched when a host it watches answered, since an answer carries every
    series the host has: such a rule without a series is reported (a mount
    that is not there, a label value nobody has).  So is a rule whose
    ``hosts=`` matches no host of config.xml, which can never match.  Not
    reported: rules whose hosts all failed, were not set up or were not
    selected (``execute -h``), and ``up`` rules otherwise (every host that ran
    has an ``up`` series).
    """
    found: list[Unmatched] = []
    for rule in unique_rules(rules).values():
        named = [h for h in configured if _watches(rule, h)]
        if not named:
            patterns = ",".join(rule.hosts)
            found.append(Unmatched(rule=rule, why=f"no host in config.xml matches {patterns}"))
            continue
        if rule.metric == "up":
            continue  # every host that ran has an `up` series
        candidates = [h for h in answered if _watches(rule, h)]
        if not candidates or any(
            matches(rule, host, metric, dict(labels))
            for host in candidates
            for metric, labels in answered[host]
        ):
            continue
        shown = ", ".join(candidates[:3])
        more = f" and {len(candidates) - 3} more" if len(candidates) > 3 else ""
        found.append(Unmatched(rule=rule, why=f"no such series on {shown}{more}"))
    return sorted(found, key=lambda u: u.rule.line)


def unmatched_text(found: Sequence[Unmatched]) -> str:
    """One line naming each rule by config line and text, and why it matched nothing."""
    parts = [
        f"config line {u.rule.line}: {rule_text(u.rule)} ({u.why})"
        if u.rule.line
        else f"{rule_text(u.rule)} ({u.why})"
        for u in found
    ]
    return f"{_count(len(found), 'alert rule')} matched no series this run: " + "; ".join(parts)


def _watches(rule: AlertRule, host: str) -> bool:
    return not rule.hosts or any(fnmatchcase(host, pattern) for pattern in rule.hosts)


def breaches(op: Operator, value: float, limit: float) -> bool:
    """``value op limit``: is the value past the limit?"""
    return _COMPARE[op](value, limit)


def _cleared(rule: AlertRule, value: float) -> bool:
    """Whether a firing alert of ``rule`` resolves at ``value`` (``clear`` when given)."""
    return not breaches(rule.op, value, rule.limit if rule.clear is None else rule.clear)


# ---------------------------------------------------------------- the state machine


def step(
    rule: AlertRule, state: State | None, value: float, ts: float
) -> tuple[State | None, EventKind | None]:
    """The state after a new sample ``value`` at ``ts``, and what to tell, if anything.

    A sample no newer than the last one evaluated changes nothing.
    """
    if state is not None and ts <= state.ts:
        return state, None
    if state is None or state.phase == "pending":
        if not breaches(rule.op, value, rule.limit):
            return None, None  # pending never mailed: back to ok silently
        count = 1 if state is None else state.count + 1
        since = ts if state is None else state.since
        if count >= rule.for_count:
            fired = State(
                phase="firing", count=count, since=since, fired=ts, notified=ts, value=value, ts=ts
            )
            return fired, "firing"
        return State(phase="pending", count=count, since=since, value=value, ts=ts), None
    if _cleared(rule, value):
        return None, "resolved"
    count = state.count + 1 if breaches(rule.op, value, rule.limit) else state.count
    due = (
        rule.repeat is not None
        and state.notified is not None
        and ts - state.notified >= rule.repeat
    )
    notified = ts if due else state.notified
    kept = State(
        phase="firing",
        count=count,
        since=state.since,
        fired=state.fired,
        notified=notified,
        value=value,
        ts=ts,
    )
    return kept, "repeat" if due else None


def recipients(rule: AlertRule, kind: EventKind) -> tuple[str, ...]:
    """Who gets a mail for ``kind``: nobody for a resolve when ``resolved`` is false."""
    return () if kind == "resolved" and not rule.resolved else rule.email


# ---------------------------------------------------------------- text


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


def limit_text(limit: float) -> str:
    """A configured limit: ``20`` for a whole number, else as written (``0.5``)."""
    if limit.is_integer() and abs(limit) < 1e15:
        return str(int(limit))
    return repr(limit)


def series_name(metric: str, labels: Labels) -> str:
    """``cpu_percent``, or ``disk_percent{mount="/"}`` with labels."""
    if not labels:
        return metric
    inner = ",".join(f'{key}="{value}"' for key, value in labels)
    return f"{metric}{{{inner}}}"


def subject(event: Event) -> str:
    """``ALERT [f4] cpu_percent is 38.5>20`` / ``RESOLVED [f4] cpu_percent is 12.0 (was >20)``."""
    rule = event.rule
    shown = value_text(event.value, rule)
    head = f"[{event.host}] {series_name(event.metric, event.labels)} is {shown}"
    limit = f"{rule.op}{limit_text(rule.limit)}"
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
    condition = f"{verb} {rule.op} {limit_text(rule.limit)}"
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
        parts.append(f"resolves once not {rule.op} {limit_text(rule.clear)}")
    if rule.repeat is not None:
        parts.append(f"repeat every {duration_text(rule.repeat)}")
    if not rule.resolved:
        parts.append("no mail when resolved")
    text = ", ".join(parts)
    return f"{text} (config line {rule.line})" if rule.line else text


def duration_text(seconds: float) -> str:
    """``4h``, ``30m``, ``90s``, ``1.5d``: the largest unit that reads well."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and (seconds / size * 10).is_integer():
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def digest(lines: Sequence[DigestLine], recipient: str, digest_over: int) -> tuple[str, str]:
    """(subject, body) of one mail standing for ``lines``: ``ALERT 37 alerts on 25 hosts``.

    Resolves are counted apart (``ALERT 30 alerts, 7 resolved on 25 hosts``);
    a digest of resolves only says ``RESOLVED 7 alerts on 5 hosts``.
    """
    fired = sum(1 for line in lines if line.kind != "resolved")
    resolved = len(lines) - fired
    hosts = len({line.host for line in lines})
    on = f"on {_count(hosts, 'host')}"
    if not fired:
        title = f"RESOLVED {_count(resolved, 'alert')} {on}"
    elif not resolved:
        title = f"ALERT {_count(fired, 'alert')} {on}"
    else:
        title = f"ALERT {_count(fired, 'alert')}, {resolved} resolved {on}"
    ordered = sorted(lines, key=lambda line: (line.ts, line.host, line.subject))
    rows = [("TIME (UTC)", "HOST", "SEVERITY", "NOTIFICATION")]
    rows += [(iso(line.ts) or "", line.host, line.severity, line.subject) for line in ordered]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    text = [
        f"{len(lines)} notifications for {recipient} in one mail"
        f" (more than digest_over={digest_over}).",
        "",
    ]
    text += [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[3]])
        for row in rows
    ]
    text += [
        "",
        "Details: netmetrix alerts active, netmetrix alerts history",
        "",
        "-- ",
        "netmetrix",
    ]
    return title, "\n".join(text) + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
