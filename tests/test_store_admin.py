"""store.admin: info, prune (exact, batched, beside writers), retention, vacuum, upgrade."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Fleet, Run

from netmetrix.model import HostRun, Sample
from netmetrix.store import Store, admin

Cli = Callable[..., Run]
DAY = 86400.0


def run(host: str, ts: float, *values: float) -> HostRun:
    samples = tuple(Sample(metric="load1", labels=(), value=v) for v in values[:1])
    samples += tuple(
        Sample(metric="disk_percent", labels=(("mount", f"/m{i}"),), value=v)
        for i, v in enumerate(values[1:])
    )
    return HostRun(host=host, address=host, ts=ts, ok=True, samples=samples)


def all_samples(store: Store) -> list[tuple[str, str, float]]:
    """(host, metric, ts) of every stored sample, sorted."""
    found = []
    for host in sorted(store.host_names()):
        for metric in sorted(store.metric_names()):
            found += [(s.host, s.metric, s.ts) for s in store.history(host, metric)]
    return sorted(found)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as s:
        yield s


# -- info -----------------------------------------------------------------------


def test_info_of_an_empty_and_of_a_filled_store(store: Store) -> None:
    empty = admin.info(store)
    assert (empty.series, empty.samples, empty.oldest, empty.newest) == (0, 0, None, None)
    assert empty.schema_version == empty.schema_head == Store.schema_head()
    assert empty.url == store.url_display
    assert empty.size_bytes is not None
    assert empty.size_bytes > 0
    store.record_runs([run("a", 100.0, 1.0, 2.0), run("b", 50.25, 3.0)])
    store.record_runs([run("a", 200.5, 1.0)])
    found = admin.info(store)
    # series: a/load1, a/disk{/m0}, a/up, b/load1, b/up; samples: 4 + 2 at 100/50.25, 2 at 200.5
    assert (found.series, found.samples, found.oldest, found.newest) == (5, 7, 50.25, 200.5)
    assert found.backend == store.engine.dialect.name


def test_info_without_upgrading_a_fresh_database(store_url: str) -> None:
    with Store.open(store_url, upgrade=False) as store:
        found = admin.info(store)
        assert (found.schema_version, found.series, found.samples) == (None, 0, 0)
        assert found.schema_head == Store.schema_head()
        assert admin.upgrade(store) == (None, Store.schema_head())
        assert admin.upgrade(store) == (Store.schema_head(), Store.schema_head())
        assert admin.info(store).schema_version == Store.schema_head()


# -- prune ----------------------------------------------------------------------


def test_prune_removes_exactly_the_samples_older_than_the_cutoff(store: Store) -> None:
    for ts in (899.998, 899.999, 900.0, 900.001, 950.0):
        store.record_runs([run("a", ts, ts)])
    result = admin.prune(store, 100.0, now=1000.0)
    assert (result.deleted, result.cutoff, result.batches) == (4, 900.0, 1)  # 2 x (load1, up)
    assert [s.ts for s in store.history("a", "load1")] == [900.0, 900.001, 950.0]
    assert [s.ts for s in store.history("a", "up")] == [900.0, 900.001, 950.0]
    again = admin.prune(store, 100.0, now=1000.0)
    assert (again.deleted, again.batches) == (0, 0)


def test_prune_keeps_series_and_hosts(store: Store) -> None:
    store.record_runs([run("a", 10.0, 1.0)])
    assert admin.prune(store, 5.0, now=20.0).deleted == 2
    assert store.latest() == []
    assert [h.name for h in store.hosts()] == ["a"]
    assert admin.info(store).series == 2
    store.record_runs([run("a", 30.0, 2.0)])  # the kept series takes new samples
    assert [s.value for s in store.history("a", "load1")] == [2.0]


def test_prune_in_bounded_batches_over_many_series(store: Store) -> None:
    # 600 hosts x (load1, up) = 1200 series: more than one chunk of series ids
    for ts in (1.0, 2.0, 3.0, 10.0):
        store.record_runs([run(f"h{i:03}", ts, float(i)) for i in range(600)])
    statements: list[str] = []
    from sqlalchemy import event

    def count(*args: object) -> None:
        statement = str(args[2])
        if statement.lstrip().upper().startswith("DELETE"):
            statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        result = admin.prune(store, 5.0, now=10.0, batch=1000, pause=0)
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert result.deleted == 600 * 2 * 3
    # chunks of 500 series (1500 old samples): 1000 + 500, twice; then 200 series: 600
    assert result.batches == 2 + 2 + 1
    assert len(statements) == result.batches
    info = admin.info(store)
    assert (info.samples, info.oldest, info.newest) == (1200, 10.0, 10.0)


def test_prune_refuses_a_non_positive_age(store: Store) -> None:
    with pytest.raises(ValueError, match="older_than must be > 0"):
        admin.prune(store, 0)


def test_prune_while_a_collector_writes_loses_no_new_sample(store_url: str) -> None:
    with Store.open(store_url) as setup:
        for ts in range(100):
            setup.record_runs([run(f"old{i}", float(ts), 1.0, 2.0, 3.0) for i in range(10)])
    errors: list[BaseException] = []
    written: list[float] = []
    pruning = threading.Event()
    stop = threading.Event()

    def collector() -> None:
        try:
            with Store.open(store_url) as store:
                pruning.wait(10)
                ts = 1000.0
                while not stop.is_set() or len(written) < 5:
                    store.record_runs([run("new", ts, ts), run("old0", ts, ts)])
                    written.append(ts)
                    ts += 1
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=collector)
    thread.start()
    try:
        with Store.open(store_url) as store:
            pruning.set()
            # 100 x 10 hosts x 4 series = 4,000 old samples, in batches of 500
            result = admin.prune(store, 100.0, now=700.0, batch=500)
    finally:
        stop.set()
        thread.join(60)
    assert errors == []
    assert result.deleted == 4_000
    with Store.open(store_url) as store:
        assert [s.ts for s in store.history("new", "load1")] == written
        assert [s.ts for s in store.history("old0", "load1")] == written
        assert admin.info(store).samples == len(written) * 4


# -- retention ------------------------------------------------------------------


def test_retention_prunes_older_than_its_days_and_logs_it(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    now = 100 * DAY
    store.record_runs([run("a", now - 3 * DAY, 1.0)])
    store.record_runs([run("a", now - 2 * DAY, 2.0)])  # exactly 2 days old: kept
    store.record_runs([run("a", now - 60, 3.0)])
    with caplog.at_level(logging.INFO, logger="netmetrix.store.admin"):
        assert admin.apply_retention(store, 2, now=now) == 2
        assert admin.apply_retention(store, 2, now=now) == 0
    assert [r.getMessage() for r in caplog.records] == [
        "retention: pruned 2 samples older than 2 days (before 1970-04-09T00:00:00.000Z)"
    ]
    assert [s.value for s in store.history("a", "load1")] == [2.0, 3.0]


def test_retention_failure_is_a_warning_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "x.db"
    with Store.open(f"sqlite:///{path}", busy_timeout=0.05) as store:
        store.record_runs([run("a", 1.0, 1.0)])
        locker = sqlite3.connect(path, isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")
            with caplog.at_level(logging.WARNING, logger="netmetrix.store.admin"):
                assert admin.apply_retention(store, 1, now=10 * DAY) == 0
        finally:
            locker.rollback()
            locker.close()
        [record] = caplog.records
        assert record.levelno == logging.WARNING
        assert record.getMessage().startswith(
            f"retention: could not prune samples older than 1 days: database sqlite:///{path} "
            "is locked"
        )
        assert len(store.history("a", "load1")) == 1


def test_retention_never_raises_even_on_absurd_input(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A retention past what the database can hold is a warning, not a traceback (#10):
    config.xml now refuses such values, but housekeeping must never end a run."""
    with Store.open(f"sqlite:///{tmp_path}/x.db") as store:
        store.record_runs([run("a", 1.0, 1.0)])
        with caplog.at_level(logging.WARNING, logger="netmetrix.store.admin"):
            assert admin.apply_retention(store, 999_999_999_999, now=10 * DAY) == 0
        [record] = caplog.records
        assert record.levelno == logging.WARNING
        message = record.getMessage()
        assert message.startswith("retention: could not prune samples older than 999999999999 days")
        assert "OverflowError" in message
        assert len(store.history("a", "load1")) == 1


@pytest.mark.sshd
def test_execute_applies_retention(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("f1", 0)
    fleet.write(retention_days=1)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    now = time.time()
    with Store.open(f"sqlite:///{fleet.database}") as store:
        store.record_runs([run("f1", now - 2 * DAY, 7.0), run("gone", now - 1.5 * DAY, 8.0)])
        store.record_runs([run("f1", now - 0.5 * DAY, 9.0)])
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 0, ran.err
    assert "retention: pruned 4 samples older than 1 days" in ran.err
    with Store.open(f"sqlite:///{fleet.database}") as store:
        assert store.history("f1", "load1")[0].value == 9.0
        assert len(store.history("f1", "up")) == 2  # the half-day-old run and this one
        assert store.history("gone", "up") == []


# -- vacuum ---------------------------------------------------------------------


def test_vacuum_after_a_prune_keeps_the_data(store: Store) -> None:
    for ts in range(50):
        store.record_runs([run(f"h{i}", float(ts), *range(10)) for i in range(40)])
    before = all_samples(store)
    admin.prune(store, 10.0, now=50.0)
    kept = [s for s in before if s[2] >= 40.0]
    result = admin.vacuum(store)
    assert result.size_before is not None
    assert result.size_after is not None
    assert all_samples(store) == kept
    if store.engine.dialect.name == "sqlite":
        assert result.size_after < result.size_before / 2
        database = store.engine.url.database
        assert Path(f"{database}-wal").stat().st_size == 0  # checkpointed and truncated


def test_sizes(store: Store) -> None:
    size = admin.size_bytes(store)
    assert size is not None
    assert size > 0
    with Store.open("sqlite://") as memory:
        assert admin.size_bytes(memory) is None
