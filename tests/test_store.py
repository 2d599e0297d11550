"""Store: schema by migration, runs -> samples/up/hosts, queries, keys, locking."""

from __future__ import annotations

import itertools
import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import sample
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, event, text

from netmetrix import pipeline
from netmetrix.config import AlertRule
from netmetrix.errors import StoreError
from netmetrix.model import HostRun, Sample
from netmetrix.store import (
    SCHEMA_HEAD,
    Activated,
    HostRow,
    Refused,
    Store,
    StoredSample,
    Written,
    metadata,
)


def run(
    host: str,
    ts: float,
    *samples: Sample,
    ok: bool = True,
    error: str | None = None,
    version: str | None = "1.0",
) -> HostRun:
    return HostRun(
        host=host,
        address=f"{host}.example",
        ts=ts,
        ok=ok,
        error=error,
        probe_version=version,
        samples=samples,
    )


def stored(host: str, metric: str, ts: float, value: float, **labels: str) -> StoredSample:
    return StoredSample(host=host, metric=metric, labels=labels, ts=ts, value=value)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "netmetrix.db"


@pytest.fixture
def db_url(db_path: Path) -> str:
    return f"sqlite:///{db_path}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An empty store on SQLite and on PostgreSQL (conftest's ``store_url``)."""
    with Store.open(store_url) as s:
        yield s


@pytest.fixture
def sqlite_store(db_url: str) -> Iterator[Store]:
    """An empty store on SQLite only, for SQLite specifics (pragmas, DDL, EXPLAIN QUERY PLAN)."""
    with Store.open(db_url) as s:
        yield s


def sqlite_ddl(path: Path) -> list[tuple[Any, ...]]:
    """Every schema object SQLite holds, but Alembic's own table."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master "
                    "WHERE tbl_name != 'alembic_version' ORDER BY name"
                )
            )
            return [tuple(row) for row in rows]
    finally:
        engine.dispose()


# -- open and schema ------------------------------------------------------------


def test_open_creates_parent_dir_and_schema(sqlite_store: Store, db_path: Path) -> None:
    assert db_path.is_file()
    assert sqlite_store.schema_version() == SCHEMA_HEAD
    with sqlite_store.engine.connect() as conn:
        pragmas = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,
        "busy_timeout": 10000,
        "foreign_keys": 1,
    }


def test_open_twice_keeps_schema_and_data(store_url: str) -> None:
    with Store.open(store_url) as first:
        assert first.record_runs([run("a", 10.0, sample("load1", 0.5))]).samples == 2
    with Store.open(store_url) as second:
        assert second.schema_version() == SCHEMA_HEAD
        assert second.history("a", "load1") == [stored("a", "load1", 10.0, 0.5)]


def test_migration_creates_exactly_the_metadata_schema(
    sqlite_store: Store, db_path: Path, tmp_path: Path
) -> None:
    with sqlite_store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
    # compare_metadata skips CHECK constraints and SQLite table options, the DDL text does not
    reference = tmp_path / "create_all.db"
    engine = create_engine(f"sqlite:///{reference}")
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()
    assert sqlite_ddl(db_path) == sqlite_ddl(reference)


def test_url_display_hides_password(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path}/x.db") as s:
        assert s.url_display == f"sqlite:///{tmp_path}/x.db"
    with pytest.raises(StoreError) as info:
        Store.open("postgresql://monitor:s3cret@127.0.0.1:1/netmetrix")
    assert "s3cret" not in str(info.value)
    assert "postgresql://monitor:***@127.0.0.1:1/netmetrix" in str(info.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "invalid database URL 'not a url'"),
        (
            "mysql://u:pw@host/db",
            "database mysql://u:***@host/db: unsupported, use sqlite:/// or postgresql://",
        ),
    ],
)
def test_open_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(StoreError) as info:
        Store.open(url)
    assert str(info.value) == message


def test_open_cannot_create_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError) as info:
        Store.open(f"sqlite:///{tmp_path}/file/sub/x.db")
    assert str(info.value) == (
        f"database sqlite:///{tmp_path}/file/sub/x.db: "
        f"cannot create directory '{tmp_path}/file/sub': Not a directory"
    )


def test_open_refuses_a_schema_from_the_future(db_path: Path, db_url: str) -> None:
    Store.open(db_url).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    with pytest.raises(StoreError) as info:
        Store.open(db_url)
    assert str(info.value) == (
        f"database {db_url}: schema version '9999' is unknown to this netmetrix "
        "(written by a newer version?)"
    )


# -- runs ---------------------------------------------------------------------


def test_record_runs_stores_samples_and_up(store: Store) -> None:
    written = store.record_runs(
        [
            run(
                "web1", 100.0, sample("cpu_percent", 12.5), sample("disk_percent", 40.0, mount="/")
            ),
            run("db1", 100.0, ok=False, error="connect: timed out after 10 s"),
        ]
    )
    assert written == Written(samples=4)
    assert store.latest() == [
        stored("db1", "up", 100.0, 0.0),
        stored("web1", "cpu_percent", 100.0, 12.5),
        stored("web1", "disk_percent", 100.0, 40.0, mount="/"),
        stored("web1", "up", 100.0, 1.0),
    ]
    assert store.hosts() == [
        HostRow(
            name="db1",
            address="db1.example",
            last_seen=None,
            last_error="connect: timed out after 10 s",
            probe_version="1.0",
            up=0.0,
        ),
        HostRow(
            name="web1",
            address="web1.example",
            last_seen=100.0,
            last_error=None,
            probe_version="1.0",
            up=1.0,
        ),
    ]


def test_host_row_keeps_last_seen_on_failure_and_clears_error_on_success(store: Store) -> None:
    store.record_runs([run("a", 100.0, version="1.0")])
    store.record_runs([run("a", 160.0, ok=False, error="refused", version=None)])
    assert store.hosts() == [
        HostRow(
            name="a",
            address="a.example",
            last_seen=100.0,
            last_error="refused",
            probe_version="1.0",
            up=0.0,
        )
    ]
    store.record_runs([run("a", 220.0, version="1.1")])
    assert store.hosts() == [
        HostRow(
            name="a",
            address="a.example",
            last_seen=220.0,
            last_error=None,
            probe_version="1.1",
            up=1.0,
        )
    ]


def test_several_runs_of_one_host_in_a_batch_newest_wins(store: Store) -> None:
    written = store.record_runs(
        [run("a", 200.0, ok=False, error="timeout"), run("a", 100.0, sample("load1", 1.0))]
    )
    assert written.samples == 3
    [row] = store.hosts()
    assert (row.last_seen, row.last_error, row.up) == (100.0, "timeout", 0.0)
    assert [s.value for s in store.history("a", "up")] == [1.0, 0.0]


def test_failed_run_without_message_still_records_an_error(store: Store) -> None:
    store.record_runs([run("a", 1.0, ok=False)])
    assert store.hosts()[0].last_error == "failed"


def test_duplicate_timestamps_are_ignored(store: Store) -> None:
    assert store.record_runs([run("a", 100.0, sample("load1", 1.0))]).samples == 2
    assert store.record_runs([run("a", 100.0, sample("load1", 9.0))]).samples == 0
    # same millisecond inside one batch: the first sample stays, so does the collector's `up`
    batch = run("a", 100.5, sample("load1", 2.0), sample("load1", 3.0), sample("up", 5.0))
    assert store.record_runs([batch]).samples == 2
    assert store.history("a", "load1") == [
        stored("a", "load1", 100.0, 1.0),
        stored("a", "load1", 100.5, 2.0),
    ]
    assert [s.value for s in store.history("a", "up")] == [1.0, 1.0]


def test_record_runs_empty_and_nan(store: Store) -> None:
    assert store.record_runs([]) == Written(samples=0)
    # NaN compares to nothing: that host's run fails, the others are stored (#10)
    written = store.record_runs(
        [run("a", 1.0, sample("load1", float("nan")), sample("load5", 2.0)), run("b", 1.0)]
    )
    assert written == Written(
        samples=2, refused=(Refused(host="a", reason="load1 is NaN, not stored"),)
    )
    assert store.latest() == [stored("a", "up", 1.0, 0.0), stored("b", "up", 1.0, 1.0)]
    assert store.hosts()[0].last_error == "bad message: load1 is NaN, not stored"


def test_record_runs_batches_statements_for_a_large_fleet(store: Store) -> None:
    runs = [
        run(
            f"host{h:04}",
            1000.0,
            *(sample(f"metric{m}", float(m), device=f"d{m % 4}") for m in range(40)),
        )
        for h in range(1000)
    ]
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        assert store.record_runs(runs) == Written(samples=41_000)
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    # executemany in pages of rows, not a statement per host or per sample
    assert len(statements) < 100
    assert len(store.latest(metrics=["up"])) == 1000


# -- queries ------------------------------------------------------------------


@pytest.fixture
def filled(store: Store) -> Store:
    for ts in (100.0, 160.0, 220.0):
        store.record_runs(
            [
                run(
                    "web1",
                    ts,
                    sample("disk_percent", ts / 10, mount="/"),
                    sample("disk_percent", ts / 20, mount="/var"),
                    sample("load1", ts / 100),
                ),
                run("db1", ts, sample("load1", ts / 1000)),
            ]
        )
    store.record_runs([run("db1", 280.0, ok=False, error="refused")])
    return store


def test_latest_all(filled: Store) -> None:
    assert filled.latest() == [
        stored("db1", "load1", 220.0, 0.22),
        stored("db1", "up", 280.0, 0.0),
        stored("web1", "disk_percent", 220.0, 22.0, mount="/"),
        stored("web1", "disk_percent", 220.0, 11.0, mount="/var"),
        stored("web1", "load1", 220.0, 2.2),
        stored("web1", "up", 220.0, 1.0),
    ]


@pytest.mark.parametrize(
    ("hosts", "metrics", "expected"),
    [
        (["web1"], ["load1"], [("web1", "load1")]),
        ([], ["load1"], [("db1", "load1"), ("web1", "load1")]),
        (["db1"], [], [("db1", "load1"), ("db1", "up")]),
        (["db1", "nope"], ["up", "disk_percent"], [("db1", "up")]),
        (["nope"], [], []),
    ],
)
def test_latest_filters(
    filled: Store, hosts: list[str], metrics: list[str], expected: list[tuple[str, str]]
) -> None:
    assert [(s.host, s.metric) for s in filled.latest(hosts, metrics)] == expected


def test_history_of_one_series_and_of_all_series(filled: Store) -> None:
    assert filled.history("web1", "disk_percent", {"mount": "/var"}) == [
        stored("web1", "disk_percent", 100.0, 5.0, mount="/var"),
        stored("web1", "disk_percent", 160.0, 8.0, mount="/var"),
        stored("web1", "disk_percent", 220.0, 11.0, mount="/var"),
    ]
    every = filled.history("web1", "disk_percent")
    assert [(s.ts, s.labels["mount"]) for s in every] == [
        (100.0, "/"),
        (100.0, "/var"),
        (160.0, "/"),
        (160.0, "/var"),
        (220.0, "/"),
        (220.0, "/var"),
    ]
    assert filled.history("web1", "disk_percent", {}) == []
    assert filled.history("web1", "nope") == []


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (None, None, [100.0, 160.0, 220.0, 280.0]),
        (160.0, None, [160.0, 220.0, 280.0]),
        (None, 220.0, [100.0, 160.0, 220.0]),
        (160.0, 220.0, [160.0, 220.0]),
        (160.001, 219.999, []),
    ],
)
def test_history_since_until_inclusive(
    filled: Store, since: float | None, until: float | None, expected: list[float]
) -> None:
    assert [s.ts for s in filled.history("db1", "up", {}, since, until)] == expected


# -- keys ---------------------------------------------------------------------


def test_key_rotation(store: Store) -> None:
    assert store.host_keys(["a", "b"]) == {}
    store.add_pending_keys([("a", "k1", b"\x01" * 32)])
    assert store.activate_keys([("a", "k1")]) == Activated(activated=("a",))
    store.add_pending_keys([("a", "k2", b"\x02" * 32), ("b", "k9", b"\x09" * 32)])
    assert store.host_keys(["a", "b", "c"]) == {
        "a": {"k1": b"\x01" * 32, "k2": b"\x02" * 32},
        "b": {"k9": b"\x09" * 32},
    }
    # a second upload before the first one's key was ever used keeps it: a crashed
    # upload may have left k2 on the host
    store.add_pending_keys([("a", "k3", b"\x03" * 32)])
    assert store.host_keys(["a"]) == {
        "a": {"k1": b"\x01" * 32, "k2": b"\x02" * 32, "k3": b"\x03" * 32}
    }
    assert store.activate_keys([("a", "k3")]) == Activated(activated=("a",))
    assert store.activate_keys([("a", "k3")]) == Activated(activated=("a",))
    assert store.host_keys(["a"]) == {"a": {"k3": b"\x03" * 32}}
    # re-adding the active key changes nothing
    store.add_pending_keys([("a", "k3", b"\x03" * 32)])
    assert store.activate_keys([("a", "k3")]) == Activated(activated=("a",))
    assert store.host_keys(["a", "b"]) == {"a": {"k3": b"\x03" * 32}, "b": {"k9": b"\x09" * 32}}


def test_activating_an_unknown_key_changes_nothing(store: Store) -> None:
    store.add_pending_keys([("a", "k1", b"\x01" * 32)])
    assert store.activate_keys([("a", "k2")]) == Activated(missing=("a",))
    assert store.host_keys(["a"]) == {"a": {"k1": b"\x01" * 32}}


def test_same_key_id_for_another_key_is_an_error(store: Store) -> None:
    store.add_pending_keys([("a", "k1", b"\x01" * 32)])
    with pytest.raises(StoreError, match="key id 'k1' already names another key"):
        store.add_pending_keys([("b", "k5", b"\x05" * 32), ("a", "k1", b"\x02" * 32)])
    # one transaction: b's key, added before the refused one, is not kept either
    assert store.host_keys(["a", "b"]) == {"a": {"k1": b"\x01" * 32}}


def test_host_keys_of_many_hosts(store: Store) -> None:
    # more than one IN (...) chunk
    store.add_pending_keys([(f"h{i}", "k", bytes([i % 256]) * 32) for i in range(1200)])
    keys = store.host_keys(f"h{i}" for i in range(0, 1500, 2))
    assert len(keys) == 600
    assert keys["h1198"] == {"k": bytes([1198 % 256]) * 32}


# -- concurrency and locking ----------------------------------------------------


def test_concurrent_writers_lose_nothing(store_url: str) -> None:
    barrier = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def writer(prefix: str) -> None:
        try:
            barrier.wait()  # both open the fresh file at once: the migration must not race
            with Store.open(store_url) as s:
                barrier.wait()
                for ts in range(30):
                    s.record_runs(
                        [run(f"{prefix}{i}", float(ts), sample("load1", ts + i)) for i in range(5)]
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Store.open(store_url) as s:
        assert s.schema_version() == SCHEMA_HEAD
        assert [h.name for h in s.hosts()] == [
            "a0",
            "a1",
            "a2",
            "a3",
            "a4",
            "b0",
            "b1",
            "b2",
            "b3",
            "b4",
        ]
        for host in ("a3", "b3"):
            assert [x.value for x in s.history(host, "load1")] == [
                float(ts + 3) for ts in range(30)
            ]
            assert len(s.history(host, "up")) == 30


def test_locked_database_is_a_one_line_store_error(db_path: Path, db_url: str) -> None:
    with Store.open(db_url, busy_timeout=0.05) as store:
        store.record_runs([run("a", 1.0)])
        locker = sqlite3.connect(db_path, isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError) as info:
                store.record_runs([run("a", 2.0)])
            assert store.latest() == [stored("a", "up", 1.0, 1.0)]  # WAL: readers still read
        finally:
            locker.rollback()
            locker.close()
        assert str(info.value) == (
            f"database {db_url} is locked: another process held its write lock "
            "for over 0.05 s (the busy timeout); cannot store 1 host run(s)"
        )
        assert store.record_runs([run("a", 2.0)]).samples == 1


# -- round trip -----------------------------------------------------------------

_names = itertools.count()
label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}", fullmatch=True)
label_sets = st.dictionaries(label_names, st.text(max_size=256), max_size=6)
values = st.floats(allow_nan=False, allow_infinity=False)
metric_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,127}", fullmatch=True)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    if request.param == "sqlite":
        with Store.open(f"sqlite:///{tmp_path_factory.mktemp('db')}/round.db") as s:
            yield s
        return
    server = request.getfixturevalue("postgres")
    name = server.create_database()
    try:
        with Store.open(server.url(name)) as s:
            yield s
    finally:
        server.drop_database(name)


@settings(max_examples=60, deadline=None)
@given(
    metric=metric_names,
    series=st.lists(
        st.tuples(label_sets, values),
        min_size=1,
        max_size=5,
        unique_by=lambda x: str(sorted(x[0].items())),
    ),
    ts_ms=st.integers(min_value=0, max_value=2**42),
)
def test_round_trip(
    shared_store: Store, metric: str, series: list[tuple[dict[str, str], float]], ts_ms: int
) -> None:
    host = f"h{next(_names)}"
    ts = ts_ms / 1000
    samples = tuple(sample(metric, value, **labels) for labels, value in series)
    shared_store.record_runs([run(host, ts, *samples)])
    expected = {(metric, str(sorted(lb.items()))): (lb, v) for lb, v in series}
    expected.setdefault(("up", "[]"), ({}, 1.0))  # a probe `up` is shadowed by ours
    got = [s for s in shared_store.latest([host]) if s.metric in (metric, "up")]
    assert len(got) == len(expected)
    for s in got:
        labels, value = expected[(s.metric, str(sorted(s.labels.items())))]
        assert (s.host, s.ts, s.labels, s.value) == (host, ts, labels, value)
    for labels, value in series:
        if metric != "up":
            assert shared_store.history(host, metric, labels) == [
                StoredSample(host=host, metric=metric, labels=labels, ts=ts, value=value)
            ]


# -- query plans ----------------------------------------------------------------


def query_plans(store: Store, call: Callable[[], object]) -> list[str]:
    """EXPLAIN QUERY PLAN of every SELECT ``call`` runs."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    with store.engine.connect() as conn:
        return [
            "\n".join(row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
            for sql, params in seen
        ]


@pytest.fixture
def big(sqlite_store: Store) -> Store:
    store = sqlite_store
    for ts in range(20):
        store.record_runs(
            [
                run(
                    f"h{h:02}",
                    float(ts),
                    *(sample(f"m{m}", float(m), cpu=str(m % 3)) for m in range(6)),
                )
                for h in range(30)
            ]
        )
    with store.engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM samples")).scalar() == 20 * 30 * 7
        conn.exec_driver_sql("ANALYZE")
    return store


def assert_samples_by_primary_key(plan: str) -> None:
    lines = [line for line in plan.splitlines() if "samples" in line]
    assert lines, plan
    for line in lines:
        assert line.startswith("SEARCH samples USING PRIMARY KEY (series_id=?"), plan


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda s: s.latest(), 2),
        (lambda s: s.latest(["h03", "h07"], ["m1"]), 2),
        (lambda s: s.hosts(), 1),
    ],
)
def test_latest_uses_the_primary_key(
    big: Store, call: Callable[[Store], object], expected: int
) -> None:
    [plan] = query_plans(big, lambda: call(big))
    assert plan.count("CORRELATED SCALAR SUBQUERY") == expected, plan
    assert_samples_by_primary_key(plan)


def test_history_uses_the_primary_key(big: Store) -> None:
    [plan] = query_plans(big, lambda: big.history("h05", "m2", None, since=3.0, until=9.0))
    assert "SEARCH series USING" in plan, plan
    assert_samples_by_primary_key(plan)
    assert "ts_ms>? AND ts_ms<?" in plan, plan
    assert len(big.history("h05", "m2", None, since=3.0, until=9.0)) == 7


def test_store_opened_in_one_thread_works_in_another(store: Store) -> None:
    # collect.py calls record_runs through asyncio.to_thread
    result: list[Written] = []
    worker = threading.Thread(target=lambda: result.append(store.record_runs([run("a", 1.0)])))
    worker.start()
    worker.join()
    assert result == [Written(samples=1)]
    assert store.latest() == [stored("a", "up", 1.0, 1.0)]


# Opens a store at the head schema, writes a run whose rule fires (every upsert: hosts,
# series, samples, alert state; the history; the outbox), reads it back, and prints
# the SQLAlchemy dialect modules that got loaded.
_WRITE_AND_READ = """
import json, sys
from netmetrix import pipeline
from netmetrix.config import AlertRule
from netmetrix.model import HostRun, Sample
from netmetrix.store import Store
rule = AlertRule(metric="load1", op=">", limit=0.5, email=("ops@example.com",))
load = Sample(metric="load1", labels=(), value=1.0)
with Store.open(sys.argv[1]) as store:
    run = HostRun(host="a", address="a", ts=1.0, ok=True, samples=(load,))
    done = pipeline.record(store, [run], [rule], now=1.0)
    assert (done.samples, done.queued) == (2, 1), done
    assert len(store.latest()) == 2 and len(store.outbox()) == 1
    assert store.hosts()[0].up == 1.0 and store.collector_id()
print(json.dumps(sorted(m for m in sys.modules if m.startswith("sqlalchemy.dialects."))))
"""


def test_a_sqlite_store_never_loads_the_postgresql_dialect(db_url: str) -> None:
    """Importing SQLAlchemy's PostgreSQL dialect costs ~50 ms per run; SQLite needs none
    of it once its schema is at the head (Alembic, which migrates, imports it) (#12)."""
    Store.open(db_url).close()
    done = subprocess.run(
        [sys.executable, "-c", _WRITE_AND_READ, db_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert "sqlalchemy.dialects.sqlite" in loaded
    assert [m for m in loaded if "postgresql" in m] == []


def test_schema_head_constant_matches_the_migrations() -> None:
    """Store.open skips importing alembic when the database is at SCHEMA_HEAD."""
    from netmetrix.store import SCHEMA_HEAD

    assert Store.schema_head() == SCHEMA_HEAD


def test_switch_to_wal_waits_for_another_connection(tmp_path: Path) -> None:
    """SQLite does not wait (busy handler) for the WAL switch of a fresh file: two
    collectors starting at once failed now and then with "database is locked" (#10)."""
    path = tmp_path / "fresh.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x)")  # a rollback-journal database, as before the first open
    # Another connection about to write holds the RESERVED lock: SQLite then refuses
    # the switch at once instead of waiting (deadlock avoidance), as when two
    # collectors open a fresh file at the same moment.
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.5, other.rollback)
    release.start()
    try:
        with Store.open(f"sqlite:///{path}", busy_timeout=30) as store:
            assert store.schema_version() == SCHEMA_HEAD
    finally:
        release.cancel()
        release.join()
        other.close()
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        check.close()


# ---------------------------------------------------------------- owner-only files (#11)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The common umask, under which files would otherwise be created world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask_022")
def test_new_sqlite_store_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "state" / "netmetrix" / "netmetrix.db"
    with Store.open(f"sqlite:///{path}") as store:
        store.add_pending_keys([("f4", "kid", b"k" * 32)])  # a write: the -wal and -shm files exist
        modes = {p.name: mode_of(p) for p in path.parent.iterdir()}
        assert modes == {
            "netmetrix.db": 0o600,
            "netmetrix.db-wal": 0o600,
            "netmetrix.db-shm": 0o600,
        }
    assert (mode_of(tmp_path / "state"), mode_of(path.parent)) == (0o700, 0o700)


@pytest.mark.usefixtures("umask_022")
def test_existing_directory_is_left_as_it_is(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    with Store.open(f"sqlite:///{tmp_path}/netmetrix.db"):
        pass
    assert (mode_of(tmp_path), mode_of(tmp_path / "netmetrix.db")) == (0o755, 0o600)


def test_store_readable_by_others_gets_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "netmetrix.db"
    files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
    with Store.open(f"sqlite:///{path}") as holder:
        holder.add_pending_keys([("f4", "kid", b"k" * 32)])  # holds the -wal and -shm open
        for file in files:
            file.chmod(0o644)
        with caplog.at_level(logging.WARNING, logger="netmetrix.store"):
            Store.open(f"sqlite:///{path}").close()
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("netmetrix.store")]
    shown = ", ".join(f"{file} (mode 0644)" for file in files)
    assert warnings == [
        f"database {shown} can be read by other users, and it holds every host's key:"
        f" run chmod 600 {' '.join(map(str, files))}"
    ]
    assert mode_of(path) == 0o644  # a warning, not a surprise chmod

    caplog.clear()
    for file in files:
        if file.exists():  # SQLite removes -wal and -shm when the last connection closes
            file.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="netmetrix.store"):
        Store.open(f"sqlite:///{path}").close()
    assert [r for r in caplog.records if r.name.startswith("netmetrix.store")] == []


def test_unwritable_store_directory_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError) as caught:
        Store.open(f"sqlite:///{tmp_path}/file/sub/netmetrix.db")
    assert str(caught.value) == (
        f"database sqlite:///{tmp_path}/file/sub/netmetrix.db:"
        f" cannot create directory '{tmp_path}/file/sub': Not a directory"
    )


# -- one host's unwritable row fails that host only (#10) -------------------------

BAD_RUNS = {
    # what a host could send before sanitising, or what a future field might carry
    "surrogate version": run("bad", 50.0, sample("load1", 7.0), version="1.0\ud800"),
    "surrogate metric": run("bad", 50.0, sample("load1\udcff", 7.0)),
    "NUL in the error": run("bad", 50.0, ok=False, error="bad message: oops\x00", version=None),
}


@pytest.mark.parametrize("case", sorted(BAD_RUNS))
def test_one_hosts_unwritable_row_fails_that_host_only(store: Store, case: str) -> None:
    good = [run(h, 50.0, sample("cpu_percent", 90.0)) for h in ("a", "c")]
    dialect = store.engine.dialect.name
    written = store.record_runs([good[0], BAD_RUNS[case], good[1]])
    refused = case != "NUL in the error" or dialect == "postgresql"  # SQLite stores a NUL
    latest = {(s.host, s.metric): s.value for s in store.latest()}
    for host in ("a", "c"):  # the others are stored: samples and up
        assert latest[(host, "cpu_percent")] == 90.0
        assert latest[(host, "up")] == 1.0
    assert latest[("bad", "up")] == 0.0  # refused, or failed in the first place
    if not refused:
        assert written.refused == ()
        return
    [failure] = written.refused
    assert failure.host == "bad"
    assert failure.reason.startswith("the database refused this host's data: ")
    assert "\n" not in failure.reason
    assert "\x00" not in failure.reason
    failure.reason.encode("utf-8")  # clean: no surrogate either
    assert written.samples == 5  # a, c: cpu_percent + up; bad: up 0 only
    rows = {row.name: row for row in store.hosts()}
    assert rows["bad"].last_error == f"bad message: {failure.reason}"
    assert rows["bad"].probe_version is None
    assert rows["bad"].last_seen is None
    assert not any(s.host == "bad" and s.metric != "up" for s in store.latest())


def test_an_unwritable_row_does_not_stop_alerts(store: Store) -> None:
    rules = [
        AlertRule(metric="cpu_percent", op=">", limit=50.0, email=("ops@example.com",)),
        AlertRule(metric="up", op="==", limit=0.0, email=("ops@example.com",)),
    ]
    store.record_runs([run("bad", 1.0)])  # it answered once: its up == 0 may page (#11)
    runs = [
        run("a", 60.0, sample("cpu_percent", 90.0)),
        run("bad", 60.0, sample("cpu_percent", 95.0), version="\ud800"),
    ]
    recorded = pipeline.record(store, runs, rules, now=60.0)
    assert [r.host for r in recorded.refused] == ["bad"]
    # a's cpu fires; bad's refused cpu sample does not, its up == 0 does
    fired = sorted((a.host, a.metric) for a in store.alerts_active())
    assert fired == [("a", "cpu_percent"), ("bad", "up")]
    assert (recorded.events, recorded.queued) == (2, 2)
    assert len(store.outbox()) == 2


def test_a_locked_database_is_not_retried_host_by_host(db_path: Path, db_url: str) -> None:
    with Store.open(db_url, busy_timeout=0.05) as store:
        store.record_runs([run("a", 1.0)])
        locker = sqlite3.connect(db_path, isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError, match=r" is locked: "):
                store.record_runs([run("a", 2.0), run("b", 2.0)])
        finally:
            locker.rollback()
            locker.close()
        assert store.latest() == [stored("a", "up", 1.0, 1.0)]  # nothing half-written


def test_driver_errors_outside_sqlalchemy_are_store_errors(
    sqlite_store: Store, db_url: str
) -> None:
    # sqlite3 raises UnicodeEncodeError itself, unwrapped by SQLAlchemy
    with pytest.raises(StoreError) as info:
        sqlite_store.add_pending_keys([("h\ud800", "kid", b"k" * 32)])
    assert str(info.value) == (
        f"database {db_url}: cannot add host keys: UnicodeEncodeError: 'utf-8' codec can't "
        "encode character '\\ud800' in position 1: surrogates not allowed"
    )
