"""Samples and their series: writing host runs, and the latest and history queries.

A run writes its host's row, its samples and ``up`` (1.0 ok, 0.0 failed).
One host's unwritable data fails that host only: the batch is then written
host by host, each in a savepoint (#10).  The queries read ``samples`` by its
primary key only (docs/store-plans.md); ``history_buckets`` averages in SQL, so
a chart of a week of 1 s samples moves a few hundred rows, not 600,000.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import CTE, Integer, func, literal, select, true, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.sql.selectable import ScalarSelect

from netmetrix.errors import Outcome
from netmetrix.model import HostRun, Labels, point_values
from netmetrix.store import rwqueue
from netmetrix.store._sql import chunks, executemany, insert, ms, newest, now_ms
from netmetrix.store.engine import DATABASE_ERRORS, detail
from netmetrix.store.hosts import host_rows, upsert_hosts
from netmetrix.store.schema import (
    SeriesKey,
    labels_json,
    sample_labels_json,
    samples_table,
    series_table,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """A host whose data the database would not take; it was stored as a failed run."""

    host: str
    reason: str  # one clean line, e.g. "the database refused this host's data: ..."


@dataclass(frozen=True, slots=True, kw_only=True)
class Written:
    """What ``Transaction.write_runs`` stored."""

    samples: int
    forwarded: int = 0  # samples queued for remote-write (``write_runs``'s ``forward``)
    refused: tuple[Refused, ...] = ()  # stored as failed runs (up 0, last_error) instead
    # the runs as stored (a refused host's as a failed run); what was written is the counts
    runs: tuple[HostRun, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredSample:
    host: str
    metric: str
    labels: dict[str, str]
    ts: float  # unix seconds
    value: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Sparkline:
    """One series' recent past (``sparklines``)."""

    host: str
    metric: str
    labels: dict[str, str]
    latest: float | None  # the value of its newest sample up to ``until``, however old
    points: tuple[tuple[float, float], ...]  # (instant, newest sample of the step before it)


@dataclass(frozen=True, slots=True, kw_only=True)
class Buckets:
    """One series averaged over fixed steps (``history_buckets``)."""

    host: str
    metric: str
    labels: dict[str, str]
    step: float  # seconds
    # (start of the step, unix seconds; the mean of the samples in it), oldest first.
    # Steps are aligned to multiples of ``step`` since the epoch, and a step without
    # samples is left out.
    points: tuple[tuple[float, float], ...]


# -- writing --------------------------------------------------------------------


def write_runs(
    conn: Connection, runs: Sequence[HostRun], forward: Collection[str] | None = None
) -> Written:
    """Store host runs; report what was written.

    Each run updates its host's row and adds its samples plus ``up`` (1.0
    ok, 0.0 failed) at the run's time.  A sample whose series already has
    one at that millisecond is ignored (the first one stays).

    One host's unwritable data fails that host only: a NaN sample, or a
    row the database refuses (a data error, not a lock or a lost
    connection), makes the batch be written host by host, each in its own
    savepoint; a refused host is stored as a failed run (``up`` 0, the
    reason as ``last_error``) and reported in ``Written.refused``.

    ``forward``: the metrics whose samples (as stored, ``up`` included) are also
    queued for remote-write (``rwqueue``), in the same transaction; None queues none.
    """
    if not runs:
        return Written(samples=0)
    runs, refused = _refuse_nan(runs)
    try:
        with conn.begin_nested():
            count, queued = _write(conn, runs, forward)
        return Written(samples=count, forwarded=queued, refused=refused, runs=tuple(runs))
    except DATABASE_ERRORS as err:
        if not _is_data_error(err):
            raise
        log.debug("a row was refused; storing host by host", exc_info=True)
    (count, queued), stored, more = _write_each_host(conn, runs, forward)
    return Written(samples=count, forwarded=queued, refused=refused + more, runs=tuple(stored))


def _write(
    conn: Connection, runs: Sequence[HostRun], forward: Collection[str] | None
) -> tuple[int, int]:
    """Write host rows, series and samples of ``runs`` (and queue those of ``forward``);
    return (samples written, samples queued)."""
    labels_of = sample_labels_json
    keyed = [
        ((host, metric, labels_of(labels)), ts_ms, value)
        for (host, metric, labels, ts_ms), value in point_values(runs).items()
    ]
    keys = sorted({key for key, _, _ in keyed})
    dialect = conn.dialect.name
    conn.execute(upsert_hosts(dialect), host_rows(runs, now_ms()))
    ids = _ensure_series(conn, keys)
    rows = sorted((ids[key], ts_ms, value) for key, ts_ms, value in keyed)
    count = _insert_samples(conn, rows)
    if forward is None:
        return count, 0
    queued = [(ids[key], ts_ms, value) for key, ts_ms, value in keyed if key[1] in forward]
    return count, rwqueue.queue(conn, queued)


def _insert_samples(conn: Connection, rows: Sequence[tuple[int, int, float]]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING of (series_id, ts_ms, value) rows; the rows added
    (through the driver's executemany: ``_sql.executemany``)."""
    stmt = insert(conn.dialect.name, samples_table).on_conflict_do_nothing(
        index_elements=["series_id", "ts_ms"]
    )
    return max(0, executemany(conn, stmt, ("series_id", "ts_ms", "value"), rows))


def _ensure_series(conn: Connection, keys: Sequence[SeriesKey]) -> dict[SeriesKey, int]:
    """Ids of the (host, metric, labels) series in ``keys``, adding the ones that are new.

    Looked up before anything is inserted: a host sends the same series run
    after run (``watch``: every tick), and inserting them all again, to have
    ON CONFLICT DO NOTHING drop them, cost about 8 us of SQLAlchemy per row.
    A series another collector adds meanwhile is that ON CONFLICT's case.
    """
    ids = _series_ids(conn, keys)
    missing = [key for key in keys if key not in ids]
    if missing:
        stmt = insert(conn.dialect.name, series_table).on_conflict_do_nothing(
            index_elements=["host", "metric", "labels"]
        )
        executemany(conn, stmt, ("host", "metric", "labels"), missing)
        ids.update(_series_ids(conn, missing))
    return ids


def _series_ids(conn: Connection, keys: Sequence[SeriesKey]) -> dict[SeriesKey, int]:
    """Ids of the (host, metric, labels) series in ``keys`` that exist."""
    s = series_table
    wanted = set(keys)
    ids: dict[SeriesKey, int] = {}
    for chunk in chunks(sorted({host for host, _, _ in keys})):
        rows = conn.execute(
            select(s.c.id, s.c.host, s.c.metric, s.c.labels).where(s.c.host.in_(chunk))
        ).all()  # one fetchall: iterating fetched row by row cost 10% of a watch tick
        for sid, host, metric, labels in rows:
            if (host, metric, labels) in wanted:
                ids[(host, metric, labels)] = sid
    return ids


def _is_data_error(err: Exception) -> bool:
    """Would this error go away without that one row (not: locked, gone, disk full)?"""
    if isinstance(err, DBAPIError):
        return not err.connection_invalidated and isinstance(err, DataError | IntegrityError)
    return isinstance(err, StatementError | UnicodeError | ValueError | OverflowError)


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
    conn: Connection, runs: Sequence[HostRun], forward: Collection[str] | None
) -> tuple[tuple[int, int], list[HostRun], tuple[Refused, ...]]:
    """Write ``runs`` one host at a time, each in a savepoint; a refused host is stored
    as a failed run.  Returns ((samples written, queued), the runs as stored, the refused)."""
    by_host: dict[str, list[HostRun]] = {}
    for run in runs:
        by_host.setdefault(run.host, []).append(run)
    count = queued = 0
    stored: list[HostRun] = []
    refused: list[Refused] = []
    for host, host_runs in by_host.items():
        try:
            with conn.begin_nested():
                wrote, forwarded = _write(conn, host_runs, forward)
            count, queued = count + wrote, queued + forwarded
            stored += host_runs
            continue
        except DATABASE_ERRORS as err:
            if not _is_data_error(err):
                raise
            reason = f"the database refused this host's data: {detail(err)}"
            log.debug("[%s] %s", host, reason, exc_info=True)
        refused.append(Refused(host=host, reason=reason))
        failed = _failed_run(max(host_runs, key=lambda r: r.ts), reason)
        with conn.begin_nested():  # a host name the database refuses is a bug: let it raise
            wrote, forwarded = _write(conn, [failed], forward)
        count, queued = count + wrote, queued + forwarded
        stored.append(failed)
    return (count, queued), stored, tuple(refused)


# -- reading --------------------------------------------------------------------


class LatestRow(NamedTuple):
    """The newest sample of one series as stored: a NamedTuple, as a fleet makes many."""

    host: str
    metric: str
    labels: str  # canonical JSON (schema.labels_json), "{}" when none
    ts_ms: int
    value: float


def latest_rows(
    conn: Connection, hosts: Sequence[str] = (), metrics: Sequence[str] = ()
) -> list[LatestRow]:
    """``latest`` with labels left as stored: for callers that read every series
    (``/metrics``) and decode each distinct label set once."""
    s = series_table
    query = select(s.c.host, s.c.metric, s.c.labels, newest(s, "ts_ms"), newest(s, "value"))
    if metrics:
        query = query.where(s.c.metric.in_(sorted(set(metrics))))
    queries = (
        [query.where(s.c.host.in_(chunk)) for chunk in chunks(sorted(set(hosts)))]
        if hosts
        else [query]
    )
    make = LatestRow._make
    found = [make(row) for q in queries for row in conn.execute(q).all() if row[3] is not None]
    # Stored labels are canonical JSON, so their text sorts as labels_json() would.
    found.sort()
    return found


def latest(
    conn: Connection, hosts: Sequence[str] = (), metrics: Sequence[str] = ()
) -> list[StoredSample]:
    """The newest sample of every matching series, by host, metric, labels.

    Empty ``hosts`` or ``metrics`` means all of them.
    """
    return [
        _stored(row.host, row.metric, row.labels, row.ts_ms, row.value)
        for row in latest_rows(conn, hosts, metrics)
    ]


def history(
    conn: Connection,
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
        query = query.where(p.c.ts_ms >= ms(since))
    if until is not None:
        query = query.where(p.c.ts_ms <= ms(until))
    rows = sorted(conn.execute(query), key=lambda r: (r[1], r[0]))
    return [_stored(host, metric, lb, ts_ms, value) for lb, ts_ms, value in rows]


MAX_STEPS = 10_000  # steps per series that history_buckets averages


def history_buckets(
    conn: Connection,
    hosts: Sequence[str],
    metrics: Sequence[str],
    step: float,
    since: float,
    until: float,
) -> list[Buckets]:
    """Every series of ``hosts`` (of ``metrics``; empty: all) as the mean of each ``step``
    seconds from ``since`` to ``until`` (inclusive), oldest first.  By host, metric, labels.

    Steps are aligned to multiples of ``step`` since the epoch (``step`` rounded to
    whole milliseconds, at least one).  The database averages each step in a
    subquery that reads the series' samples by primary key: no sort, so the cost
    is one index descent per step plus the samples read (SQLite's GROUP BY
    ts_ms / step sorted them all, 5 times slower at 1,000 hosts).  ValueError for
    more than MAX_STEPS steps.
    """
    step_ms, since_ms, until_ms = max(1, ms(step)), ms(since), ms(until)
    first, count = since_ms // step_ms, step_count(step, since, until)
    found = _find_series(conn, hosts, metrics)
    points: dict[int, list[tuple[float, float]]] = {}
    p, steps, sid = samples_table, _step_numbers(count), series_table.c.id
    start = (first + steps.c.n) * step_ms
    mean = (
        select(func.avg(p.c.value))
        .where(p.c.series_id == sid, p.c.ts_ms >= start, p.c.ts_ms < start + step_ms)
        .where(p.c.ts_ms >= since_ms, p.c.ts_ms <= until_ms)
        .scalar_subquery()
    )
    # ORDER BY series first: SQLite then loops over series outside, steps inside, so
    # one series' steps read neighbouring pages (steps outside: 3 times slower)
    query = (
        select(sid, steps.c.n, mean)
        .select_from(series_table.join(steps, true()))
        .order_by(sid, steps.c.n)
    )
    for ids in chunks(sorted(found)):
        for series_id, n, value in conn.execute(query.where(sid.in_(ids))):
            if value is not None:
                points.setdefault(series_id, []).append(((first + n) * step_ms / 1000, value))
    return _as_buckets(found, points, step_ms)


MAX_SPARK_POINTS = 100  # instants per series of a sparkline (one column each)


def sparklines(
    conn: Connection,
    hosts: Sequence[str],
    series: Sequence[tuple[str, Mapping[str, str]]],
    until: float,
    step: float,
    count: int,
) -> list[Sparkline]:
    """The series of ``hosts`` named by (metric, labels): the newest sample up to ``until``,
    and the values at ``count`` instants ``step`` seconds apart ending at ``until`` (at
    each, the newest sample of the step before it).  By host, metric, labels.

    One index descent per series and instant, whatever the sample rate, one row
    per series (an instant is a column), series after series: a thousand hosts'
    overview reads 52,000 samples of 216 million in about 150 ms.  ValueError for
    more than MAX_SPARK_POINTS instants.
    """
    check_instants(count)
    step_ms, until_ms = max(1, ms(step)), ms(until)
    wanted = sorted({(metric, labels_json(labels)) for metric, labels in series})
    found = _find_series(conn, hosts, [], wanted)
    instants = [until_ms - (count - 1 - i) * step_ms for i in range(count)]
    columns = [_newest(upto=until_ms)]
    columns += [_newest(upto=at, after=at - step_ms) for at in instants]
    query = select(series_table.c.id, *columns)
    rows: list[tuple[tuple[str, str, str], Sequence[Any]]] = []
    for ids in chunks(sorted(found)):
        chunk = query.where(series_table.c.id.in_(ids))
        rows += ((found[sid], row) for sid, *row in conn.execute(chunk))
    rows.sort(key=lambda r: r[0])  # host, metric, labels JSON
    return [_sparkline(key, row, instants) for key, row in rows]


def _sparkline(key: tuple[str, str, str], row: Sequence[Any], instants: Sequence[int]) -> Sparkline:
    host, metric, labels = key
    latest, *values = row
    return Sparkline(
        host=host,
        metric=metric,
        labels=dict(_parsed_labels(labels)),
        latest=latest,
        points=tuple((t / 1000, v) for t, v in zip(instants, values, strict=True) if v is not None),
    )


@functools.lru_cache(maxsize=4096)
def _parsed_labels(text: str) -> dict[str, str]:
    """A fleet repeats a few label sets: parse each once (callers copy the dict)."""
    parsed: dict[str, str] = json.loads(text)
    return parsed


def _newest(*, upto: int, after: int | None = None) -> ScalarSelect[Any]:
    """Correlated: the value of the newest sample of the row's series at or before ``upto``
    (and after ``after``): one descent of the primary key."""
    p = samples_table
    query = select(p.c.value).where(p.c.series_id == series_table.c.id, p.c.ts_ms <= upto)
    if after is not None:
        query = query.where(p.c.ts_ms > after)
    return query.order_by(p.c.ts_ms.desc()).limit(1).scalar_subquery()


def step_count(step: float, since: float, until: float) -> int:
    """How many steps history_buckets averages; ValueError past MAX_STEPS (checked before
    the query: the store turns errors inside a read into StoreError)."""
    step_ms = max(1, ms(step))
    count = ms(until) // step_ms - ms(since) // step_ms + 1
    if count > MAX_STEPS:
        raise ValueError(f"{count} steps, more than {MAX_STEPS}: give a longer step")
    return count


def check_instants(count: int) -> None:
    """ValueError unless a sparkline of ``count`` instants can be read."""
    if not 1 <= count <= MAX_SPARK_POINTS:
        raise ValueError(f"{count} instants: give 1 to {MAX_SPARK_POINTS}")


def _step_numbers(count: int) -> CTE:
    """0, 1, ... count - 1, as a recursive CTE ``n``."""
    steps = select(literal(0, Integer).label("n")).cte("steps", recursive=True)
    return steps.union_all(select(steps.c.n + 1).where(steps.c.n < count - 1))


def _find_series(
    conn: Connection,
    hosts: Sequence[str],
    metrics: Sequence[str],
    exactly: Sequence[tuple[str, str]] = (),
) -> dict[int, tuple[str, str, str]]:
    """Id -> (host, metric, labels JSON) of the series of ``hosts``: of ``metrics`` (empty:
    all), or ``exactly`` these (metric, labels JSON) pairs when given."""
    s = series_table
    found: dict[int, tuple[str, str, str]] = {}
    for chunk in chunks(sorted(set(hosts))):
        query = select(s.c.id, s.c.host, s.c.metric, s.c.labels).where(s.c.host.in_(chunk))
        if exactly:
            query = query.where(tuple_(s.c.metric, s.c.labels).in_(exactly))
        elif metrics:
            query = query.where(s.c.metric.in_(sorted(set(metrics))))
        found.update((sid, (h, m, lb)) for sid, h, m, lb in conn.execute(query))
    return found


def _as_buckets(
    found: Mapping[int, tuple[str, str, str]],
    points: Mapping[int, list[tuple[float, float]]],
    step_ms: int,
) -> list[Buckets]:
    result = [
        Buckets(
            host=host,
            metric=metric,
            labels=json.loads(labels),
            step=step_ms / 1000,
            points=tuple(sorted(points[sid])),
        )
        for sid, (host, metric, labels) in sorted(found.items(), key=lambda item: item[1])
        if sid in points
    ]
    return result


def recent(
    conn: Connection, host: str, metric: str, labels: Labels, until: float, limit: int
) -> tuple[tuple[float, float], ...]:
    """The last ``limit`` (ts, value) of one series up to ``until``, oldest first."""
    s, p = series_table, samples_table
    query = (
        select(p.c.ts_ms, p.c.value)
        .select_from(s.join(p, p.c.series_id == s.c.id))
        .where(s.c.host == host, s.c.metric == metric, s.c.labels == labels_json(labels))
        .where(p.c.ts_ms <= ms(until))
        .order_by(p.c.ts_ms.desc())
        .limit(limit)
    )
    rows = conn.execute(query).all()
    return tuple((ts_ms / 1000, value) for ts_ms, value in reversed(rows))


def metric_names(conn: Connection) -> set[str]:
    """Every metric name that has a series."""
    return set(conn.execute(select(series_table.c.metric).distinct()).scalars())


def _stored(host: str, metric: str, labels: str, ts_ms: int, value: float) -> StoredSample:
    return StoredSample(
        host=host, metric=metric, labels=json.loads(labels), ts=ts_ms / 1000, value=value
    )
