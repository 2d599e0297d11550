"""Samples in, alerts evaluated, rows written, mail queued: one store transaction.

``record`` is what every collection does with a batch of host runs: the
store writes the samples, ``alerts.evaluate`` moves the rules' states, the
store keeps the states and the history, and ``notice`` words one mail per
recipient into the outbox, and (with ``<remote_write>``) the samples Prometheus
will see are queued for remote-write, all inside one ``Store.transaction`` so
they commit together or not at all.  ``notify.deliver`` sends the outbox later,
``remote_write.send`` the queue.
``forget`` is the same for hosts that leave the store.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from netmetrix import alerts, notice, promnames
from netmetrix.checks import CHECK_STATUS
from netmetrix.config import AlertRule
from netmetrix.model import (
    UP,
    AlertEvent,
    AlertState,
    HostRun,
    Point,
    RetireReason,
    StateKey,
    points,
)
from netmetrix.shard import Shard
from netmetrix.store import NewMail, Refused, Store, Transaction


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """What ``record`` wrote."""

    samples: int
    events: int  # alert history entries (fired, repeated, resolved)
    queued: int  # outbox mails (one per recipient of an event)
    refused: tuple[Refused, ...] = ()  # hosts stored as failed runs instead (see write_runs)
    retired: int = 0  # firing alerts resolved because their rule or host left config.xml
    forwarded: int = 0  # samples queued for remote-write


@dataclass(frozen=True, slots=True, kw_only=True)
class Forgotten:
    """What ``forget`` deleted of one host."""

    host: str
    series: int
    samples: int
    keys: int
    alerts: int  # alert states (pending or firing) dropped
    resolved: int  # of them, firing alerts resolved with a RESOLVED event
    mails: int  # RESOLVED mails queued for them
    row: bool  # whether it had a hosts row


def record(
    store: Store,
    runs: Sequence[HostRun],
    rules: Sequence[AlertRule],
    *,
    now: float,
    hosts: Collection[str] | None = None,
    marks: Sequence[HostRun] = (),
    shard: Shard | None = None,
    remote_write: bool = False,
) -> Recorded:
    """Store ``runs`` and evaluate ``rules`` on them, in one transaction.

    ``hosts`` are config.xml's hosts (all of them, not only those of this
    run); None leaves alone the state of hosts not in it.  A state whose rule
    is no longer in ``rules`` or whose host is not in ``hosts`` is retired: a
    firing one with a ``resolved`` event and a RESOLVED mail saying why.
    ``up`` rules skip a host that has never answered (its row has no
    last_seen).  ``marks`` only update their host rows (hosts not set up,
    interrupted): no sample, so nothing for the rules to see.  Mail is queued
    at ``now`` (unix seconds).  ``remote_write``: queue the stored samples of
    every metric Prometheus sees (``promnames.EXPOSED``) for remote-write.

    ``shard``: this collector's (``--shard K/N``).  It retires only the states
    of hosts in its shard, a host gone from config.xml included (the shard
    its name hashes to owns it): the collectors of the other shards, reading
    the same config.xml, retire theirs, so each alert is resolved once, by one
    collector, even when two of them run at the same moment (#15).
    """
    forward = _FORWARDED if remote_write else None
    with store.transaction(f"store {len(runs)} host run(s)") as tx:
        return _record(
            tx, runs, rules, now=now, hosts=hosts, marks=marks, shard=shard, forward=forward
        )


_FORWARDED = frozenset(promnames.EXPOSED)


def _record(
    tx: Transaction,
    runs: Sequence[HostRun],
    rules: Sequence[AlertRule],
    *,
    now: float,
    hosts: Collection[str] | None,
    marks: Sequence[HostRun],
    shard: Shard | None,
    forward: Collection[str] | None = None,
) -> Recorded:
    written = tx.write_runs(runs, forward)
    tx.update_hosts(marks)
    by_id = alerts.unique_rules(rules)
    # Only the series a rule can watch (and `up`, which dates the run) go to the rules.
    watchable = {rule.metric for rule in by_id.values()}
    found = _paging_points(tx, points(written.runs, watchable), watchable)
    states = _owned(tx.other_alert_states(by_id, hosts), shard)
    watched = {p.host for p in found if p.metric in watchable}
    if watched:
        states.update(tx.alert_states(watched, by_id))
    changes, events = alerts.evaluate(by_id, states, found, now, hosts=hosts)
    tx.save_alert_states(changes)
    queued = _queue(tx, events, by_id, now)
    retired = sum(1 for e in events if e.reason is not None)
    return Recorded(
        samples=written.samples,
        events=len(events),
        queued=queued,
        refused=written.refused,
        retired=retired,
        forwarded=written.forwarded,
    )


def forget(
    store: Store,
    names: Sequence[str],
    rules: Sequence[AlertRule],
    *,
    configured: Collection[str],
    now: float,
) -> list[Forgotten]:
    """Delete everything stored about ``names``, in one transaction; what went, by host.

    Series and their samples, keys, alert state and the host row go; the
    alert history and the outbox stay (mail still to send is sent).  A
    firing alert is resolved first, as when its host leaves config.xml: a
    ``resolved`` event and a RESOLVED mail saying ``host removed``, or
    ``host forgotten`` for a host still in ``configured`` (config.xml's
    hosts).  A name the store does not know reports zeros.
    """
    by_id = alerts.unique_rules(rules)
    forgotten: list[Forgotten] = []
    with store.transaction(f"forget {len(names)} host(s)") as tx:
        for name in names:
            why: RetireReason = "host forgotten" if name in configured else "host removed"
            states = tx.alert_states([name])
            changes, events = alerts.retire([(k, s, why) for k, s in states.items()], now)
            tx.save_alert_states(changes)
            mails = _queue(tx, events, by_id, now)
            series, samples, keys, row = tx.forget_host(name)
            forgotten.append(
                Forgotten(
                    host=name,
                    series=series,
                    samples=samples,
                    keys=keys,
                    alerts=len(states),
                    resolved=len(events),
                    mails=mails,
                    row=row,
                )
            )
    return forgotten


def _owned(states: dict[StateKey, AlertState], shard: Shard | None) -> dict[StateKey, AlertState]:
    """The states of hosts in ``shard`` (all for None): those of other shards' hosts are
    their collectors' to retire."""
    if shard is None:
        return states
    return {key: state for key, state in states.items() if shard.owns(key[1])}


def _paging_points(tx: Transaction, found: list[Point], watchable: Collection[str]) -> list[Point]:
    """The points the rules may see: `up` of a host that never answered pages nobody
    (not set up yet, or a fresh store) (#11)."""
    if UP not in watchable:
        return found
    never = tx.never_seen({p.host for p in found if p.metric == UP})
    if not never:
        return found
    return [p for p in found if not (p.metric == UP and p.host in never)]


def _queue(
    tx: Transaction,
    events: Sequence[AlertEvent],
    rules: Mapping[str, AlertRule],
    now: float,
) -> int:
    """Append ``events`` to the history and queue their mail; return the mails queued."""
    ids = tx.add_alert_events(events)
    addresses = tx.addresses({e.host for e in events})
    mails: list[NewMail] = []
    for event_id, event in zip(ids, events, strict=True):
        rule = rules.get(event.rule_id)
        to = _recipients(tx, event, rule)
        if not to:
            continue
        recent = (
            tx.recent(event.host, event.metric, event.labels, event.ts, notice.RECENT)
            if event.reason is None
            else ()
        )
        check = _check_of(tx, event)
        address = addresses.get(event.host, event.host)
        subject, body = notice.render(event, rule, address, recent, check=check)
        mails.append(NewMail(event_id=event_id, subject=subject, body=body, recipients=to))
    return tx.queue_mail(mails, now)


def _check_of(tx: Transaction, event: AlertEvent) -> tuple[str, int, str] | None:
    """(name, status, text) of the custom check a ``check_status`` event is about (#17)."""
    name = dict(event.labels).get("check")
    if event.metric != CHECK_STATUS or name is None or event.reason is not None:
        return None
    found = tx.check_text(event.host, name)
    return None if found is None else (name, *found)


def _recipients(tx: Transaction, event: AlertEvent, rule: AlertRule | None) -> tuple[str, ...]:
    """The rule's recipients for this kind of event; for a retired alert whose rule is
    gone (``resolved="false"`` aside), those its firing mail went to."""
    if rule is not None:
        return alerts.recipients(rule, event.kind)
    key = (event.rule_id, event.host, event.metric, event.labels)
    return tx.last_firing_recipients(event.rule_id, key)
