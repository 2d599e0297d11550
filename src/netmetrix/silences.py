"""Silences (#16): which alerts notify nobody for a while.  Pure; the store keeps them.

A silence matches an alert when its host matches one of ``hosts`` (names or
shell globs; none: every host), its metric is ``metric`` (""; every metric)
and its series has every label of ``labels``.  It is active from ``starts``
until ``ends``.  Silenced alerts are still evaluated and recorded; only their
notifications stay unsent.  When a silence ends on an alert that is still
firing, the alert notifies then (``pipeline``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True, slots=True, kw_only=True)
class Silence:
    id: int
    created: float
    starts: float
    ends: float
    hosts: tuple[str, ...]  # names or globs; () for every host
    metric: str  # "" for every metric
    labels: dict[str, str]
    comment: str
    author: str
    settled: float | None = None  # when the alerts it kept quiet were notified, once ended

    def active(self, at: float) -> bool:
        return self.starts <= at < self.ends

    def matches(self, host: str, metric: str, labels: Mapping[str, str]) -> bool:
        if self.hosts and not any(fnmatchcase(host, pattern) for pattern in self.hosts):
            return False
        if self.metric and metric != self.metric:
            return False
        return all(labels.get(key) == value for key, value in self.labels.items())


def silencing(
    silences: Iterable[Silence], host: str, metric: str, labels: Mapping[str, str], at: float
) -> Silence | None:
    """The first silence active at ``at`` that matches this series, if any."""
    for silence in silences:
        if silence.active(at) and silence.matches(host, metric, labels):
            return silence
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewSilence:
    """What `alerts silence` asks for."""

    starts: float
    ends: float
    hosts: tuple[str, ...] = ()
    metric: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    comment: str
    author: str


def new_silence(
    *,
    hosts: tuple[str, ...],
    metric: str,
    labels: str,
    duration: str | None,
    until: str | None,
    comment: str,
    author: str,
    now: float,
) -> NewSilence:
    """What `alerts silence` asked for, checked; ValueError with a message for the user."""
    from netmetrix.config import parse_duration, parse_when

    if (duration is None) == (until is None):
        raise ValueError("give --for DURATION or --until TIME (one of them)")
    if duration is not None:
        ends = now + parse_duration(duration)
    else:
        assert until is not None
        ends = parse_when(until, now)
        if ends <= now:
            raise ValueError(f"--until {until!r} is not in the future")
    if not comment.strip():
        raise ValueError("--comment must say why (it is shown with the silence)")
    return NewSilence(
        starts=now,
        ends=ends,
        hosts=tuple(dict.fromkeys(hosts)),
        metric=metric,
        labels=parse_labels(labels),
        comment=comment.strip(),
        author=author,
    )


def parse_labels(text: str) -> tuple[tuple[str, str], ...]:
    """``mount=/,device=sda`` -> sorted pairs; ValueError naming the bad part."""
    pairs: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--labels: expected name=value, got {part!r}")
        pairs[key.strip()] = value.strip()
    return tuple(sorted(pairs.items()))
