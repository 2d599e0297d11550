"""Samples, hosts and host keys in SQLite (default) or PostgreSQL, via SQLAlchemy Core.

Prometheus' data model: a series is (host, metric, labels), a sample is
(series, timestamp, value).  Labels are stored as canonical JSON (sorted keys,
no spaces, ``{}`` for none) so equal label sets are equal strings.  The database
holds integer milliseconds since the epoch; the API takes and returns float
unix seconds.

The schema is made only by the Alembic migrations in ``netmetrix/migrations``
(run by ``Store.open``); the tables below describe it for queries and must
match what the migrations create (a test compares them).

SQLite runs in WAL mode: readers never block the one writer.  Every write
takes the write lock up front (``BEGIN IMMEDIATE``), so a writer waits for
another one for at most the busy timeout and then fails cleanly with a
``StoreError``, instead of failing mid-transaction on a lock upgrade.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import json
import logging
import math
import os
import re
import secrets
import socket
import sqlite3
import stat
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Double,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    create_engine,
    event,
    exc,
    func,
    inspect,
    make_url,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.elements import Label

from netmetrix.errors import NetmetrixError, Outcome, StoreError
from netmetrix.format import iso
from netmetrix.model import UP, AlertEvent, AlertState, HostRun, Labels, Point, StateKey, points
from netmetrix.sanitize import clean

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT = 10.0  # seconds a writer waits for another one's lock
NO_LABELS = "{}"
KEY_STATES = ("active", "pending")
_CHUNK = 500  # bound parameters per IN (...) list; old SQLite allows 999
_MIGRATIONS = "netmetrix:migrations"
_PG_MIGRATION_LOCK = 0x6E6D78  # "nmx": pg_advisory_xact_lock key held while migrating
_PG_UPLOAD_LOCK = 0x6E6D7875  # "nmxu": pg_advisory_lock key held by a running upload
COLLECTOR_ID = "collector_id"  # meta key: names this store's key/state files on the hosts
_WRITE = "netmetrix_write"  # execution option: open the transaction with the write lock

SeriesKey = tuple[str, str, str]  # host, metric, labels JSON

# Constraint names are fixed here so later migrations can name what they alter.
metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    }
)

hosts_table = Table(
    "hosts",
    metadata,
    Column("name", Text, nullable=False),
    Column("address", Text),
    Column("last_seen_ms", BigInteger),  # last run that answered and verified
    Column("last_error", Text),  # NULL since the last good run
    Column("probe_version", Text),
    Column("updated_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("name"),
)

host_keys_table = Table(
    "host_keys",
    metadata,
    Column("host", Text, nullable=False),
    Column("kid", Text, nullable=False),
    Column("key", LargeBinary, nullable=False),
    Column("state", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("host", "kid"),
    CheckConstraint("state IN ('active', 'pending')", name="state"),
)

# Facts about the store itself (#11): ``collector_id``.
meta_table = Table(
    "meta",
    metadata,
    Column("key", Text, nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("key"),
)

series_table = Table(
    "series",
    metadata,
    Column("id", Integer, autoincrement=True),
    Column("host", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("labels", Text, nullable=False),  # canonical JSON, "{}" when none
    PrimaryKeyConstraint("id"),
    UniqueConstraint("host", "metric", "labels"),
    sqlite_autoincrement=True,  # never reuse an id, like a PostgreSQL sequence
)

samples_table = Table(
    "samples",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("value", Double, nullable=False),
    # (series_id, ts_ms) serves both "latest per series" and "range of one series".
    PrimaryKeyConstraint("series_id", "ts_ms"),
    sqlite_with_rowid=False,  # the primary key is the table: no second b-tree
)

# Alerts (#7): state per (rule, series), the alert history, the mail outbox.
alert_state_table = Table(
    "alert_state",
    metadata,
    Column("rule_id", Text, nullable=False),  # alerts.rule_id
    Column("host", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("labels", Text, nullable=False),
    Column("state", Text, nullable=False),  # pending | firing; ok has no row
    Column("breaches", Integer, nullable=False),  # consecutive samples past the limit
    Column("since_ms", BigInteger, nullable=False),  # first of them
    Column("fired_ms", BigInteger),
    Column("notified_ms", BigInteger),  # last ALERT mail, for `repeat`
    Column("value", Double, nullable=False),  # latest value
    Column("ts_ms", BigInteger, nullable=False),  # latest sample evaluated
    Column("rule", Text, nullable=False),  # alerts.rule_text, for people
    Column("severity", Text, nullable=False),
    PrimaryKeyConstraint("rule_id", "host", "metric", "labels"),
    CheckConstraint("state IN ('pending', 'firing')", name="state"),
)

alert_events_table = Table(
    "alert_events",
    metadata,
    Column("id", Integer, autoincrement=True),
    Column("ts_ms", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
    Column("rule_id", Text, nullable=False),
    Column("rule", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("host", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("labels", Text, nullable=False),
    Column("value", Double, nullable=False),
    Column("since_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("id"),
    CheckConstraint("kind IN ('firing', 'repeat', 'resolved')", name="kind"),
    sqlite_autoincrement=True,
)

outbox_table = Table(
    "outbox",
    metadata,
    Column("id", Integer, autoincrement=True),
    Column("event_id", Integer, ForeignKey("alert_events.id", ondelete="CASCADE"), nullable=False),
    Column("recipient", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_attempt_ms", BigInteger),
    Column("last_error", Text),
    Column("delivered_ms", BigInteger, index=True),  # NULL until the server accepted it
    Column("claim", Text),  # the delivering process's token, while it sends
    Column("claim_until_ms", BigInteger),
    Column("failed_ms", BigInteger),  # a dead letter: the server refused it for good (#10)
    PrimaryKeyConstraint("id"),
    sqlite_autoincrement=True,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """A host whose data the database would not take; it was stored as a failed run."""

    host: str
    reason: str  # one clean line, e.g. "the database refused this host's data: ..."


@dataclass(frozen=True, slots=True, kw_only=True)
class Written:
    """What ``Transaction.write_runs`` stored."""

    samples: int
    refused: tuple[Refused, ...] = ()  # stored as failed runs (up 0, last_error) instead
    # the runs as stored (a refused host's as a failed run); what was written is the counts
    runs: tuple[HostRun, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Activated:
    """What ``activate_keys`` did, host by host."""

    activated: tuple[str, ...] = ()  # hosts whose key is now their only one
    missing: tuple[str, ...] = ()  # hosts that no longer had the key (nothing changed for them)


class UploadRunning(NetmetrixError):
    """Another process holds this store's upload lock (exit 1: run upload again later)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredSample:
    host: str
    metric: str
    labels: dict[str, str]
    ts: float  # unix seconds
    value: float


@dataclass(frozen=True, slots=True, kw_only=True)
class HostRow:
    name: str
    address: str | None
    last_seen: float | None  # unix seconds of the last good run
    last_error: str | None
    probe_version: str | None
    up: float | None  # latest `up` sample


def labels_json(labels: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """Canonical JSON of a label set: sorted keys, no spaces, ``{}`` when empty."""
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=4096)
def _sample_labels_json(labels: tuple[tuple[str, str], ...]) -> str:
    """labels_json for Sample.labels: a fleet repeats the same few label sets."""
    return labels_json(labels)


SCHEMA_HEAD = "0004"  # the head migration; a test keeps the two equal


def _alembic_config() -> Any:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", _MIGRATIONS)
    cfg.set_main_option("path_separator", "os")
    return cfg


class Store:
    """The metrics database; make one with ``Store.open(url)``."""

    def __init__(
        self,
        engine: Engine,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        url_display: str | None = None,
    ) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{_WRITE: True})
        self._busy_timeout = busy_timeout
        self._url_display = url_display or engine.url.render_as_string(hide_password=True)

    @classmethod
    def open(
        cls, url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, upgrade: bool = True
    ) -> Store:
        """Connect to ``url`` and bring its schema up to date (unless ``upgrade`` is False).

        ``busy_timeout`` (seconds) is how long a write waits for another
        process's SQLite write lock.  Raises StoreError.
        """
        try:
            parsed = make_url(url)
        except exc.ArgumentError:
            raise StoreError(f"invalid database URL {_redact(url)!r}") from None
        display = parsed.render_as_string(hide_password=True)
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise StoreError(f"database {display}: unsupported, use sqlite:/// or postgresql://")
        if backend == "sqlite":
            _make_private_file(parsed, display)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(
                drivername="postgresql+psycopg"
            )  # what netmetrix[postgres] installs
        try:
            engine = create_engine(parsed)
        except (ImportError, exc.ArgumentError) as err:
            hint = " (pip install 'netmetrix[postgres]')" if backend == "postgresql" else ""
            raise StoreError(f"database {display}: no driver: {err}{hint}") from None
        if backend == "sqlite":
            _configure_sqlite(engine, busy_timeout)
        store = cls(engine, busy_timeout=busy_timeout, url_display=display)
        try:
            if upgrade:
                store._upgrade()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def url_display(self) -> str:
        """The database URL with any password hidden."""
        return self._url_display

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for tests and for queries this class does not offer."""
        return self._engine

    def schema_version(self) -> str | None:
        """The Alembic revision the database is at; None before the first migration."""
        # Read alembic's table directly: importing alembic costs ~90 ms of CPU per run.
        with self._guard("read the schema version"), self._engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            return rows[0] if len(rows) == 1 else None

    # -- keys ----------------------------------------------------------------

    def host_keys(self, hosts: Iterable[str]) -> dict[str, dict[str, bytes]]:
        """Host -> {kid: key} for ``hosts``, active and pending keys both; keyless hosts absent."""
        t = host_keys_table
        found: dict[str, dict[str, bytes]] = {}
        with self._guard("read host keys"), self._engine.connect() as conn:
            for chunk in _chunks(sorted(set(hosts))):
                rows = conn.execute(select(t.c.host, t.c.kid, t.c.key).where(t.c.host.in_(chunk)))
                for host, kid, key in rows:
                    found.setdefault(host, {})[kid] = bytes(key)
        return found

    def add_pending_key(self, host: str, kid: str, key: bytes) -> None:
        """Add ``key`` as one of ``host``'s pending keys (see ``add_pending_keys``)."""
        self.add_pending_keys([(host, kid, key)])

    def add_pending_keys(self, items: Sequence[tuple[str, str, bytes]]) -> None:
        """Add (host, kid, key) entries as pending keys, in one transaction.

        Nothing is removed: the active key and earlier pending keys stay until a
        key is activated, because an upload that crashed after replacing the
        remote key file left that host holding one of them.  Adding a key the
        host already has changes nothing.
        """
        t = host_keys_table
        with self._guard("add host keys"), self._writer.begin() as conn:
            for host, kid, key in items:
                old = conn.execute(
                    select(t.c.key).where(t.c.host == host, t.c.kid == kid)
                ).scalar_one_or_none()
                if old is not None:
                    if bytes(old) != key:
                        raise StoreError(f'host "{host}": key id {kid!r} already names another key')
                    continue
                conn.execute(
                    t.insert().values(
                        host=host, kid=kid, key=key, state="pending", created_ms=_now_ms()
                    )
                )

    def activate_key(self, host: str, kid: str) -> None:
        """Make ``kid`` the host's only key; StoreError if the host has no such key."""
        if self.activate_keys([(host, kid)]).missing:
            raise StoreError(f'host "{host}": no key {kid!r} to activate (upload again)')

    def activate_keys(
        self, pairs: Sequence[tuple[str, str]], *, pending_only: bool = False
    ) -> Activated:
        """Make each (host, kid) its host's only key, state active, in one transaction.

        Host by host: a host that no longer has that key (another upload
        replaced it, or the host was forgotten) keeps its keys as they are and
        is reported in ``missing``; the other hosts are activated all the same.
        ``pending_only`` (execute settling on the key a host used) leaves a host
        whose ``kid`` is already active alone, pending keys included: an upload
        running at the same time may be about to activate one of them.
        """
        t = host_keys_table
        done: list[str] = []
        missing: list[str] = []
        with self._guard("activate host keys"), self._writer.begin() as conn:
            for host, kid in pairs:
                match = and_(t.c.host == host, t.c.kid == kid)
                if pending_only:
                    match = and_(match, t.c.state == "pending")
                    if not conn.execute(t.update().where(match).values(state="active")).rowcount:
                        continue  # already active, or gone: nothing to settle
                elif conn.execute(t.update().where(match).values(state="active")).rowcount != 1:
                    missing.append(host)
                    continue
                conn.execute(t.delete().where(t.c.host == host, t.c.kid != kid))
                done.append(host)
        return Activated(activated=tuple(done), missing=tuple(missing))

    # -- collector identity and the upload lock (#11) --------------------------

    def find_collector_id(self) -> str | None:
        """This store's collector id, or None when the schema predates it (reads only)."""
        with self._guard("read the collector id"), self._engine.connect() as conn:
            if not inspect(conn).has_table(meta_table.name):
                return None
            return _read_meta(conn, COLLECTOR_ID)

    def collector_id(self) -> str:
        """This store's collector id: it names the key and state files on the hosts.

        Made once, by migration 0004; made here if that row is gone (by an
        insert that keeps whichever of two racing processes wrote first).
        """
        found = self.find_collector_id()
        if found is not None:
            return found
        with self._guard("make the collector id"), self._writer.begin() as conn:
            conn.execute(
                _insert(conn.dialect.name, meta_table).on_conflict_do_nothing(
                    index_elements=["key"]
                ),
                {"key": COLLECTOR_ID, "value": new_collector_id()},
            )
            made = _read_meta(conn, COLLECTOR_ID)
        assert made is not None  # inserted or kept in this very transaction
        return made

    @contextmanager
    def upload_lock(self) -> Iterator[None]:
        """Hold this store's upload lock while the block runs.

        Raises UploadRunning, naming the holder's pid and start time, when
        another upload holds it: two uploads at once would each store keys the
        other one then overwrites on the hosts.  SQLite: an flock on
        ``<database>.upload-lock`` (0600, holding "pid start"); PostgreSQL: a
        session advisory lock on a connection of its own, whose
        application_name carries pid, start and machine for the message.
        A process that dies loses the lock with its file descriptor or
        connection: nothing stale is left behind.
        """
        if self._engine.dialect.name == "postgresql":
            with self._pg_upload_lock():
                yield
            return
        path = _sqlite_lock_path(self._engine.url)
        if path is None:  # in memory: no other process can share it
            yield
            return
        with _file_lock(path, self.url_display):
            yield

    @contextmanager
    def _pg_upload_lock(self) -> Iterator[None]:
        started = time.time()
        name = f"netmetrix upload pid={os.getpid()} at={started:.0f} on={socket.gethostname()}"
        doing = "take the upload lock"
        with self._guard(doing):
            conn = self._engine.connect()
        try:
            with self._guard(doing):
                conn.execute(
                    text("SELECT set_config('application_name', :name, false)"),
                    {"name": name[:63]},  # NAMEDATALEN: longer names are cut
                )
                got = conn.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": _PG_UPLOAD_LOCK}
                ).scalar_one()
                holder = None if got else conn.execute(_PG_HOLDER, {"key": _PG_UPLOAD_LOCK}).first()
                conn.commit()  # session lock: kept, with no transaction left open
            if not got:
                raise UploadRunning(_running(self.url_display, *_pg_holder(holder)))
            yield
        finally:
            # Closing the connection releases the lock and forgets the application_name.
            conn.invalidate()
            conn.close()

    # -- runs ----------------------------------------------------------------

    @contextmanager
    def transaction(self, doing: str) -> Iterator[Transaction]:
        """One write transaction (SQLite: BEGIN IMMEDIATE), committed when the block ends.

        What collect writes of a run (samples, host rows, alert state, history,
        outbox) goes through one of these, so it commits together or not at
        all.  A database error becomes a StoreError naming ``doing``.
        """
        with self._guard(doing), self._writer.begin() as conn:
            yield Transaction(conn)

    def record_runs(self, runs: Sequence[HostRun]) -> Written:
        """Store a batch of host runs in a transaction of its own (``Transaction.write_runs``)."""
        if not runs:
            return Written(samples=0)
        with self.transaction(f"store {len(runs)} host run(s)") as tx:
            return tx.write_runs(runs)

    def update_hosts(self, runs: Sequence[HostRun]) -> None:
        """Update only the host rows of ``runs`` (``Transaction.update_hosts``)."""
        if runs:
            with self.transaction(f"update {len(runs)} host(s)") as tx:
                tx.update_hosts(runs)

    # -- queries -------------------------------------------------------------

    def latest(self, hosts: Sequence[str] = (), metrics: Sequence[str] = ()) -> list[StoredSample]:
        """The newest sample of every matching series, by host, metric, labels.

        Empty ``hosts`` or ``metrics`` means all of them.
        """
        s = series_table
        query = select(s.c.host, s.c.metric, s.c.labels, _newest(s, "ts_ms"), _newest(s, "value"))
        if metrics:
            query = query.where(s.c.metric.in_(sorted(set(metrics))))
        queries = (
            [query.where(s.c.host.in_(chunk)) for chunk in _chunks(sorted(set(hosts)))]
            if hosts
            else [query]
        )
        found: list[StoredSample] = []
        with self._guard("read the latest samples"), self._engine.connect() as conn:
            for q in queries:
                found.extend(
                    _stored(host, metric, labels, ts_ms, value)
                    for host, metric, labels, ts_ms, value in conn.execute(q)
                    if ts_ms is not None
                )
        found.sort(key=lambda x: (x.host, x.metric, labels_json(x.labels)))
        return found

    def history(
        self,
        host: str,
        metric: str,
        labels: dict[str, str] | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[StoredSample]:
        """Samples of one metric of one host, oldest first; ``since``/``until`` inclusive.

        ``labels`` None means every series of the metric, else exactly that label set.
        """
        s, p = series_table, samples_table
        query = (
            select(s.c.labels, p.c.ts_ms, p.c.value)
            .select_from(s.join(p, p.c.series_id == s.c.id))
            .where(s.c.host == host, s.c.metric == metric)
            .order_by(p.c.ts_ms)
        )
        if labels is not None:
            query = query.where(s.c.labels == labels_json(labels))
        if since is not None:
            query = query.where(p.c.ts_ms >= _ms(since))
        if until is not None:
            query = query.where(p.c.ts_ms <= _ms(until))
        with self._guard(f'read {metric} history of host "{host}"'), self._engine.connect() as conn:
            rows = sorted(conn.execute(query), key=lambda r: (r[1], r[0]))
        return [_stored(host, metric, lb, ts_ms, value) for lb, ts_ms, value in rows]

    def hosts(self) -> list[HostRow]:
        """Every host the store has seen, by name, with its latest ``up``."""
        h, s = hosts_table, series_table
        is_up = and_(s.c.host == h.c.name, s.c.metric == UP, s.c.labels == NO_LABELS)
        query = select(
            h.c.name,
            h.c.address,
            h.c.last_seen_ms,
            h.c.last_error,
            h.c.probe_version,
            _newest(s, "value"),
        ).select_from(h.outerjoin(s, is_up))
        with self._guard("read hosts"), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return sorted(
            (
                HostRow(
                    name=name,
                    address=address,
                    last_seen=None if seen is None else seen / 1000,
                    last_error=error,
                    probe_version=version,
                    up=up,
                )
                for name, address, seen, error, version, up in rows
            ),
            key=lambda row: row.name,
        )

    # -- names and housekeeping (#4) -------------------------------------------

    def host_names(self) -> set[str]:
        """Every host the store knows of: those with a hosts row or a series."""
        query = select(hosts_table.c.name).union(select(series_table.c.host))
        with self._guard("read host names"), self._engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def metric_names(self) -> set[str]:
        """Every metric name that has a series."""
        query = select(series_table.c.metric).distinct()
        with self._guard("read metric names"), self._engine.connect() as conn:
            return set(conn.execute(query).scalars())

    @staticmethod
    def schema_head() -> str | None:
        """The newest schema version this netmetrix knows (its head migration)."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(_alembic_config()).get_current_head()

    def upgrade(self) -> tuple[str | None, str | None]:
        """Run the migrations up to the head; return the schema version before and after."""
        before = self.schema_version()
        self._upgrade()
        return before, self.schema_version()

    @contextmanager
    def reading(self, doing: str) -> Iterator[Connection]:
        """A connection to read with; a database error becomes a StoreError naming ``doing``."""
        with self._guard(doing), self._engine.connect() as conn:
            yield conn

    @contextmanager
    def writing(self, doing: str) -> Iterator[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE) committed at the end; errors as above."""
        with self._guard(doing), self._writer.begin() as conn:
            yield conn

    # -- internals -----------------------------------------------------------

    def _upgrade(self) -> None:
        """Run ``alembic upgrade head`` unless the database is already there."""
        current = self.schema_version()
        if current == SCHEMA_HEAD:  # the every-run case: no alembic import
            return
        from alembic import command
        from alembic.script import ScriptDirectory
        from alembic.util import CommandError

        cfg = _alembic_config()
        script = ScriptDirectory.from_config(cfg)
        head = script.get_current_head()
        known = {rev.revision for rev in script.walk_revisions()}
        if current == head:
            return
        if current is not None and current not in known:
            raise StoreError(
                f"database {self.url_display}: schema version {current!r} is unknown "
                "to this netmetrix (written by a newer version?)"
            )
        with self._guard("upgrade the schema"), self._writer.begin() as conn:
            if conn.dialect.name == "postgresql":
                # SQLite's BEGIN IMMEDIATE already serialises two processes migrating at once
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, "head")
            except CommandError as err:
                raise StoreError(f"database {self.url_display}: migration failed: {err}") from None

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Turn database errors into a one-line StoreError naming the database.

        Drivers raise some data errors as plain Python exceptions (sqlite3:
        UnicodeEncodeError for a lone surrogate, OverflowError for a huge int).
        """
        try:
            yield
        except (exc.SQLAlchemyError, UnicodeError, ValueError, OverflowError) as err:
            raise self._error(doing, err) from err

    def _error(self, doing: str, err: Exception) -> StoreError:
        orig = err.orig if isinstance(err, exc.DBAPIError) else err
        if isinstance(orig, sqlite3.OperationalError) and "locked" in str(orig):
            return StoreError(
                f"database {self.url_display} is locked: another process held its write lock "
                f"for over {self._busy_timeout:g} s (the busy timeout); cannot {doing}"
            )
        return StoreError(f"database {self.url_display}: cannot {doing}: {_detail(err)}")

    # -- alerts (#7) ---------------------------------------------------------

    def alerts_active(self, hosts: Sequence[str] = ()) -> list[ActiveAlert]:
        """Every (rule, series) pending or firing: firing first, then by host, series, rule."""
        t = alert_state_table
        query = select(t)
        if hosts:
            query = query.where(t.c.host.in_(sorted(set(hosts))))
        with self._guard("read active alerts"), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        found = [
            ActiveAlert(
                host=r.host,
                metric=r.metric,
                labels=json.loads(r.labels),
                state=r.state,
                value=r.value,
                rule=r.rule,
                severity=r.severity,
                since=r.since_ms / 1000,
                fired=None if r.fired_ms is None else r.fired_ms / 1000,
                ts=r.ts_ms / 1000,
            )
            for r in rows
        ]
        found.sort(key=lambda a: (a.state != "firing", a.host, a.metric, str(a.labels), a.rule))
        return found

    def alert_history(
        self, hosts: Sequence[str] = (), limit: int | None = None
    ) -> list[AlertHistoryRow]:
        """Alert events (fired, repeated, resolved), newest first; ``limit`` caps them.

        Newest by the sample's time: ids follow the order a batch was evaluated
        in (by host), not when each host answered; ties (one sample, several
        rules) newest-inserted first.
        """
        t = alert_events_table
        query = select(t).order_by(t.c.ts_ms.desc(), t.c.id.desc())
        if hosts:
            query = query.where(t.c.host.in_(sorted(set(hosts))))
        if limit is not None:
            query = query.limit(limit)
        with self._guard("read the alert history"), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            AlertHistoryRow(
                id=r.id,
                ts=r.ts_ms / 1000,
                kind=r.kind,
                host=r.host,
                metric=r.metric,
                labels=json.loads(r.labels),
                value=r.value,
                rule=r.rule,
                severity=r.severity,
                since=r.since_ms / 1000,
            )
            for r in rows
        ]

    def outbox(
        self,
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
        query = select(
            o, e.c.kind, e.c.host, e.c.severity, e.c.ts_ms.label("event_ms")
        ).select_from(o.join(e, e.c.id == o.c.event_id))
        if undelivered:
            query = query.where(o.c.delivered_ms.is_(None))
        if hosts:
            query = query.where(e.c.host.in_(sorted(set(hosts))))
        if failed is not None:
            query = query.where(o.c.failed_ms.is_not(None) if failed else o.c.failed_ms.is_(None))
        query = query.order_by(o.c.id.desc() if limit is not None else o.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self._guard("read the outbox"), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        items = [
            OutboxItem(
                id=r.id,
                recipient=r.recipient,
                subject=r.subject,
                body=r.body,
                created=r.created_ms / 1000,
                attempts=r.attempts,
                last_attempt=None if r.last_attempt_ms is None else r.last_attempt_ms / 1000,
                last_error=r.last_error,
                delivered=None if r.delivered_ms is None else r.delivered_ms / 1000,
                failed=None if r.failed_ms is None else r.failed_ms / 1000,
                claimed_until=None if r.claim_until_ms is None else r.claim_until_ms / 1000,
                kind=r.kind,
                host=r.host,
                severity=r.severity,
                ts=r.event_ms / 1000,
            )
            for r in rows
        ]
        return sorted(items, key=lambda item: item.id)

    def claim_mail(self, ids: Sequence[int], token: str, *, now: float, lease: float) -> bool:
        """Claim waiting outbox rows ``ids`` for ``lease`` seconds, all or none.

        False when any of them is delivered, a dead letter, or claimed by another
        sender whose lease has not run out: that sender is delivering it.  Two
        collectors flushing one outbox therefore never send the same mail.
        """
        o, now_ms = outbox_table, _ms(now)
        claimable = and_(
            o.c.delivered_ms.is_(None),
            o.c.failed_ms.is_(None),
            or_(o.c.claim_until_ms.is_(None), o.c.claim_until_ms < now_ms),
        )
        with self._guard("claim outbox mail"), self._writer.begin() as conn:
            free: set[int] = set()
            for chunk in _id_chunks(ids):
                query = select(o.c.id).where(o.c.id.in_(chunk), claimable).with_for_update()
                free.update(conn.execute(query).scalars())
            if free != set(ids):
                return False
            for chunk in _id_chunks(ids):
                conn.execute(
                    o.update()
                    .where(o.c.id.in_(chunk))
                    .values(claim=token, claim_until_ms=now_ms + _ms(lease))
                )
            return True

    def mail_delivered(self, ids: Sequence[int], token: str, *, now: float) -> bool:
        """Mark outbox rows delivered (the SMTP server accepted them) and release them.

        Only rows still claimed with ``token`` count: False when another sender
        took any of them over (our lease ran out), which is then left to it.
        """
        o, now_ms = outbox_table, _ms(now)
        marked = 0
        with self._guard("mark outbox mail delivered"), self._writer.begin() as conn:
            for chunk in _id_chunks(ids):
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
        self,
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
        o, now_ms = outbox_table, _ms(now)
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
        with self._guard("record a failed mail"), self._writer.begin() as conn:
            for chunk in _id_chunks(ids):
                marked += conn.execute(
                    o.update()
                    .where(o.c.id.in_(chunk), o.c.delivered_ms.is_(None), ours)
                    .values(**values)
                ).rowcount
        return marked == len(ids)

    def release_mail(self, ids: Sequence[int], token: str) -> None:
        """Give up our claim on outbox rows without counting an attempt (interrupted)."""
        o = outbox_table
        with self._guard("release outbox mail"), self._writer.begin() as conn:
            for chunk in _id_chunks(ids):
                conn.execute(
                    o.update()
                    .where(o.c.id.in_(chunk), o.c.claim == token)
                    .values(claim=None, claim_until_ms=None)
                )

    def drop_mail(self, ids: Sequence[int]) -> OutboxChange:
        """Delete undelivered outbox rows ``ids``, all or none.

        When any id names no undelivered mail, nothing is deleted and
        ``unknown`` lists those ids.
        """
        o = outbox_table
        with self._guard("drop outbox mail"), self._writer.begin() as conn:
            found = _undelivered_ids(conn, ids)
            unknown = tuple(sorted(set(ids) - set(found)))
            if unknown:
                return OutboxChange(unknown=unknown)
            for chunk in _id_chunks(sorted(found)):
                conn.execute(o.delete().where(o.c.id.in_(chunk)))
        return OutboxChange(changed=tuple(sorted(found)))

    def retry_mail(self, ids: Sequence[int]) -> OutboxChange:
        """Put dead letters ``ids`` back in the queue, all or none (see ``drop_mail``).

        ``changed`` are the dead letters made pending again; ``unchanged`` the
        ids that were waiting already.
        """
        o = outbox_table
        with self._guard("retry outbox mail"), self._writer.begin() as conn:
            found = _undelivered_ids(conn, ids)
            unknown = tuple(sorted(set(ids) - set(found)))
            if unknown:
                return OutboxChange(unknown=unknown)
            dead = sorted(i for i, failed in found.items() if failed)
            for chunk in _id_chunks(dead):
                conn.execute(o.update().where(o.c.id.in_(chunk)).values(failed_ms=None))
        waiting = sorted(i for i, failed in found.items() if not failed)
        return OutboxChange(changed=tuple(dead), unchanged=tuple(waiting))


class Transaction:
    """The writes of one transaction (``Store.transaction``): samples, host rows, alert
    state, alert history and outbox rows.  Collect orchestrates them; nothing here
    evaluates a rule or words a mail."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # -- runs ----------------------------------------------------------------

    def write_runs(self, runs: Sequence[HostRun]) -> Written:
        """Store host runs; report what was written.

        Each run updates its host's row and adds its samples plus ``up`` (1.0
        ok, 0.0 failed) at the run's time.  A sample whose series already has
        one at that millisecond is ignored (the first one stays).

        One host's unwritable data fails that host only: a NaN sample, or a
        row the database refuses (a data error, not a lock or a lost
        connection), makes the batch be written host by host, each in its own
        savepoint; a refused host is stored as a failed run (``up`` 0, the
        reason as ``last_error``) and reported in ``Written.refused``.
        """
        if not runs:
            return Written(samples=0)
        runs, refused = _refuse_nan(runs)
        conn = self._conn
        try:
            with conn.begin_nested():
                count = _write_runs(conn, runs)
            return Written(samples=count, refused=refused, runs=tuple(runs))
        except _ROW_ERRORS as err:
            if not _is_data_error(err):
                raise
            log.debug("a row was refused; storing host by host", exc_info=True)
        count, stored, more = _write_each_host(conn, runs)
        return Written(samples=count, refused=refused + more, runs=tuple(stored))

    def update_hosts(self, runs: Sequence[HostRun]) -> None:
        """Update only the host rows of ``runs`` (address, last error).

        For runs that were cut short (Ctrl-C): no sample, so no `up` = 0 that
        would page someone, and nothing for the alert rules to see.
        """
        if runs:
            conn = self._conn
            conn.execute(_upsert_hosts(conn.dialect.name), _host_rows(runs, _now_ms()))

    def never_seen(self, hosts: Iterable[str]) -> set[str]:
        """Which of ``hosts`` have a row without last_seen: they never answered."""
        h = hosts_table
        found: set[str] = set()
        for chunk in _chunks(sorted(set(hosts))):
            query = select(h.c.name).where(h.c.name.in_(chunk), h.c.last_seen_ms.is_(None))
            found.update(self._conn.execute(query).scalars())
        return found

    def addresses(self, hosts: Iterable[str]) -> dict[str, str]:
        """The stored address of each of ``hosts`` that has one."""
        h = hosts_table
        found: dict[str, str] = {}
        for chunk in _chunks(sorted(set(hosts))):
            query = select(h.c.name, h.c.address).where(h.c.name.in_(chunk))
            found.update((name, address) for name, address in self._conn.execute(query) if address)
        return found

    def recent(
        self, host: str, metric: str, labels: Labels, until: float, limit: int
    ) -> tuple[tuple[float, float], ...]:
        """The last ``limit`` (ts, value) of one series up to ``until``, oldest first."""
        s, p = series_table, samples_table
        query = (
            select(p.c.ts_ms, p.c.value)
            .select_from(s.join(p, p.c.series_id == s.c.id))
            .where(s.c.host == host, s.c.metric == metric, s.c.labels == labels_json(labels))
            .where(p.c.ts_ms <= _ms(until))
            .order_by(p.c.ts_ms.desc())
            .limit(limit)
        )
        rows = self._conn.execute(query).all()
        return tuple((ts_ms / 1000, value) for ts_ms, value in reversed(rows))

    def forget_host(self, name: str) -> tuple[int, int, int, bool]:
        """Delete a host's series, samples, keys and row: (series, samples, keys, had a row).

        Its alert history and outbox stay (mail still to send is sent)."""
        s, p, k, h = series_table, samples_table, host_keys_table, hosts_table
        conn = self._conn
        series = select(s.c.id).where(s.c.host == name).scalar_subquery()
        samples = conn.execute(p.delete().where(p.c.series_id.in_(series))).rowcount
        return (
            conn.execute(s.delete().where(s.c.host == name)).rowcount,
            samples,
            conn.execute(k.delete().where(k.c.host == name)).rowcount,
            conn.execute(h.delete().where(h.c.name == name)).rowcount > 0,
        )

    # -- alert state, history, outbox -------------------------------------------

    def alert_states(
        self, hosts: Iterable[str], rule_ids: Collection[str] | None = None
    ) -> dict[StateKey, AlertState]:
        """The stored states of ``hosts`` (of ``rule_ids`` only, when given)."""
        st = alert_state_table
        found: dict[StateKey, AlertState] = {}
        for chunk in _chunks(sorted(set(hosts))):
            query = select(st).where(st.c.host.in_(chunk))
            if rule_ids is not None:
                query = query.where(st.c.rule_id.in_(sorted(rule_ids)))
            found.update(_state_item(row) for row in self._conn.execute(query))
        return found

    def other_alert_states(
        self, rule_ids: Collection[str], hosts: Collection[str] | None
    ) -> dict[StateKey, AlertState]:
        """The stored states of a rule not in ``rule_ids`` or a host not in ``hosts``
        (None: every host is in it)."""
        st = alert_state_table
        conn = self._conn
        # alert_state holds only the alerts that are not ok: reading its ids and hosts is cheap
        stored_ids = set(conn.execute(select(st.c.rule_id).distinct()).scalars())
        wanted: list[tuple[Any, list[str]]] = [(st.c.rule_id, sorted(stored_ids - set(rule_ids)))]
        if hosts is not None:
            stored_hosts = set(conn.execute(select(st.c.host).distinct()).scalars())
            wanted.append((st.c.host, sorted(stored_hosts - set(hosts))))
        found: dict[StateKey, AlertState] = {}
        for column, values in wanted:
            for chunk in _chunks(values):
                rows = conn.execute(select(st).where(column.in_(chunk)))
                found.update(_state_item(row) for row in rows)
        return found

    def save_alert_states(self, changes: Mapping[StateKey, AlertState | None]) -> None:
        """Write changed states: None deletes the stored one (back to ok), others upsert."""
        st = alert_state_table
        conn = self._conn
        gone = [
            {"r": rid, "h": host, "m": metric, "l": labels_json(labels)}
            for (rid, host, metric, labels), state in changes.items()
            if state is None
        ]
        if gone:
            conn.execute(
                st.delete().where(
                    st.c.rule_id == bindparam("r"),
                    st.c.host == bindparam("h"),
                    st.c.metric == bindparam("m"),
                    st.c.labels == bindparam("l"),
                ),
                gone,
            )
        rows = [_state_row(key, state) for key, state in changes.items() if state is not None]
        if rows:
            # An upsert: another collector may have evaluated the same host just now.
            insert = _insert(conn.dialect.name, st)
            keys = ("rule_id", "host", "metric", "labels")
            update = {c.name: insert.excluded[c.name] for c in st.columns if c.name not in keys}
            conn.execute(insert.on_conflict_do_update(index_elements=keys, set_=update), rows)

    def add_alert_events(self, events: Sequence[AlertEvent]) -> list[int]:
        """Append ``events`` to the alert history; their ids, in order."""
        if not events:
            return []
        ev = alert_events_table
        rows = [
            {
                "ts_ms": _ms(e.ts),
                "kind": e.kind,
                "rule_id": e.rule_id,
                "rule": e.rule,
                "severity": e.severity,
                "host": e.host,
                "metric": e.metric,
                "labels": labels_json(e.labels),
                "value": e.value,
                "since_ms": _ms(e.since),
            }
            for e in events
        ]
        inserted = self._conn.execute(
            ev.insert().returning(ev.c.id, sort_by_parameter_order=True), rows
        )
        return list(inserted.scalars().all())

    def last_firing_recipients(self, rule_id: str, series: StateKey) -> tuple[str, ...]:
        """Who the last firing mail of a (rule, series) went to, dead letters aside: the
        only record of its recipients once its rule left config.xml."""
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
            select(o.c.recipient)
            .where(o.c.event_id == fired, o.c.failed_ms.is_(None))
            .order_by(o.c.id)
        )
        return tuple(dict.fromkeys(self._conn.execute(query).scalars()))

    def queue_mail(
        self, event_id: int, subject: str, body: str, recipients: Iterable[str], now: float
    ) -> int:
        """Queue one mail per recipient for an alert event, created at ``now``; how many."""
        rows = _mail_rows(event_id, subject, body, recipients, _ms(now))
        if rows:
            self._conn.execute(outbox_table.insert(), rows)
        return len(rows)


def _use_wal(cursor: sqlite3.Cursor, busy_timeout: float) -> None:
    """Switch the database to WAL, waiting up to ``busy_timeout`` for other connections.

    SQLite does not call its busy handler for this switch: two collectors opening
    a fresh file at once saw "database is locked" at once (1 in 50 test runs).
    """
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return  # the usual case: only a fresh file needs the switch
    deadline = time.monotonic() + busy_timeout
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _configure_sqlite(engine: Engine, busy_timeout: float) -> None:
    """WAL, NORMAL sync, a busy timeout, foreign keys; transactions begun by us."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        assert isinstance(dbapi_conn, sqlite3.Connection)
        # sqlite3 would otherwise BEGIN (deferred) on its own before writes only;
        # _on_begin below emits BEGIN for every transaction instead.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {max(0, round(busy_timeout * 1000))}")
            _use_wal(cursor, busy_timeout)
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


PRIVATE_FILE = 0o600  # the store holds every host's key: owner only, whatever the umask
PRIVATE_DIR = 0o700
_SQLITE_SIDE_FILES = ("-wal", "-shm")  # SQLite creates them with the database file's mode


def _make_private_file(url: URL, display: str) -> None:
    """Create the SQLite file (and missing directories) owner-only, or check an existing one.

    The file is created empty with mode 0600 before SQLite opens it: SQLite
    treats an empty file as an empty database and gives the -wal and -shm
    files it makes later the database file's mode.  Creating it with that mode
    leaves no moment in which another user could open it, and needs no
    process-wide umask change.
    """
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    path = Path(database)
    _make_parent_dir(path.parent, display)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    except FileExistsError:
        _warn_if_shared(path)
        return
    except OSError as err:
        raise StoreError(
            f"database {display}: cannot create {str(path)!r}: {err.strerror}"
        ) from None
    os.close(fd)


def _make_parent_dir(parent: Path, display: str) -> None:
    """Create ``parent`` and its missing ancestors with mode 0700.

    ``Path.mkdir(parents=True)`` would give the ancestors the umask's mode.
    """
    missing: list[Path] = []
    while not parent.exists() and parent != parent.parent:  # bounded by the path's depth
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR)
            directory.chmod(PRIVATE_DIR)  # a umask such as 0277 would have taken our own bits
        except FileExistsError:
            continue  # made by another process just now
        except OSError as err:
            raise StoreError(
                f"database {display}: cannot create directory {str(directory)!r}: {err.strerror}"
            ) from None


def _warn_if_shared(path: Path) -> list[Path]:
    """Log one WARNING when the SQLite file or its -wal/-shm can be read by other users.

    Returns the files named in it.  The mode is left alone: a group may be
    sharing the file on purpose (a dashboard running as another user).
    """
    shared: list[tuple[Path, int]] = []
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in _SQLITE_SIDE_FILES)):
        try:
            mode = stat.S_IMODE(candidate.stat().st_mode)
        except OSError:
            continue  # absent (-wal and -shm exist only while the store is open)
        if mode & 0o077:
            shared.append((candidate, mode))
    if shared:
        modes = ", ".join(f"{p} (mode {m:04o})" for p, m in shared)
        log.warning(
            "database %s can be read by other users, and it holds every host's key: "
            "run chmod 600 %s",
            modes,
            " ".join(str(p) for p, _ in shared),
        )
    return [p for p, _ in shared]


def _insert(dialect: str, table: Table) -> sqlite.Insert | postgresql.Insert:
    """INSERT with ON CONFLICT support for the connection's dialect."""
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise StoreError(f"unsupported database dialect {dialect!r}")


def _upsert_hosts(dialect: str) -> sqlite.Insert | postgresql.Insert:
    """Upsert one host row: a good run sets last_seen and clears the error; a failed one
    sets the error and keeps last_seen.  The probe version is kept when not given."""
    t = hosts_table
    stmt = _insert(dialect, t)
    return stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={
            "address": stmt.excluded.address,
            "last_seen_ms": func.coalesce(stmt.excluded.last_seen_ms, t.c.last_seen_ms),
            "last_error": stmt.excluded.last_error,
            "probe_version": func.coalesce(stmt.excluded.probe_version, t.c.probe_version),
            "updated_ms": stmt.excluded.updated_ms,
        },
    )


def _host_rows(runs: Sequence[HostRun], now_ms: int) -> list[dict[str, Any]]:
    """One row per host (a batch may hold several runs of one host; the newest wins)."""
    rows: dict[str, dict[str, Any]] = {}
    for run in sorted(runs, key=lambda r: r.ts):
        row = rows.setdefault(
            run.host, {"name": run.host, "last_seen_ms": None, "probe_version": None}
        )
        row["address"] = run.address
        row["updated_ms"] = now_ms
        if run.ok:
            row["last_seen_ms"] = _ms(run.ts)
            row["last_error"] = None
        else:
            row["last_error"] = run.error or "failed"
        if run.probe_version is not None:
            row["probe_version"] = run.probe_version
    return [rows[name] for name in sorted(rows)]


def _write_runs(conn: Connection, runs: Sequence[HostRun]) -> int:
    """Write host rows, series and samples of ``runs``; return the samples written."""
    found: list[Point] = points(runs)
    by_key = {p: (p.host, p.metric, _sample_labels_json(p.labels)) for p in found}
    keys = sorted(set(by_key.values()))
    dialect = conn.dialect.name
    conn.execute(_upsert_hosts(dialect), _host_rows(runs, _now_ms()))
    conn.execute(
        _insert(dialect, series_table).on_conflict_do_nothing(
            index_elements=["host", "metric", "labels"]
        ),
        [{"host": h, "metric": m, "labels": lb} for h, m, lb in keys],
    )
    ids = _series_ids(conn, keys)
    rows = sorted((ids[by_key[p]], p.ts_ms, p.value) for p in found)
    written = conn.execute(
        _insert(dialect, samples_table)
        .on_conflict_do_nothing(index_elements=["series_id", "ts_ms"])
        .returning(samples_table.c.series_id),
        [{"series_id": sid, "ts_ms": ts_ms, "value": value} for sid, ts_ms, value in rows],
    )
    return len(written.all())


# Errors a row's data can cause: SQLAlchemy's, and the driver's own Python exceptions.
_ROW_ERRORS = (exc.SQLAlchemyError, UnicodeError, ValueError, OverflowError)


def _is_data_error(err: Exception) -> bool:
    """Would this error go away without that one row (not: locked, gone, disk full)?"""
    if isinstance(err, exc.DBAPIError):
        return not err.connection_invalidated and isinstance(
            err, exc.DataError | exc.IntegrityError
        )
    return isinstance(err, exc.StatementError | UnicodeError | ValueError | OverflowError)


def _detail(err: BaseException) -> str:
    """The first line of what the driver said, made safe to show (it may quote host data)."""
    orig: BaseException = err
    if isinstance(err, exc.StatementError) and err.orig is not None:
        orig = err.orig
    text = (str(orig).strip().splitlines() or [""])[0]
    if not isinstance(err, exc.DBAPIError):  # a Python error, e.g. UnicodeEncodeError: say so
        text = f"{type(orig).__name__}: {text}" if text else type(orig).__name__
    return clean(text or type(orig).__name__, 300)


def _failed_run(run: HostRun, reason: str) -> HostRun:
    """``run`` as a failed run that stores: no samples, no version, ``reason`` as the error."""
    return dataclasses.replace(
        run,
        ok=False,
        error=f"{Outcome.BAD_MESSAGE.value}: {reason}",
        probe_version=None,
        samples=(),
    )


def _refuse_nan(runs: Sequence[HostRun]) -> tuple[list[HostRun], tuple[Refused, ...]]:
    """Runs with a NaN sample become failed runs: NaN fails every alert comparison, and
    SQLite would store it as NULL."""
    kept: list[HostRun] = []
    refused: list[Refused] = []
    for run in runs:
        nan = next((s.metric for s in run.samples if math.isnan(s.value)), None)
        if nan is None:
            kept.append(run)
            continue
        reason = f"{nan} is NaN, not stored"
        refused.append(Refused(host=run.host, reason=reason))
        kept.append(_failed_run(run, reason))
    return kept, tuple(refused)


def _write_each_host(
    conn: Connection, runs: Sequence[HostRun]
) -> tuple[int, list[HostRun], tuple[Refused, ...]]:
    """Write ``runs`` one host at a time, each in a savepoint; a refused host is stored
    as a failed run.  Returns (samples written, the runs as stored, the refused)."""
    by_host: dict[str, list[HostRun]] = {}
    for run in runs:
        by_host.setdefault(run.host, []).append(run)
    count = 0
    stored: list[HostRun] = []
    refused: list[Refused] = []
    for host, host_runs in by_host.items():
        try:
            with conn.begin_nested():
                count += _write_runs(conn, host_runs)
            stored += host_runs
            continue
        except _ROW_ERRORS as err:
            if not _is_data_error(err):
                raise
            reason = f"the database refused this host's data: {_detail(err)}"
            log.debug("[%s] %s", host, reason, exc_info=True)
        refused.append(Refused(host=host, reason=reason))
        newest = max(host_runs, key=lambda r: r.ts)
        failed = _failed_run(newest, reason)
        with conn.begin_nested():  # a host name the database refuses is a bug: let it raise
            count += _write_runs(conn, [failed])
        stored.append(failed)
    return count, stored, tuple(refused)


def _series_ids(conn: Connection, keys: Sequence[SeriesKey]) -> dict[SeriesKey, int]:
    """Ids of the (host, metric, labels) series in ``keys``, which all exist."""
    s = series_table
    wanted = set(keys)
    ids: dict[SeriesKey, int] = {}
    for chunk in _chunks(sorted({host for host, _, _ in keys})):
        rows = conn.execute(
            select(s.c.id, s.c.host, s.c.metric, s.c.labels).where(s.c.host.in_(chunk))
        )
        for sid, host, metric, labels in rows:
            if (host, metric, labels) in wanted:
                ids[(host, metric, labels)] = sid
    return ids


def _newest(s: Table, column: str) -> Label[Any]:
    """Correlated subquery: ``column`` of the newest sample of series ``s``.

    ``ORDER BY ts_ms DESC LIMIT 1`` on ``series_id = s.id`` is one descent of
    the (series_id, ts_ms) primary key on both SQLite and PostgreSQL.
    """
    p = samples_table
    return (
        select(p.c[column])
        .where(p.c.series_id == s.c.id)
        .order_by(p.c.ts_ms.desc())
        .limit(1)
        .scalar_subquery()
        .label(column)
    )


def _stored(host: str, metric: str, labels: str, ts_ms: int, value: float) -> StoredSample:
    return StoredSample(
        host=host, metric=metric, labels=json.loads(labels), ts=ts_ms / 1000, value=value
    )


def _chunks(items: Sequence[str], size: int = _CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _ms(ts: float) -> int:
    return round(ts * 1000)


def _now_ms() -> int:
    return _ms(time.time())


def _redact(url: str) -> str:
    """Hide the password of a URL SQLAlchemy could not parse."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


# ---------------------------------------------------------------- collector identity (#11)


def new_collector_id() -> str:
    """A fresh collector id: 8 random hex digits (also made by migration 0004)."""
    return secrets.token_hex(4)


def _read_meta(conn: Connection, key: str) -> str | None:
    m = meta_table
    value: str | None = conn.execute(select(m.c.value).where(m.c.key == key)).scalar_one_or_none()
    return value


def _sqlite_lock_path(url: URL) -> Path | None:
    """``<database>.upload-lock`` beside a SQLite file; None for an in-memory database."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(f"{database}.upload-lock")


_HOLDER_WAIT = 50  # reads, 20 ms apart, of a lock file whose holder has not written yet


@contextmanager
def _file_lock(path: Path, display: str) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (made 0600) that says who holds it.

    The holder writes "pid start" after locking and empties the file before
    unlocking, so a non-empty file always names a live holder.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, PRIVATE_FILE)
    except OSError as err:
        raise StoreError(
            f"database {display}: cannot open the upload lock {path}: {err.strerror}"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UploadRunning(_running(display, *_file_holder(fd))) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {time.time():.3f}\n".encode("ascii"), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


def _file_holder(fd: int) -> tuple[int | None, float | None, str | None]:
    """(pid, start, machine) from a lock file that another process holds."""
    for _ in range(_HOLDER_WAIT):  # it writes right after locking: wait for that, briefly
        words = os.pread(fd, 100, 0).decode("ascii", "replace").split()
        if len(words) == 2 and words[0].isdigit():
            try:
                return int(words[0]), float(words[1]), None
            except ValueError:
                break
        time.sleep(0.02)
    return None, None, None


# The session holding the upload lock in this database, with its application_name.
_PG_HOLDER = text(
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = 0"
    " AND l.objid::bigint = :key AND l.objsubid = 1"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_APPLICATION = re.compile(r"netmetrix upload pid=(\d+) at=(\d+) on=(.*)")


def _pg_holder(row: Any) -> tuple[int | None, float | None, str | None]:
    """(pid, start, machine) from the holder's application_name, as far as it is visible."""
    found = _APPLICATION.fullmatch(row[0] or "") if row is not None else None
    if found is None:
        return None, None, None
    return int(found[1]), float(found[2]), clean(found[3], 63) or None


def _running(display: str, pid: int | None, start: float | None, machine: str | None) -> str:
    """The one line that says another upload holds the lock, and who."""
    who = "pid unknown" if pid is None else f"pid {pid}"
    if machine is not None and machine != socket.gethostname():
        who += f" on {machine}"
    when = "" if start is None else f", started at {iso(start)}"
    return (
        f"another upload is running ({who}{when}) on database {display};"
        " run upload again when it has finished"
    )


# ---------------------------------------------------------------- alerts (#7)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveAlert:
    host: str
    metric: str
    labels: dict[str, str]
    state: str  # pending | firing
    value: float  # latest value
    rule: str
    severity: str
    since: float  # unix seconds of the first sample past the limit
    fired: float | None  # when it fired (None while pending)
    ts: float  # latest sample evaluated


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertHistoryRow:
    id: int
    ts: float
    kind: str  # firing | repeat | resolved
    host: str
    metric: str
    labels: dict[str, str]
    value: float
    rule: str
    severity: str
    since: float


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


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxChange:
    """What ``drop_mail`` / ``retry_mail`` did; nothing at all when ``unknown`` is set."""

    changed: tuple[int, ...] = ()
    unchanged: tuple[int, ...] = ()  # already in the state asked for
    unknown: tuple[int, ...] = ()  # no undelivered mail has this id


def _state_item(row: Any) -> tuple[StateKey, AlertState]:
    labels = tuple(sorted(json.loads(row.labels).items()))
    state = AlertState(
        phase="firing" if row.state == "firing" else "pending",
        count=row.breaches,
        since=row.since_ms / 1000,
        fired=None if row.fired_ms is None else row.fired_ms / 1000,
        notified=None if row.notified_ms is None else row.notified_ms / 1000,
        value=row.value,
        ts=row.ts_ms / 1000,
        rule=row.rule,
        severity=row.severity,
    )
    return (row.rule_id, row.host, row.metric, labels), state


def _state_row(key: StateKey, state: AlertState) -> dict[str, Any]:
    rid, host, metric, labels = key
    return {
        "rule_id": rid,
        "host": host,
        "metric": metric,
        "labels": labels_json(labels),
        "state": state.phase,
        "breaches": state.count,
        "since_ms": _ms(state.since),
        "fired_ms": None if state.fired is None else _ms(state.fired),
        "notified_ms": None if state.notified is None else _ms(state.notified),
        "value": state.value,
        "ts_ms": _ms(state.ts),
        "rule": state.rule,
        "severity": state.severity,
    }


def _id_chunks(ids: Sequence[int], size: int = _CHUNK) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _undelivered_ids(conn: Connection, ids: Sequence[int]) -> dict[int, bool]:
    """Which of ``ids`` are undelivered outbox rows: id -> is a dead letter; locked (PostgreSQL)."""
    o = outbox_table
    found: dict[int, bool] = {}
    for chunk in _id_chunks(sorted(set(ids))):
        query = (
            select(o.c.id, o.c.failed_ms)
            .where(o.c.id.in_(chunk), o.c.delivered_ms.is_(None))
            .with_for_update()
        )
        found.update((row.id, row.failed_ms is not None) for row in conn.execute(query))
    return found


def _mail_rows(
    event_id: int, subject: str, body: str, recipients: Iterable[str], now_ms: int
) -> list[dict[str, Any]]:
    """Outbox rows for one alert event: one mail per recipient, not yet attempted."""
    return [
        {
            "event_id": event_id,
            "recipient": recipient,
            "subject": subject,
            "body": body,
            "created_ms": now_ms,
            "attempts": 0,
        }
        for recipient in recipients
    ]
