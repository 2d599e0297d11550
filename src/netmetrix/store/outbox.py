"""The outbox: one row per (alert event, recipient), and the claim protocol.

A row's ``channel`` says how it goes (#16): "email" (``recipient`` an
address), "webhook" (``recipient`` the receiver's name: its URL may hold a
token, it is read from config.xml when sent) or "alertmanager" (``recipient``
one URL of the receiver); ``receiver`` names the ``<receivers>`` entry, ""
for a rule's own ``email=``.  The body of a webhook or Alertmanager row is
its JSON, rendered when queued.

A row is queued in the transaction that stored its cause.  A sender claims
rows with a token for a lease (all or none), sends them, then marks them
delivered or failed with the same token; a row whose lease ran out may be
claimed by another sender, so two collectors flushing one outbox never send
the same mail, and a crashed sender's mail is sent by the next one.  A failure
``permanent`` makes a dead letter, left alone until ``retry_mail`` (#10).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection

from netmetrix.model import StateKey
from netmetrix.store._sql import chunks, ms, seconds
from netmetrix.store.schema import alert_events_table, labels_json, outbox_table


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem:
    """One queued mail to one recipient, with what its digest line needs."""

    id: int
    recipient: str
    subject: str
    body: str
    created: float
    attempts: int
    last_attempt: float | None
    last_error: str | None
    delivered: float | None
    failed: float | None  # when it became a dead letter (refused for good)
    claimed_until: float | None  # a sender holds it until then
    kind: str  # of its alert event
    host: str
    severity: str
    ts: float  # of its alert event
    channel: str = "email"  # email | webhook | alertmanager (#16)
    receiver: str = ""  # the <receivers> name; "" for a rule's own email=


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxChange:
    """What ``drop_mail`` / ``retry_mail`` did; nothing at all when ``unknown`` is set."""

    changed: tuple[int, ...] = ()
    unchanged: tuple[int, ...] = ()  # already in the state asked for
    unknown: tuple[int, ...] = ()  # no undelivered mail has this id


# -- queueing, in the pipeline's transaction ---------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMail:
    """The notification of one alert event, to go to each of ``recipients`` by ``channel``."""

    event_id: int
    subject: str
    body: str
    recipients: tuple[str, ...]
    channel: str = "email"
    receiver: str = ""


def queue_mail(conn: Connection, mails: Iterable[NewMail], now: float) -> int:
    """Queue one outbox row per mail and recipient, created at ``now``, in one statement;
    how many."""
    rows = [
        {
            "event_id": mail.event_id,
            "recipient": recipient,
            "subject": mail.subject,
            "body": mail.body,
            "created_ms": ms(now),
            "attempts": 0,
            "channel": mail.channel,
            "receiver": mail.receiver,
        }
        for mail in mails
        for recipient in mail.recipients
    ]
    if rows:
        conn.execute(outbox_table.insert(), rows)
    return len(rows)


Target = tuple[str, str, str]  # channel, receiver, recipient


def last_firing_recipients(conn: Connection, rule_id: str, series: StateKey) -> tuple[Target, ...]:
    """Where the last firing notification of a (rule, series) went, dead letters aside:
    the only record of its receivers once its rule left config.xml."""
    ev, o = alert_events_table, outbox_table
    _, host, metric, labels = series
    fired = (
        select(ev.c.id)
        .where(
            ev.c.kind == "firing",
            ev.c.rule_id == rule_id,
            ev.c.host == host,
            ev.c.metric == metric,
            ev.c.labels == labels_json(labels),
        )
        .order_by(ev.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    query = (
        select(o.c.channel, o.c.receiver, o.c.recipient)
        .where(o.c.event_id == fired, o.c.failed_ms.is_(None))
        .order_by(o.c.id)
    )
    return tuple(dict.fromkeys((r.channel, r.receiver, r.recipient) for r in conn.execute(query)))


# -- listing ------------------------------------------------------------------------


def outbox(
    conn: Connection,
    *,
    undelivered: bool = True,
    failed: bool | None = None,
    limit: int | None = None,
    hosts: Sequence[str] = (),
) -> list[OutboxItem]:
    """Outbox mail, oldest first: only the undelivered, or (``undelivered=False``) all.

    ``failed`` True keeps only dead letters (mail the server refused for
    good), False leaves them out, None keeps both.  With ``limit`` and all
    mail, the newest ``limit`` (still oldest first).  ``hosts``: only mail
    about those hosts' alerts (empty: every host).
    """
    o, e = outbox_table, alert_events_table
    query = select(o, e.c.kind, e.c.host, e.c.severity, e.c.ts_ms.label("event_ms")).select_from(
        o.join(e, e.c.id == o.c.event_id)
    )
    if undelivered:
        query = query.where(o.c.delivered_ms.is_(None))
    if hosts:
        query = query.where(e.c.host.in_(sorted(set(hosts))))
    if failed is not None:
        query = query.where(o.c.failed_ms.is_not(None) if failed else o.c.failed_ms.is_(None))
    query = query.order_by(o.c.id.desc() if limit is not None else o.c.id)
    if limit is not None:
        query = query.limit(limit)
    return sorted((_item(row) for row in conn.execute(query)), key=lambda item: item.id)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxSize:
    """Undelivered mail: ``pending`` (waiting, claimed or to be retried) and ``failed``
    (dead letters)."""

    pending: int
    failed: int


def outbox_size(conn: Connection) -> OutboxSize:
    """How much mail is undelivered, counted (no row is read)."""
    o = outbox_table
    query = select(func.count(), func.count(o.c.failed_ms)).where(o.c.delivered_ms.is_(None))
    undelivered, failed = conn.execute(query).one()
    return OutboxSize(pending=undelivered - failed, failed=failed)


def _item(r: Any) -> OutboxItem:
    return OutboxItem(
        id=r.id,
        recipient=r.recipient,
        subject=r.subject,
        body=r.body,
        created=r.created_ms / 1000,
        attempts=r.attempts,
        last_attempt=seconds(r.last_attempt_ms),
        last_error=r.last_error,
        delivered=seconds(r.delivered_ms),
        failed=seconds(r.failed_ms),
        claimed_until=seconds(r.claim_until_ms),
        kind=r.kind,
        host=r.host,
        severity=r.severity,
        ts=r.event_ms / 1000,
        channel=r.channel,
        receiver=r.receiver,
    )


# -- the claim protocol -------------------------------------------------------------


def claim_mail(
    conn: Connection, ids: Sequence[int], token: str, *, now: float, lease: float
) -> bool:
    """Claim waiting outbox rows ``ids`` for ``lease`` seconds, all or none.

    False when any of them is delivered, a dead letter, or claimed by another
    sender whose lease has not run out: that sender is delivering it.
    """
    o, now_ms = outbox_table, ms(now)
    claimable = and_(
        o.c.delivered_ms.is_(None),
        o.c.failed_ms.is_(None),
        or_(o.c.claim_until_ms.is_(None), o.c.claim_until_ms < now_ms),
    )
    free: set[int] = set()
    for chunk in chunks(ids):
        query = select(o.c.id).where(o.c.id.in_(chunk), claimable).with_for_update()
        free.update(conn.execute(query).scalars())
    if free != set(ids):
        return False
    for chunk in chunks(ids):
        conn.execute(
            o.update()
            .where(o.c.id.in_(chunk))
            .values(claim=token, claim_until_ms=now_ms + ms(lease))
        )
    return True


def mail_delivered(conn: Connection, ids: Sequence[int], token: str, *, now: float) -> bool:
    """Mark outbox rows delivered (the SMTP server accepted them) and release them.

    Only rows still claimed with ``token`` count: False when another sender
    took any of them over (our lease ran out), which is then left to it.
    """
    o, now_ms = outbox_table, ms(now)
    marked = 0
    for chunk in chunks(ids):
        marked += conn.execute(
            o.update()
            .where(o.c.id.in_(chunk), o.c.delivered_ms.is_(None), o.c.claim == token)
            .values(
                delivered_ms=now_ms,
                attempts=o.c.attempts + 1,
                last_attempt_ms=now_ms,
                claim=None,
                claim_until_ms=None,
            )
        ).rowcount
    return marked == len(ids)


def mail_failed(
    conn: Connection,
    ids: Sequence[int],
    token: str,
    *,
    now: float,
    error: str,
    permanent: bool = False,
) -> bool:
    """Record a failed attempt on outbox rows: one more attempt, ``error``, released.

    ``permanent`` makes them dead letters (``failed``): never tried again
    until ``retry_mail``.  Rows another sender holds a live claim on are
    left alone; False when that left any row out.
    """
    o, now_ms = outbox_table, ms(now)
    ours = or_(o.c.claim == token, o.c.claim_until_ms.is_(None), o.c.claim_until_ms < now_ms)
    values: dict[str, Any] = {
        "attempts": o.c.attempts + 1,
        "last_attempt_ms": now_ms,
        "last_error": error,
        "claim": None,
        "claim_until_ms": None,
    }
    if permanent:
        values["failed_ms"] = now_ms
    marked = 0
    for chunk in chunks(ids):
        marked += conn.execute(
            o.update().where(o.c.id.in_(chunk), o.c.delivered_ms.is_(None), ours).values(**values)
        ).rowcount
    return marked == len(ids)


def release_mail(conn: Connection, ids: Sequence[int], token: str) -> None:
    """Give up our claim on outbox rows without counting an attempt (interrupted)."""
    o = outbox_table
    for chunk in chunks(ids):
        conn.execute(
            o.update()
            .where(o.c.id.in_(chunk), o.c.claim == token)
            .values(claim=None, claim_until_ms=None)
        )


# -- by hand: `alerts outbox drop|retry` ----------------------------------------------


def drop_mail(conn: Connection, ids: Sequence[int]) -> OutboxChange:
    """Delete undelivered outbox rows ``ids``, all or none.

    When any id names no undelivered mail, nothing is deleted and
    ``unknown`` lists those ids.
    """
    o = outbox_table
    found = _undelivered_ids(conn, ids)
    unknown = tuple(sorted(set(ids) - set(found)))
    if unknown:
        return OutboxChange(unknown=unknown)
    for chunk in chunks(sorted(found)):
        conn.execute(o.delete().where(o.c.id.in_(chunk)))
    return OutboxChange(changed=tuple(sorted(found)))


def retry_mail(conn: Connection, ids: Sequence[int]) -> OutboxChange:
    """Put dead letters ``ids`` back in the queue, all or none (see ``drop_mail``).

    ``changed`` are the dead letters made pending again; ``unchanged`` the
    ids that were waiting already.
    """
    o = outbox_table
    found = _undelivered_ids(conn, ids)
    unknown = tuple(sorted(set(ids) - set(found)))
    if unknown:
        return OutboxChange(unknown=unknown)
    dead = sorted(i for i, failed in found.items() if failed)
    for chunk in chunks(dead):
        conn.execute(o.update().where(o.c.id.in_(chunk)).values(failed_ms=None))
    waiting = sorted(i for i, failed in found.items() if not failed)
    return OutboxChange(changed=tuple(dead), unchanged=tuple(waiting))


def _undelivered_ids(conn: Connection, ids: Sequence[int]) -> dict[int, bool]:
    """Which of ``ids`` are undelivered outbox rows: id -> is a dead letter; locked (PostgreSQL)."""
    o = outbox_table
    found: dict[int, bool] = {}
    for chunk in chunks(sorted(set(ids))):
        query = (
            select(o.c.id, o.c.failed_ms)
            .where(o.c.id.in_(chunk), o.c.delivered_ms.is_(None))
            .with_for_update()
        )
        found.update((row.id, row.failed_ms is not None) for row in conn.execute(query))
    return found
