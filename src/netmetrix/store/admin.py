"""Housekeeping on a Store: info, prune, vacuum, upgrade, and retention in ``execute``.

Pruning deletes in bounded batches (``BATCH_ROWS`` samples per transaction),
so a large prune never holds the write lock for long: on SQLite, between two
batches, the pruner pauses as long as the batch took, which lets a collector
waiting on its busy timeout in; on PostgreSQL, deletes take row locks only
and collectors insert newer rows, so nobody waits.  Two processes pruning
one PostgreSQL database at once take turns per batch (an advisory lock).

Series rows are never deleted, only samples: a collector may be about to add
a sample to any series, and a series costs one small row.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, func, inspect, select, text, tuple_
from sqlalchemy.engine import Connection

from netmetrix.errors import StoreError
from netmetrix.format import iso
from netmetrix.store import hosts, migrate, rwqueue
from netmetrix.store.facade import Store
from netmetrix.store.files import sqlite_path
from netmetrix.store.schema import remote_write_queue_table, samples_table, series_table

log = logging.getLogger(__name__)

BATCH_ROWS = 10_000  # samples deleted per transaction
DAY = 86_400.0  # seconds
_SERIES_CHUNK = 500  # series ids per IN (...) list
_MAX_PAUSE = 1.0  # seconds a SQLite pruner rests between batches, at most
_PG_PRUNE_LOCK = 0x6E6D7870  # "nmxp": pg_advisory_xact_lock key held by each prune batch


@dataclass(frozen=True, slots=True, kw_only=True)
class DbInfo:
    url: str  # password hidden
    backend: str  # sqlite | postgresql
    collector_id: str | None  # names this store's key/state files on the hosts; None: no schema
    schema_version: str | None  # None: no schema yet
    schema_head: str | None  # the newest this netmetrix knows
    series: int
    samples: int
    size_bytes: int | None  # None when unknown (SQLite in memory)
    oldest: float | None  # unix seconds of the oldest sample
    newest: float | None
    remote_write_backlog: int | None  # samples queued for remote-write; None: older schema
    # collector ("db1 (2/3)") -> the hosts whose last run it collected, most first (#15)
    collectors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneResult:
    deleted: int
    cutoff: float  # unix seconds: samples older than this were deleted
    batches: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VacuumResult:
    size_before: int | None  # bytes
    size_after: int | None


def info(store: Store) -> DbInfo:
    """What is in the store and how big it is; reads only (the schema is left as it is)."""
    version = store.schema_version()
    series = samples = 0
    oldest = newest = None
    collectors: dict[str, int] = {}
    if version is not None:
        s, p = series_table, samples_table
        first = select(p.c.ts_ms).where(p.c.series_id == s.c.id).order_by(p.c.ts_ms)
        last = select(p.c.ts_ms).where(p.c.series_id == s.c.id).order_by(p.c.ts_ms.desc())
        # one primary-key descent per series for each end, not a scan of every sample
        ends = select(
            func.count(),
            func.min(first.limit(1).scalar_subquery()),
            func.max(last.limit(1).scalar_subquery()),
        ).select_from(s)
        with store.reading("read database statistics") as conn:
            series, oldest_ms, newest_ms = conn.execute(ends).one()
            samples = conn.execute(select(func.count()).select_from(p)).scalar_one()
            # `db info` does not upgrade: an older schema has no hosts.collector yet
            if any(c["name"] == "collector" for c in inspect(conn).get_columns("hosts")):
                collectors = dict(hosts.collectors(conn))
        oldest = None if oldest_ms is None else oldest_ms / 1000
        newest = None if newest_ms is None else newest_ms / 1000
    return DbInfo(
        remote_write_backlog=_remote_write_backlog(store) if version is not None else None,
        url=store.url_display,
        backend=store.engine.dialect.name,
        collector_id=store.find_collector_id() if version is not None else None,
        schema_version=version,
        schema_head=migrate.schema_head(),
        series=series,
        samples=samples,
        size_bytes=size_bytes(store),
        oldest=oldest,
        newest=newest,
        collectors=collectors,
    )


def _remote_write_backlog(store: Store) -> int | None:
    """Samples queued for remote-write; None when the schema predates the queue (``db
    info`` does not upgrade it)."""
    with store.reading("count the remote-write queue") as conn:
        if not inspect(conn).has_table(remote_write_queue_table.name):
            return None
        return rwqueue.backlog(conn)


def size_bytes(store: Store) -> int | None:
    """Bytes on disk: the SQLite file plus its WAL, or ``pg_database_size``."""
    if store.engine.dialect.name == "postgresql":
        with store.reading("read the database size") as conn:
            size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
            return int(size)
    database = sqlite_path(store.engine.url)
    if database is None:
        return None
    total = 0
    for path in (database, Path(f"{database}-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(path).st_size
    return total


def prune(
    store: Store,
    older_than: float,
    *,
    now: float | None = None,
    batch: int = BATCH_ROWS,
    pause: float | None = None,
) -> PruneResult:
    """Delete the samples older than ``older_than`` seconds before ``now``, in batches.

    A sample exactly ``older_than`` old stays.  ``pause`` is seconds to rest
    between batches; None means as long as the batch took on SQLite (at most
    1 s) and none on PostgreSQL.  Raises StoreError.
    """
    if older_than <= 0:
        raise ValueError(f"older_than must be > 0 seconds, got {older_than!r}")
    cutoff = (time.time() if now is None else now) - older_than
    cutoff_ms = round(cutoff * 1000)
    s, p = series_table, samples_table
    oldest = select(p.c.ts_ms).where(p.c.series_id == s.c.id).order_by(p.c.ts_ms).limit(1)
    with store.reading("find samples to prune") as conn:
        ids = list(
            conn.execute(
                select(s.c.id).where(oldest.scalar_subquery() < cutoff_ms).order_by(s.c.id)
            ).scalars()
        )
    postgres = store.engine.dialect.name == "postgresql"
    deleted = batches = 0
    for start in range(0, len(ids), _SERIES_CHUNK):
        chunk = ids[start : start + _SERIES_CHUNK]
        while True:
            began = time.monotonic()
            with store.writing(f"prune samples before {iso(cutoff)}") as conn:
                done = _delete_batch(conn, chunk, cutoff_ms, batch, postgres)
            deleted += done
            batches += 1
            if done < batch:
                break
            rest = pause if pause is not None else 0.0 if postgres else time.monotonic() - began
            if rest > 0:
                time.sleep(min(rest, _MAX_PAUSE))
    return PruneResult(deleted=deleted, cutoff=cutoff, batches=batches)


def _delete_batch(
    conn: Connection, series_ids: list[int], cutoff_ms: int, limit: int, postgres: bool
) -> int:
    """Delete at most ``limit`` samples of ``series_ids`` older than ``cutoff_ms``."""
    if postgres:  # take turns with another pruner: see the module docstring
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_PRUNE_LOCK})
    p = samples_table
    victims = (
        select(p.c.series_id, p.c.ts_ms)
        .where(p.c.series_id.in_(series_ids), p.c.ts_ms < cutoff_ms)
        .limit(limit)
    )
    result = conn.execute(delete(p).where(tuple_(p.c.series_id, p.c.ts_ms).in_(victims)))
    return int(result.rowcount)


def apply_retention(store: Store, days: int, *, now: float | None = None) -> int:
    """Prune samples older than ``days`` (``<retention days>``); return how many went.

    Called at the end of ``execute``: a failure is logged as a warning and
    does not fail the run, whose samples are already stored.
    """
    try:
        result = prune(store, days * DAY, now=now)
    except StoreError as err:
        log.warning("retention: could not prune samples older than %d days: %s", days, err)
        return 0
    except Exception as err:  # housekeeping never ends a run whose samples are stored
        log.warning(
            "retention: could not prune samples older than %d days: %s: %s",
            days,
            type(err).__name__,
            err,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        return 0
    if result.deleted:
        log.info(
            "retention: pruned %d samples older than %d days (before %s)",
            result.deleted,
            days,
            iso(result.cutoff),
        )
    return result.deleted


def vacuum(store: Store) -> VacuumResult:
    """Give free space back: SQLite ``VACUUM`` and a WAL checkpoint; PostgreSQL
    ``VACUUM (ANALYZE)``, which does not lock out collectors (unlike VACUUM FULL)."""
    before = size_bytes(store)
    doing = "vacuum the database"
    if store.engine.dialect.name == "postgresql":
        with store.reading(doing) as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM (ANALYZE)"))
    else:
        # VACUUM cannot run in a transaction: use the DB-API connection, in autocommit mode
        with store.reading(doing) as conn:
            raw = conn.connection.dbapi_connection
            assert isinstance(raw, sqlite3.Connection)
            try:
                for statement in ("VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)", "PRAGMA optimize"):
                    raw.execute(statement).close()
            except sqlite3.Error as err:
                raise StoreError(f"database {store.url_display}: cannot {doing}: {err}") from None
    return VacuumResult(size_before=before, size_after=size_bytes(store))


def upgrade(store: Store) -> tuple[str | None, str | None]:
    """Alembic ``upgrade head``; return the schema version before and after."""
    return store.upgrade()
