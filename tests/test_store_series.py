"""Series are inserted once and looked up after that: `watch` writes the same ones every tick.

Counted with SQLAlchemy's ``before_cursor_execute`` event on the store's own
engine, on SQLite and PostgreSQL (conftest's ``store_url``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import sample
from sqlalchemy import event

from netmetrix.model import HostRun, Sample
from netmetrix.store import Store, StoredSample


def run(host: str, ts: float, *samples: Sample) -> HostRun:
    return HostRun(host=host, address=host, ts=ts, ok=True, probe_version="1.0", samples=samples)


def tick(ts: float, *extra: Sample) -> list[HostRun]:
    """One tick of two hosts, each with a plain and a labelled series (and `up`)."""
    return [
        run(host, ts, sample("load1", ts / 100), sample("disk_percent", ts / 10, mount="/"), *extra)
        for host in ("a", "b")
    ]


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as s:
        yield s


@pytest.fixture
def statements(store: Store) -> Iterator[list[str]]:
    """The SQL the store sends from now on."""
    sent: list[str] = []

    def count(*args: object) -> None:
        sent.append(str(args[2]))

    event.listen(store.engine, "before_cursor_execute", count)
    yield sent
    event.remove(store.engine, "before_cursor_execute", count)


def series_inserts(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith("INSERT INTO SERIES")]


def test_a_tick_of_known_series_inserts_no_series(store: Store, statements: list[str]) -> None:
    store.record_runs(tick(100.0))
    assert len(series_inserts(statements)) == 1  # the first tick makes them, in one statement
    statements.clear()
    assert store.record_runs(tick(101.0)).samples == 6  # 2 hosts x (2 series + up)
    assert series_inserts(statements) == []
    assert store.history("a", "load1") == [
        StoredSample(host="a", metric="load1", labels={}, ts=100.0, value=1.0),
        StoredSample(host="a", metric="load1", labels={}, ts=101.0, value=1.01),
    ]


def test_a_new_series_of_a_known_host_is_added(store: Store, statements: list[str]) -> None:
    store.record_runs(tick(100.0))
    statements.clear()
    written = store.record_runs(tick(101.0, sample("disk_percent", 7.0, mount="/var")))
    assert written.samples == 8
    assert len(series_inserts(statements)) == 1
    assert [s.value for s in store.history("b", "disk_percent", {"mount": "/var"})] == [7.0]
    assert [s.value for s in store.history("b", "disk_percent", {"mount": "/"})] == [10.0, 10.1]


def test_a_forgotten_host_gets_new_series(store: Store) -> None:
    store.record_runs(tick(100.0))
    with store.transaction("forget a") as tx:
        tx.forget_host("a")
    assert store.record_runs(tick(101.0)).samples == 6
    assert [s.ts for s in store.history("a", "load1")] == [101.0]
    assert [s.ts for s in store.history("b", "load1")] == [100.0, 101.0]
