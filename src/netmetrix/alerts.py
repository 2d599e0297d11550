"""Alert rules against samples: matching, the per-(rule, series) state machine, evaluation.

Pure: no I/O and no clock.  ``evaluate`` takes the rules, the stored states and
a batch of points and returns the new states and the events; ``pipeline``
loads and writes them in the store's transaction, ``notice`` words the mail
and ``notify`` delivers it.

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

import functools
import hashlib
import json
import operator
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TypedDict

from netmetrix.config import AlertRule, Operator
from netmetrix.format import count as count_text
from netmetrix.format import exact, series_name
from netmetrix.model import (
    AlertEvent,
    AlertState,
    EventKind,
    Labels,
    Phase,
    Point,
    RetireReason,
    StateKey,
)

__all__ = ["AlertEvent", "EventKind", "Labels", "Phase", "RetireReason", "State", "StateKey"]

State = AlertState  # the state machine's name for a stored state

_COMPARE: Mapping[Operator, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Unmatched:
    """A rule that matched no series although a host it watches answered (or it names none)."""

    rule: AlertRule
    why: str  # "no such series on f4, f5" / "no host in config.xml matches hosts=db-*"


# ---------------------------------------------------------------- rules


def rule_id(rule: AlertRule) -> str:
    """A stable id for the state of ``rule``: what it watches, its condition, who it tells.

    Changing ``for``, ``repeat``, ``resolved``, ``severity`` or ``clear`` keeps the
    state; changing the metric, labels, operator, limit, hosts or addresses
    starts afresh.
    """
    identity = [rule.metric, rule.labels, rule.op, rule.limit, rule.hosts, sorted(rule.email)]
    if rule.notify:  # only then: the ids of rules written before receivers (#16) stay
        identity.append(sorted(rule.notify))
    digest = hashlib.sha256(json.dumps(identity, separators=(",", ":")).encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=1024)
def rule_text(rule: AlertRule) -> str:
    """``disk_percent{mount="/"} >= 90``, plus `` on db-*`` when limited to some hosts."""
    text = f"{series_name(rule.metric, rule.labels)} {rule.op} {exact(rule.limit)}"
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
    has an ``up`` series).  ``Answers`` does the same host by host.
    """
    answers = Answers(rules)
    for host, series in answered.items():
        answers.add(host, series)
    return answers.unmatched(configured)


@dataclass(slots=True)
class _Watched:
    """What ``Answers`` keeps of one rule: whether a series matched it, who could have."""

    hosts: int = 0  # hosts it watches that answered
    first: list[str] = field(default_factory=list)  # the first few of them, to name
    matched: bool = False


class Answers:
    """What ``unmatched`` needs of a run's answers, gathered as hosts answer.

    Per rule a flag and a count, not every host's series: a run over 10,000
    hosts keeps no answer once it is stored (#15).  Hosts are named in the
    order they were added.
    """

    _NAMED = 3  # hosts named in "no such series on a, b, c and 7 more"

    def __init__(self, rules: Iterable[AlertRule]) -> None:
        self._rules = unique_rules(rules)
        # `up` rules always match: every host that ran has an `up` series
        self._watched = {rid: _Watched() for rid, r in self._rules.items() if r.metric != "up"}

    def add(self, host: str, series: Iterable[tuple[str, Labels]]) -> None:
        """``host`` answered with ``series`` (metric, labels)."""
        watching = [
            (self._rules[rid], seen)
            for rid, seen in self._watched.items()
            if _watches(self._rules[rid], host)
        ]
        if not watching:
            return
        found = list(series)
        for rule, seen in watching:
            seen.hosts += 1
            if len(seen.first) < self._NAMED:
                seen.first.append(host)
            if not seen.matched:
                seen.matched = any(matches(rule, host, m, dict(labels)) for m, labels in found)

    def unmatched(self, configured: Collection[str]) -> list[Unmatched]:
        """The rules that matched no series (see ``unmatched``), by config line."""
        found: list[Unmatched] = []
        for rid, rule in self._rules.items():
            if not any(_watches(rule, h) for h in configured):
                patterns = ",".join(rule.hosts)
                found.append(Unmatched(rule=rule, why=f"no host in config.xml matches {patterns}"))
                continue
            seen = self._watched.get(rid)
            if seen is None or seen.matched or not seen.hosts:
                continue
            more = seen.hosts - len(seen.first)
            shown = ", ".join(seen.first) + (f" and {more} more" if more > 0 else "")
            found.append(Unmatched(rule=rule, why=f"no such series on {shown}"))
        return sorted(found, key=lambda u: u.rule.line)


def unmatched_text(found: Sequence[Unmatched]) -> str:
    """One line naming each rule by config line and text, and why it matched nothing."""
    parts = [
        f"config line {u.rule.line}: {rule_text(u.rule)} ({u.why})"
        if u.rule.line
        else f"{rule_text(u.rule)} ({u.why})"
        for u in found
    ]
    return f"{count_text(len(found), 'alert rule')} matched no series this run: " + "; ".join(parts)


def _watches(rule: AlertRule, host: str) -> bool:
    """Whether ``rule`` watches ``host``: the hosts its ``hosts=`` selected at load, or (a
    rule made in code) those whose name its names or globs match."""
    if rule.selected is not None:
        return host in rule.selected
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
        return _step_not_firing(rule, state, value, ts)
    return _step_firing(rule, state, value, ts)


def _step_not_firing(
    rule: AlertRule, state: State | None, value: float, ts: float
) -> tuple[State | None, EventKind | None]:
    """ok or pending: a breach counts towards ``for``; anything else is ok again, silently."""
    if not breaches(rule.op, value, rule.limit):
        return None, None  # pending never mailed: back to ok silently
    count = 1 if state is None else state.count + 1
    since = ts if state is None else state.since
    if count < rule.for_count:
        return State(
            phase="pending", count=count, since=since, value=value, ts=ts, **_of(rule)
        ), None
    fired = State(
        phase="firing",
        count=count,
        since=since,
        fired=ts,
        notified=ts,
        value=value,
        ts=ts,
        **_of(rule),
    )
    return fired, "firing"


def _step_firing(
    rule: AlertRule, state: State, value: float, ts: float
) -> tuple[State | None, EventKind | None]:
    """firing: resolves once cleared, else stays and repeats its mail when ``repeat`` is due."""
    if _cleared(rule, value):
        return None, "resolved"
    count = state.count + 1 if breaches(rule.op, value, rule.limit) else state.count
    due = (
        rule.repeat is not None
        and state.notified is not None
        and ts - state.notified >= rule.repeat
    )
    kept = State(
        phase="firing",
        count=count,
        since=state.since,
        fired=state.fired,
        notified=ts if due else state.notified,
        value=value,
        ts=ts,
        **_of(rule),
    )
    return kept, "repeat" if due else None


class _Named(TypedDict):
    rule: str
    severity: str


def _of(rule: AlertRule) -> _Named:
    """What a state keeps of its rule: its text and severity, for a mail once it is gone."""
    return {"rule": rule_text(rule), "severity": rule.severity}


def recipients(rule: AlertRule, kind: EventKind) -> tuple[str, ...]:
    """Who gets a mail for ``kind``: nobody for a resolve when ``resolved`` is false."""
    return () if kind == "resolved" and not rule.resolved else rule.email


# ---------------------------------------------------------------- evaluation


def evaluate(
    rules: Mapping[str, AlertRule],
    states: Mapping[StateKey, State],
    points: Sequence[Point],
    now: float,
    *,
    hosts: Collection[str] | None = None,
) -> tuple[dict[StateKey, State | None], list[AlertEvent]]:
    """Move the alert states on new ``points``: (the states that changed, the events).

    ``rules`` by id (``unique_rules``).  ``states`` are the stored ones: at least
    those of the points' hosts under these rules, plus every state whose rule
    is not in ``rules`` or whose host is not in ``hosts`` (config.xml's hosts;
    None leaves every host alone).  Those are retired first, at the time of
    the earliest point (``now`` when there is none): a firing one with a
    ``resolved`` event saying why, a pending one silently.  In the changes,
    None means back to ok (no stored state).
    """
    at = min((p.ts_ms for p in points), default=None)
    ending = orphans(states, rules, hosts)
    changes, events = retire(ending, now if at is None else at / 1000)
    moved, happened = _step_points(rules, states, points)
    changes.update(moved)
    return changes, events + happened


def orphans(
    states: Mapping[StateKey, State],
    rules: Mapping[str, AlertRule],
    hosts: Collection[str] | None,
) -> list[tuple[StateKey, State, RetireReason]]:
    """The states whose host left ``hosts`` (None: none did) or whose rule left ``rules``;
    a gone host wins."""
    found: list[tuple[StateKey, State, RetireReason]] = []
    for key, state in states.items():
        rid, host = key[0], key[1]
        if hosts is not None and host not in hosts:
            found.append((key, state, "host removed"))
        elif rid not in rules:
            found.append((key, state, "rule changed"))
    return found


def retire(
    ending: Iterable[tuple[StateKey, State, RetireReason]], at: float
) -> tuple[dict[StateKey, State | None], list[AlertEvent]]:
    """End these states without a sample, oldest first: every one goes, and a firing one
    gets a ``resolved`` event at ``at`` with the reason (a pending one never mailed)."""
    ordered = sorted(ending, key=lambda e: (e[1].since, e[0][1], e[0][2]))
    changes: dict[StateKey, State | None] = {key: None for key, _, _ in ordered}
    events = [
        state_event("resolved", key, state, at, reason=why)
        for key, state, why in ordered
        if state.phase == "firing"
    ]
    return changes, events


def state_event(
    kind: EventKind, key: StateKey, state: State, at: float, reason: RetireReason | None = None
) -> AlertEvent:
    """An event of the stored alert ``state`` of ``key`` at ``at``, with no new sample: its
    value and last evaluation are the state's."""
    rid, host, metric, labels = key
    return AlertEvent(
        kind=kind,
        rule_id=rid,
        rule=state.rule,
        severity=state.severity,
        host=host,
        metric=metric,
        labels=labels,
        value=state.value,
        ts=at,
        since=state.since,
        seen=state.ts,
        reason=reason,
    )


def _step_points(
    rules: Mapping[str, AlertRule], states: Mapping[StateKey, State], points: Sequence[Point]
) -> tuple[dict[StateKey, State | None], list[AlertEvent]]:
    """Each watched series' points, oldest first, through ``step`` of each rule matching it."""
    by_metric: dict[str, list[tuple[str, AlertRule]]] = {}
    for rid, rule in rules.items():
        by_metric.setdefault(rule.metric, []).append((rid, rule))
    series: dict[tuple[str, str, Labels], list[tuple[int, float]]] = {}
    for point in points:
        if point.metric in by_metric:
            series.setdefault(point[:3], []).append((point.ts_ms, point.value))
    changes: dict[StateKey, State | None] = {}
    events: list[AlertEvent] = []
    for (host, metric, labels), values in sorted(series.items()):
        label_map = dict(labels)
        for rid, rule in by_metric[metric]:
            if not matches(rule, host, metric, label_map):
                continue
            key = (rid, host, metric, labels)
            state = states.get(key)
            for ts_ms, value in sorted(values):
                previous = state
                state, kind = step(rule, state, value, ts_ms / 1000)
                if kind is not None:
                    episode = previous if kind == "resolved" else state
                    assert episode is not None  # an event always belongs to an incident
                    events.append(_event(kind, rid, rule, key, value, ts_ms / 1000, episode))
            if state != states.get(key):
                changes[key] = state
    return changes, events


def _event(
    kind: EventKind,
    rid: str,
    rule: AlertRule,
    key: StateKey,
    value: float,
    ts: float,
    episode: State,
) -> AlertEvent:
    _, host, metric, labels = key
    return AlertEvent(
        kind=kind,
        rule_id=rid,
        rule=rule_text(rule),
        severity=rule.severity,
        host=host,
        metric=metric,
        labels=labels,
        value=value,
        ts=ts,
        since=episode.since,
        seen=ts,
    )
