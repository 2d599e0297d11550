"""Small SQL helpers every module of the store shares."""

from __future__ import annotations

import operator
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement, Label

from netmetrix.errors import StoreError
from netmetrix.store.schema import samples_table

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

CHUNK = 500  # bound parameters per IN (...) list; old SQLite allows 999

T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices short enough for one IN (...) list."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def ms(ts: float) -> int:
    """Unix seconds to the integer milliseconds the database keeps."""
    return round(ts * 1000)


def seconds(ts_ms: int | None) -> float | None:
    """The database's milliseconds (or NULL) back to unix seconds."""
    return None if ts_ms is None else ts_ms / 1000


def now_ms() -> int:
    return ms(time.time())


def insert(dialect: str, table: Table) -> sqlite.Insert | postgresql.Insert:
    """INSERT with ON CONFLICT support for the connection's dialect.

    Each dialect is imported here, when first used: a SQLite store never
    loads SQLAlchemy's PostgreSQL dialect (~50 ms of imports).
    """
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    raise StoreError(f"unsupported database dialect {dialect!r}")


def executemany(
    conn: Connection, stmt: ClauseElement, names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> int:
    """Run ``stmt`` once per row of ``rows`` (values in the order of ``names``), compiled
    once and handed to the driver's executemany as they are; the rowcount.

    SQLAlchemy's per-row parameter processing was the largest cost of a ``watch``
    tick (25,000 rows at 1,000 hosts).  Still bound parameters.
    """
    compiled = stmt.compile(dialect=conn.dialect, column_keys=list(names))
    assert isinstance(compiled, SQLCompiler)  # a DML statement's
    if conn.dialect.positional:
        order = [list(names).index(name) for name in compiled.positiontup or ()]
        if order == list(range(len(names))):  # the usual case: the rows as they are
            params: list[Any] = list(rows)
        else:
            pick = operator.itemgetter(*order)
            params = [pick(row) for row in rows]
    else:
        params = [dict(zip(names, row, strict=True)) for row in rows]
    return int(conn.exec_driver_sql(compiled.string, params).rowcount)


def newest(series: Table, column: str) -> Label[Any]:
    """Correlated subquery: ``column`` of the newest sample of ``series``.

    ``ORDER BY ts_ms DESC LIMIT 1`` on ``series_id = series.id`` is one descent
    of the (series_id, ts_ms) primary key on both SQLite and PostgreSQL.
    """
    p = samples_table
    return (
        select(p.c[column])
        .where(p.c.series_id == series.c.id)
        .order_by(p.c.ts_ms.desc())
        .limit(1)
        .scalar_subquery()
        .label(column)
    )
