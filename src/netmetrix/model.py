"""The values every layer passes around: samples, one host's run, the points they make.

No I/O and no imports from the rest of netmetrix: the envelope produces
``Sample``, collect turns results into ``HostRun``, and both the store and the
alert rules consume the ``Point`` list that ``points`` makes of a batch of runs.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal, NamedTuple

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs
UP = "up"  # the collector's own metric: 1 the host answered and verified, 0 not


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One value a probe reported."""

    metric: str
    labels: Labels
    value: float


@dataclass(frozen=True, slots=True, kw_only=True)
class HostRun:
    """One host's outcome of one collection."""

    host: str
    address: str
    ts: float  # unix seconds of the run
    ok: bool
    error: str | None = None
    probe_version: str | None = None
    samples: tuple[Sample, ...] = ()
    collector: str | None = None  # who collected it: "db1 (2/3)" (None: kept as stored)
    # custom checks' (name, status 0-3, first line of text, ran at, seconds) (#17)
    checks: tuple[tuple[str, int, str, float, float], ...] = ()


class Point(NamedTuple):
    """One value of one series at one millisecond (a NamedTuple: a fleet makes many)."""

    host: str
    metric: str
    labels: Labels
    ts_ms: int
    value: float


def ms(ts: float) -> int:
    """Unix seconds to the milliseconds the store keeps."""
    return round(ts * 1000)


PointKey = tuple[str, str, Labels, int]  # host, metric, labels, ts_ms


def point_values(
    runs: Iterable[HostRun], metrics: Collection[str] | None = None
) -> dict[PointKey, float]:
    """The value of every point of ``runs`` (of ``metrics`` only, when given; ``up``
    always): each run's ``up`` (1.0 ok, 0.0 failed), then its samples.

    The first value of a series at a millisecond wins, as the store keeps it.
    """
    found: dict[PointKey, float] = {}
    keep = found.setdefault
    for run in runs:
        ts_ms = ms(run.ts)
        host = run.host
        keep((host, UP, (), ts_ms), 1.0 if run.ok else 0.0)
        for sample in run.samples:
            if metrics is None or sample.metric in metrics:
                keep((host, sample.metric, sample.labels, ts_ms), sample.value)
    return found


def points(runs: Iterable[HostRun], metrics: Collection[str] | None = None) -> list[Point]:
    """``point_values`` as ``Point`` values."""
    make = Point._make
    return [make((*key, value)) for key, value in point_values(runs, metrics).items()]


# ---------------------------------------------------------------- alert state and events

Phase = Literal["pending", "firing"]
EventKind = Literal["firing", "repeat", "resolved"]
# Why an alert ended without a sample: its rule left config.xml (rule_id changed), its
# host left config.xml, or `hosts forget` dropped a host that is still configured.
RetireReason = Literal["rule changed", "host removed", "host forgotten"]
StateKey = tuple[str, str, str, Labels]  # rule id, host, metric, labels


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertState:
    """A (rule, series) that is not ok: what the store keeps between runs."""

    phase: Phase
    count: int  # consecutive samples past the limit
    since: float  # the first of them (unix seconds): when the incident started
    fired: float | None = None  # when it became firing
    notified: float | None = None  # last ALERT mail (the first one or a repeat)
    value: float  # latest value seen
    ts: float  # latest sample evaluated
    rule: str = ""  # the rule's text when the state was written (its mail once the rule is gone)
    severity: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertEvent:
    """Something to tell a rule's recipients and to keep in the alert history."""

    kind: EventKind
    rule_id: str
    rule: str  # the rule's text
    severity: str
    host: str
    metric: str
    labels: Labels
    value: float
    ts: float  # the sample that caused it, or when a config change retired the alert
    since: float  # when the incident started
    seen: float  # when ``value`` was sampled (``ts``, but for a retired alert)
    reason: RetireReason | None = None  # set when no sample resolved it
