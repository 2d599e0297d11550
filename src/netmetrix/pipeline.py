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
from dataclasses import dataclass, field

from netmetrix import alerts, notice, payloads, promnames
from netmetrix.checks import CHECK_STATUS
from netmetrix.config import AlertRule, Config
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
from netmetrix.receivers import Receiver, Target, by_name, targets
from netmetrix.shard import Shard
from netmetrix.silences import silencing
from netmetrix.store import NewMail, Refused, Store, Transaction


@dataclass(frozen=True, slots=True, kw_only=True)
class Routing:
    """Where notifications go besides a rule's ``email=`` (#16): the receivers by name,
    and the dashboard's public URL for Alertmanager's ``generatorURL``."""

    receivers: Mapping[str, Receiver] = field(default_factory=dict)
    dashboard: str | None = None
    host_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # (#18)


def routing(config: Config) -> Routing:
    """``config``'s receivers, dashboard URL and host labels."""
    return Routing(
        receivers=by_name(config.receivers),
        dashboard=config.web.url or None,
        host_labels=config.host_labels(),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """What ``record`` wrote."""

    samples: int
    events: int  # alert history entries (fired, repeated, resolved)
    queued: int  # outbox rows (one per recipient of an event: address, webhook, URL)
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


def record(  # noqa: PLR0913 -- keyword-only options of one transaction
    store: Store,
    runs: Sequence[HostRun],
    rules: Sequence[AlertRule],
    *,
    now: float,
    hosts: Collection[str] | None = None,
    marks: Sequence[HostRun] = (),
    shard: Shard | None = None,
    remote_write: bool = False,
    routing: Routing | None = None,
    read_at: float | None = None,
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

    ``read_at``: when this process read config.xml.  It retires only the states
    last evaluated before then: one evaluated later was evaluated by a process
    that read a newer config.xml (``execute`` run to try a new rule while
    ``watch`` still has the old file), which knows the rule this one does not.
    """
    forward = _FORWARDED if remote_write else None
    with store.transaction(f"store {len(runs)} host run(s)") as tx:
        return _record(
            tx,
            runs,
            rules,
            now=now,
            hosts=hosts,
            marks=marks,
            shard=shard,
            forward=forward,
            routing=routing or Routing(),
            read_at=read_at,
        )


_FORWARDED = frozenset(promnames.EXPOSED)


def _record(  # noqa: PLR0913 -- record's options, passed on
    tx: Transaction,
    runs: Sequence[HostRun],
    rules: Sequence[AlertRule],
    *,
    now: float,
    hosts: Collection[str] | None,
    marks: Sequence[HostRun],
    shard: Shard | None,
    forward: Collection[str] | None = None,
    routing: Routing,
    read_at: float | None = None,
) -> Recorded:
    written = tx.write_runs(runs, forward)
    tx.update_hosts(marks)
    by_id = alerts.unique_rules(rules)
    # Only the series a rule can watch (and `up`, which dates the run) go to the rules.
    watchable = {rule.metric for rule in by_id.values()}
    found = _paging_points(tx, points(written.runs, watchable), watchable)
    states = _owned(_before(tx.other_alert_states(by_id, hosts), read_at), shard)
    watched = {p.host for p in found if p.metric in watchable}
    if watched:
        states.update(tx.alert_states(watched, by_id))
    changes, events = alerts.evaluate(by_id, states, found, now, hosts=hosts)
    tx.save_alert_states(changes)
    queued = _queue(tx, events, by_id, now, routing)
    awoken = _silences_ended(tx, by_id, now)
    queued += _queue(tx, awoken, by_id, now, routing)
    retired = sum(1 for e in events if e.reason is not None)
    return Recorded(
        samples=written.samples,
        events=len(events) + len(awoken),
        queued=queued,
        refused=written.refused,
        retired=retired,
        forwarded=written.forwarded,
    )


def forget_hosts(store: Store, names: Sequence[str], config: Config, now: float) -> list[Forgotten]:
    """``forget`` with ``config``'s rules, hosts and receivers."""
    configured = {h.name for h in config.hosts}
    return forget(
        store, names, config.alerts.rules, configured=configured, now=now, routing=routing(config)
    )


def forget(
    store: Store,
    names: Sequence[str],
    rules: Sequence[AlertRule],
    *,
    configured: Collection[str],
    now: float,
    routing: Routing | None = None,
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
            mails = _queue(tx, events, by_id, now, routing or Routing())
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


def _before(
    states: dict[StateKey, AlertState], read_at: float | None
) -> dict[StateKey, AlertState]:
    """The states last evaluated before ``read_at`` (all for None)."""
    if read_at is None:
        return states
    return {key: state for key, state in states.items() if state.ts <= read_at}


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
    routing: Routing,
) -> int:
    """Append ``events`` to the history and queue their notifications; return the outbox
    rows queued (one per address, webhook and Alertmanager URL)."""
    if not events:
        return 0
    ids = tx.add_alert_events(events)
    addresses = tx.addresses({e.host for e in events})
    active = tx.silences(now)
    quiet: list[tuple[int, int]] = []
    mails: list[NewMail] = []
    for event_id, event in zip(ids, events, strict=True):
        silence = silencing(active, event.host, event.metric, dict(event.labels), now)
        if silence is not None:  # recorded, told nobody (#16)
            quiet.append((event_id, silence.id))
            continue
        rule = rules.get(event.rule_id)
        to = _targets(tx, event, rule, routing)
        if not to:
            continue
        recent = (
            tx.recent(event.host, event.metric, event.labels, event.ts, notice.RECENT)
            if event.reason is None and any(t.channel == "email" for t in to)
            else ()
        )
        check = _check_of(tx, event)
        address = addresses.get(event.host, event.host)
        subject, body = notice.render(event, rule, address, recent, check=check)
        mails += _notices(event_id, event, to, (subject, body, address), routing)
    tx.mark_silenced(quiet)
    return tx.queue_mail(mails, now)


def _notices(
    event_id: int,
    event: AlertEvent,
    to: Sequence[Target],
    words: tuple[str, str, str],
    routing: Routing,
) -> list[NewMail]:
    """One outbox entry per (channel, receiver) of ``to``, its body as the channel wants
    it: the mail text, the webhook's event JSON, the Alertmanager alert."""
    subject, body, address = words
    labels = routing.host_labels.get(event.host)
    bodies = {
        "email": body,
        "webhook": payloads.event_json(
            event, event_id=event_id, subject=subject, address=address, host_labels=labels
        ),
        "alertmanager": payloads.alert_json(
            event,
            subject=subject,
            description=body.split("\n", 1)[0],
            dashboard=routing.dashboard,
            host_labels=labels,
        ),
    }
    grouped: dict[tuple[str, str], list[str]] = {}
    for target in to:
        grouped.setdefault((target.channel, target.receiver), []).append(target.recipient)
    return [
        NewMail(
            event_id=event_id,
            subject=subject,
            body=bodies[channel],
            recipients=tuple(recipients),
            channel=channel,
            receiver=receiver,
        )
        for (channel, receiver), recipients in grouped.items()
    ]


def _check_of(tx: Transaction, event: AlertEvent) -> tuple[str, int, str] | None:
    """(name, status, text) of the custom check a ``check_status`` event is about (#17)."""
    name = dict(event.labels).get("check")
    if event.metric != CHECK_STATUS or name is None or event.reason is not None:
        return None
    found = tx.check_text(event.host, name)
    return None if found is None else (name, *found)


def _silences_ended(
    tx: Transaction, rules: Mapping[str, AlertRule], now: float
) -> list[AlertEvent]:
    """A ``repeat`` event for each alert still firing that a silence ended by ``now`` kept
    quiet: nobody has heard of it yet.  Each ended silence is settled once, by one
    collector (``settle_ended_silences``)."""
    ended = tx.settle_ended_silences(now)
    if not ended:
        return []
    keys = [k for k in tx.kept_quiet(s.id for s in ended) if k[0] in rules]
    states = tx.alert_states({k[1] for k in keys}, {k[0] for k in keys})
    return [
        alerts.state_event("repeat", key, state, now)
        for key in keys
        if (state := states.get(key)) is not None and state.phase == "firing"
    ]


def _targets(
    tx: Transaction, event: AlertEvent, rule: AlertRule | None, routing: Routing
) -> tuple[Target, ...]:
    """Where this kind of event of the rule goes (email and webhooks skip a resolve when
    ``resolved`` is false; Alertmanager never does); for a retired alert whose rule is
    gone, where its firing notification went."""
    if rule is not None:
        mail = event.kind != "resolved" or rule.resolved
        return targets(rule, routing.receivers, mail=mail)
    key = (event.rule_id, event.host, event.metric, event.labels)
    found = tx.last_firing_recipients(event.rule_id, key)
    return tuple(
        Target(channel=channel, receiver=receiver, recipient=recipient)  # type: ignore[arg-type]
        for channel, receiver, recipient in found
    )
