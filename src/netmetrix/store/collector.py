"""This store's collector id, and the upload lock (#11).

The collector id names the store's key and state files on the hosts, so
several collectors (several stores) can share a host.  The upload lock keeps
two uploads to one store from running at once: each would store keys the
other one then overwrites on the hosts.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection

from netmetrix.errors import NetmetrixError, StoreError
from netmetrix.format import iso
from netmetrix.sanitize import clean
from netmetrix.store._sql import insert
from netmetrix.store.engine import Database
from netmetrix.store.files import PRIVATE_FILE, sqlite_path
from netmetrix.store.schema import COLLECTOR_ID, meta_table

_PG_UPLOAD_LOCK = 0x6E6D7875  # "nmxu": pg_advisory_lock key held by a running upload
_HOLDER_WAIT = 50  # reads, 20 ms apart, of a lock file whose holder has not written yet


class UploadRunning(NetmetrixError):
    """Another process holds this store's upload lock (exit 1: run upload again later)."""


# -- the collector id -------------------------------------------------------------


def new_collector_id() -> str:
    """A fresh collector id: 8 random hex digits (also made by migration 0004)."""
    return secrets.token_hex(4)


def find_collector_id(conn: Connection) -> str | None:
    """This store's collector id, or None when the schema predates it (reads only)."""
    if not inspect(conn).has_table(meta_table.name):
        return None
    return _read_meta(conn, COLLECTOR_ID)


def make_collector_id(conn: Connection) -> str:
    """Make the collector id, keeping whichever of two racing processes wrote first."""
    conn.execute(
        insert(conn.dialect.name, meta_table).on_conflict_do_nothing(index_elements=["key"]),
        {"key": COLLECTOR_ID, "value": new_collector_id()},
    )
    made = _read_meta(conn, COLLECTOR_ID)
    assert made is not None  # inserted or kept in this very transaction
    return made


def _read_meta(conn: Connection, key: str) -> str | None:
    m = meta_table
    value: str | None = conn.execute(select(m.c.value).where(m.c.key == key)).scalar_one_or_none()
    return value


# -- the upload lock ----------------------------------------------------------------


@contextmanager
def upload_lock(db: Database) -> Iterator[None]:
    """Hold the upload lock of ``db`` while the block runs (see ``Store.upload_lock``)."""
    if db.engine.dialect.name == "postgresql":
        with _pg_upload_lock(db):
            yield
        return
    path = sqlite_path(db.engine.url)
    if path is None:  # in memory: no other process can share it
        yield
        return
    with _file_lock(Path(f"{path}.upload-lock"), db.url_display):
        yield


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


@contextmanager
def _pg_upload_lock(db: Database) -> Iterator[None]:
    """A session advisory lock on a connection of its own, whose application_name
    carries pid, start and machine for another upload's message."""
    started = time.time()
    name = f"netmetrix upload pid={os.getpid()} at={started:.0f} on={socket.gethostname()}"
    doing = "take the upload lock"
    with db.guard(doing):
        conn = db.engine.connect()
    try:
        with db.guard(doing):
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
            raise UploadRunning(_running(db.url_display, *_pg_holder(holder)))
        yield
    finally:
        # Closing the connection releases the lock and forgets the application_name.
        conn.invalidate()
        conn.close()


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
