"""Store: schema by migration, runs -> samples/up/hosts, queries, keys, locking."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, event, text

from netmetrix.envelope import Sample
from netmetrix.errors import StoreError
from netmetrix.store import HostRow, HostRun, Store, StoredSample, metadata


def sample(metric: str, value: float, **labels: str) -> Sample:
    return Sample(metric=metric, labels=tuple(sorted(labels.items())), value=value)


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
    assert sqlite_store.schema_version() == "0003"
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
        assert first.record_runs([run("a", 10.0, sample("load1", 0.5))]) == 2
    with Store.open(store_url) as second:
        assert second.schema_version() == "0003"
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
    assert written == 4
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
    assert written == 3
    [row] = store.hosts()
    assert (row.last_seen, row.last_error, row.up) == (100.0, "timeout", 0.0)
    assert [s.value for s in store.history("a", "up")] == [1.0, 0.0]


def test_failed_run_without_message_still_records_an_error(store: Store) -> None:
    store.record_runs([run("a", 1.0, ok=False)])
    assert store.hosts()[0].last_error == "failed"


def test_duplicate_timestamps_are_ignored(store: Store) -> None:
    assert store.record_runs([run("a", 100.0, sample("load1", 1.0))]) == 2
    assert store.record_runs([run("a", 100.0, sample("load1", 9.0))]) == 0
    # same millisecond inside one batch: the first sample stays, so does the collector's `up`
    batch = run("a", 100.5, sample("load1", 2.0), sample("load1", 3.0), sample("up", 5.0))
    assert store.record_runs([batch]) == 2
    assert store.history("a", "load1") == [
        stored("a", "load1", 100.0, 1.0),
        stored("a", "load1", 100.5, 2.0),
    ]
    assert [s.value for s in store.history("a", "up")] == [1.0, 1.0]


def test_record_runs_empty_and_nan(store: Store) -> None:
    assert store.record_runs([]) == 0
    with pytest.raises(StoreError, match=r'^host "a": load1 is NaN, not stored$'):
        store.record_runs([run("a", 1.0, sample("load1", float("nan")))])
    assert store.hosts() == []


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
        assert store.record_runs(runs) == 41_000
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
    store.add_pending_key("a", "k1", b"\x01" * 32)
    store.activate_key("a", "k1")
    store.add_pending_key("a", "k2", b"\x02" * 32)
    store.add_pending_key("b", "k9", b"\x09" * 32)
    assert store.host_keys(["a", "b", "c"]) == {
        "a": {"k1": b"\x01" * 32, "k2": b"\x02" * 32},
        "b": {"k9": b"\x09" * 32},
    }
    # a second upload before the first one's key was ever used keeps it: a crashed
    # upload may have left k2 on the host
    store.add_pending_key("a", "k3", b"\x03" * 32)
    assert store.host_keys(["a"]) == {
        "a": {"k1": b"\x01" * 32, "k2": b"\x02" * 32, "k3": b"\x03" * 32}
    }
    store.activate_key("a", "k3")
    store.activate_key("a", "k3")
    assert store.host_keys(["a"]) == {"a": {"k3": b"\x03" * 32}}
    # re-adding the active key changes nothing
    store.add_pending_key("a", "k3", b"\x03" * 32)
    store.activate_key("a", "k3")
    assert store.host_keys(["a", "b"]) == {"a": {"k3": b"\x03" * 32}, "b": {"k9": b"\x09" * 32}}


def test_activate_unknown_key_is_an_error(store: Store) -> None:
    store.add_pending_key("a", "k1", b"\x01" * 32)
    with pytest.raises(StoreError) as info:
        store.activate_key("a", "k2")
    assert str(info.value) == "host \"a\": no key 'k2' to activate (upload again)"
    assert store.host_keys(["a"]) == {"a": {"k1": b"\x01" * 32}}


def test_same_key_id_for_another_key_is_an_error(store: Store) -> None:
    store.add_pending_key("a", "k1", b"\x01" * 32)
    with pytest.raises(StoreError, match="key id 'k1' already names another key"):
        store.add_pending_key("a", "k1", b"\x02" * 32)


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
        assert s.schema_version() == "0003"
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
        assert store.record_runs([run("a", 2.0)]) == 1


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
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(store.record_runs([run("a", 1.0)])))
    worker.start()
    worker.join()
    assert result == [1]
    assert store.latest() == [stored("a", "up", 1.0, 1.0)]


def test_schema_head_constant_matches_the_migrations() -> None:
    """Store.open skips importing alembic when the database is at SCHEMA_HEAD."""
    from netmetrix.store import SCHEMA_HEAD

    assert Store.schema_head() == SCHEMA_HEAD
