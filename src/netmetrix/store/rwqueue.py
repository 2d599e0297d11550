"""The remote-write queue: samples waiting to be pushed, and the sender's lease (#15).

Rows are queued by ``samples.write_runs`` in the transaction that stores the
samples, so a sample is queued if and only if it is stored.  Sending is one
batch at a time, oldest first, by whoever holds the lease: a token with an
expiry on the one ``remote_write_lease`` row, taken under that row's lock
(SQLite's BEGIN IMMEDIATE, PostgreSQL's SELECT ... FOR UPDATE), renewed before
each batch and released at the end, as an outbox claim is.  Two collectors on
one PostgreSQL thus never send the same rows at once, and never send a
series' samples out of order (a receiver refuses an older sample after a newer
one); a sender that dies leaves a lease that runs out by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from netmetrix.store._sql import executemany, insert, ms
from netmetrix.store.schema import (
    REMOTE_WRITE_SENDER,
    remote_write_lease_table,
    remote_write_queue_table,
    series_table,
)


class QueuedSample(NamedTuple):
    """One queued sample with its series; host, metric and labels are None when the
    series was deleted since (``hosts forget``): such a row is dropped, not sent."""

    id: int
    host: str | None
    metric: str | None
    labels: str | None  # canonical JSON
    ts_ms: int
    value: float


def queue(conn: Connection, rows: Sequence[tuple[int, int, float]]) -> int:
    """Queue (series_id, ts_ms, value) rows; how many."""
    if not rows:
        return 0
    stmt = remote_write_queue_table.insert()
    executemany(conn, stmt, ("series_id", "ts_ms", "value"), rows)
    return len(rows)


def backlog(conn: Connection) -> int:
    """How many samples wait to be sent."""
    query = select(func.count()).select_from(remote_write_queue_table)
    return int(conn.execute(query).scalar_one())


def oldest(conn: Connection, limit: int) -> list[QueuedSample]:
    """The ``limit`` oldest queued samples (by id: the order they were stored in)."""
    q, s = remote_write_queue_table, series_table
    query = (
        select(q.c.id, s.c.host, s.c.metric, s.c.labels, q.c.ts_ms, q.c.value)
        .select_from(q.outerjoin(s, s.c.id == q.c.series_id))
        .order_by(q.c.id)
        .limit(limit)
    )
    return [QueuedSample._make(row) for row in conn.execute(query).all()]


def delete(conn: Connection, ids: Sequence[int]) -> int:
    """Delete queued samples by id (sent, or refused for good); how many went.

    By id, not by range: on PostgreSQL a row with an id inside the batch's range may
    commit after the batch was read, and must stay.  One statement compiled once,
    through the driver's executemany: a batch's 5,000 ids as IN lists cost more
    to compile than to run.
    """
    q = remote_write_queue_table
    stmt = q.delete().where(q.c.id == bindparam("id"))
    return executemany(conn, stmt, ("id",), [(i,) for i in ids])


def trim(conn: Connection, keep: int) -> int:
    """Delete the oldest queued samples beyond the newest ``keep``; how many went."""
    q = remote_write_queue_table
    excess = backlog(conn) - keep
    if excess <= 0:
        return 0
    first_kept = conn.execute(select(q.c.id).order_by(q.c.id).offset(excess).limit(1)).scalar()
    if first_kept is None:  # emptied meanwhile (PostgreSQL: another sender)
        return 0
    return int(conn.execute(q.delete().where(q.c.id < first_kept)).rowcount)


def take_lease(conn: Connection, token: str, *, now: float, lease: float) -> bool:
    """Hold (or renew) the sender's lease with ``token`` for ``lease`` seconds; False when
    another sender holds a lease that has not run out."""
    row = _locked_lease(conn)
    if row is None:  # the migration made the row; someone deleted it
        conn.execute(
            insert(conn.dialect.name, remote_write_lease_table).on_conflict_do_nothing(
                index_elements=["name"]
            ),
            {"name": REMOTE_WRITE_SENDER},
        )
        row = _locked_lease(conn)
        assert row is not None
    holder, until_ms = row
    now_ms = ms(now)
    if holder is not None and holder != token and until_ms is not None and until_ms >= now_ms:
        return False
    lease_row = remote_write_lease_table
    conn.execute(
        lease_row.update()
        .where(lease_row.c.name == REMOTE_WRITE_SENDER)
        .values(token=token, until_ms=now_ms + ms(lease))
    )
    return True


def release_lease(conn: Connection, token: str) -> None:
    """Give the lease up, if ``token`` still holds it."""
    lease_row = remote_write_lease_table
    conn.execute(
        lease_row.update()
        .where(lease_row.c.name == REMOTE_WRITE_SENDER, lease_row.c.token == token)
        .values(token=None, until_ms=None)
    )


def _locked_lease(conn: Connection) -> tuple[str | None, int | None] | None:
    """(token, until_ms) of the lease row, locked until the transaction ends."""
    lease_row = remote_write_lease_table
    query = (
        select(lease_row.c.token, lease_row.c.until_ms)
        .where(lease_row.c.name == REMOTE_WRITE_SENDER)
        .with_for_update()
    )
    found = conn.execute(query).first()
    return None if found is None else (found[0], found[1])
