"""Connecting: the URL, the SQLite settings, and database errors as one-line StoreErrors.

SQLite runs in WAL mode: readers never block the one writer.  Every write
takes the write lock up front (``BEGIN IMMEDIATE``), so a writer waits for
another one for at most the busy timeout and then fails cleanly with a
``StoreError``, instead of failing mid-transaction on a lock upgrade.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.pool import ConnectionPoolEntry

from netmetrix.errors import StoreError
from netmetrix.sanitize import clean
from netmetrix.store.files import make_private_file

DEFAULT_BUSY_TIMEOUT = 10.0  # seconds a writer waits for another one's lock
_WRITE = "netmetrix_write"  # execution option: open the transaction with the write lock

# Drivers raise some data errors as plain Python exceptions (sqlite3:
# UnicodeEncodeError for a lone surrogate, OverflowError for a huge int).
DATABASE_ERRORS = (exc.SQLAlchemyError, UnicodeError, ValueError, OverflowError)


class Database:
    """An engine with the store's error handling: connections to read with, write
    transactions, and every database error as a one-line StoreError naming the database."""

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

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    @property
    def url_display(self) -> str:
        """The database URL with any password hidden."""
        return self._url_display

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for tests and for queries the store does not offer."""
        return self._engine

    @contextmanager
    def reading(self, doing: str) -> Iterator[Connection]:
        """A connection to read with; a database error becomes a StoreError naming ``doing``."""
        with self.guard(doing), self._engine.connect() as conn:
            yield conn

    @contextmanager
    def writing(self, doing: str) -> Iterator[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE) committed at the end; errors as above."""
        with self.guard(doing), self._writer.begin() as conn:
            yield conn

    @contextmanager
    def guard(self, doing: str) -> Iterator[None]:
        """Turn database errors into a one-line StoreError naming the database."""
        try:
            yield
        except DATABASE_ERRORS as err:
            raise self.error(doing, err) from err

    def error(self, doing: str, err: Exception) -> StoreError:
        """The StoreError for ``err``, which happened while trying to ``doing``."""
        orig = err.orig if isinstance(err, exc.DBAPIError) else err
        if isinstance(orig, sqlite3.OperationalError) and "locked" in str(orig):
            return StoreError(
                f"database {self.url_display} is locked: another process held its write lock "
                f"for over {self._busy_timeout:g} s (the busy timeout); cannot {doing}"
            )
        return StoreError(f"database {self.url_display}: cannot {doing}: {detail(err)}")


def connect(url: str, busy_timeout: float) -> tuple[Engine, str]:
    """An engine for ``url`` and the URL to show (password hidden); nothing connects yet.

    A SQLite file is created owner-only first.  Raises StoreError.
    """
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise StoreError(f"invalid database URL {redact(url)!r}") from None
    display = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(f"database {display}: unsupported, use sqlite:/// or postgresql://")
    if backend == "sqlite":
        make_private_file(parsed, display)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # what netmetrix[postgres] installs
    try:
        engine = create_engine(parsed)
    except (ImportError, exc.ArgumentError) as err:
        hint = " (pip install 'netmetrix[postgres]')" if backend == "postgresql" else ""
        raise StoreError(f"database {display}: no driver: {err}{hint}") from None
    if backend == "sqlite":
        _configure_sqlite(engine, busy_timeout)
    return engine, display


def detail(err: BaseException) -> str:
    """The first line of what the driver said, made safe to show (it may quote host data)."""
    orig: BaseException = err
    if isinstance(err, exc.StatementError) and err.orig is not None:
        orig = err.orig
    text = (str(orig).strip().splitlines() or [""])[0]
    if not isinstance(err, exc.DBAPIError):  # a Python error, e.g. UnicodeEncodeError: say so
        text = f"{type(orig).__name__}: {text}" if text else type(orig).__name__
    return clean(text or type(orig).__name__, 300)


def redact(url: str) -> str:
    """Hide the password of a URL SQLAlchemy could not parse."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _configure_sqlite(engine: Engine, busy_timeout: float) -> None:
    """WAL, NORMAL sync, a busy timeout, foreign keys; transactions begun by us."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
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
