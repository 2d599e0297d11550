"""Store.history_buckets (series averaged per step) and Store.sparklines (values at
instants), in SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import sample
from sqlalchemy import event
from test_store import assert_samples_by_primary_key, run

from netmetrix.store import Buckets, Sparkline, Store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as s:
        yield s


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """SQLite only: EXPLAIN QUERY PLAN, and a bulk insert in SQL."""
    with Store.open(f"sqlite:///{tmp_path}/netmetrix.db") as s:
        yield s


def plans_of(store: Store, call: Callable[[], object]) -> list[str]:
    """EXPLAIN QUERY PLAN of every query ``call`` runs (SELECT and WITH)."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
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
def filled(store: Store) -> Store:
    """web1: cpu_percent every 10 s from t=1000 to 1290, value t/10; disk_percent on two
    mounts; db1: cpu_percent at 1000 and 1200 only."""
    for ts in range(1000, 1300, 10):
        store.record_runs(
            [
                run(
                    "web1",
                    float(ts),
                    sample("cpu_percent", ts / 10),
                    sample("disk_percent", 50.0, mount="/"),
                    sample("disk_percent", float(ts % 7), mount="<script>alert(1)</script>"),
                )
            ]
        )
    store.record_runs([run("db1", 1000.0, sample("cpu_percent", 4.0))])
    store.record_runs([run("db1", 1200.0, sample("cpu_percent", 8.0))])
    return store


def test_the_mean_of_each_step_aligned_to_the_epoch(filled: Store) -> None:
    [cpu] = filled.history_buckets(["web1"], ["cpu_percent"], 60.0, 0.0, 2000.0)
    assert isinstance(cpu, Buckets)
    assert cpu.host == "web1"
    assert cpu.metric == "cpu_percent"
    assert cpu.labels == {}
    assert cpu.step == 60.0
    # 960-1019: 1000, 1010 -> 100.5; 1020-1079: 102-107 -> 104.5; ... 1260-1319: 126-129
    assert cpu.points == (
        (960.0, 100.5),
        (1020.0, 104.5),
        (1080.0, 110.5),
        (1140.0, 116.5),
        (1200.0, 122.5),
        (1260.0, 127.5),
    )


def test_one_buckets_per_label_set_and_host(filled: Store) -> None:
    found = filled.history_buckets(
        ["web1", "db1"], ["cpu_percent", "disk_percent"], 300.0, 0.0, 2000.0
    )
    assert [(b.host, b.metric, b.labels) for b in found] == [
        ("db1", "cpu_percent", {}),
        ("web1", "cpu_percent", {}),
        ("web1", "disk_percent", {"mount": "/"}),
        ("web1", "disk_percent", {"mount": "<script>alert(1)</script>"}),
    ]
    # db1 has no sample in 1050-1199: that step is left out, not a zero
    assert found[0].points == ((900.0, 4.0), (1200.0, 8.0))
    assert found[2].points == ((900.0, 50.0), (1200.0, 50.0))
    hostile = [ts % 7 for ts in range(1200, 1300, 10)]
    ts, mean = found[3].points[1]
    assert ts == 1200.0
    assert mean == pytest.approx(sum(hostile) / len(hostile))


def test_no_metrics_means_every_metric_and_up_is_one_of_them(filled: Store) -> None:
    found = filled.history_buckets(["db1"], [], 3600.0, 0.0, 3599.0)
    assert [(b.metric, b.points) for b in found] == [
        ("cpu_percent", ((0.0, 6.0),)),
        ("up", ((0.0, 1.0),)),
    ]


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (1000.0, 1000.0, [(1000.0, 100.0)]),
        (1010.0, 1030.0, [(1000.0, 101.0), (1020.0, 102.5)]),
        (0.0, 1005.0, [(1000.0, 100.0)]),
        (1285.0, 5000.0, [(1280.0, 129.0)]),
        (1001.0, 1009.0, []),
    ],
)
def test_since_and_until_are_inclusive_and_cut_inside_a_step(
    filled: Store, since: float, until: float, expected: list[tuple[float, float]]
) -> None:
    found = filled.history_buckets(["web1"], ["cpu_percent"], 20.0, since, until)
    assert [p for b in found for p in b.points] == expected


def test_unknown_hosts_and_metrics_give_nothing(filled: Store) -> None:
    assert filled.history_buckets(["nope"], [], 60.0, 0.0, 2000.0) == []
    assert filled.history_buckets(["web1"], ["nope"], 60.0, 0.0, 2000.0) == []
    assert filled.history_buckets([], [], 60.0, 0.0, 2000.0) == []


def test_a_step_below_a_millisecond_is_one_millisecond(filled: Store) -> None:
    [cpu] = filled.history_buckets(["db1"], ["cpu_percent"], 0.0001, 1000.0, 1000.0)
    assert cpu.step == 0.001
    assert cpu.points == ((1000.0, 4.0),)


def test_more_than_ten_thousand_steps_is_refused(filled: Store) -> None:
    with pytest.raises(ValueError, match="10001 steps, more than 10000: give a longer step"):
        filled.history_buckets(["db1"], [], 1.0, 0.0, 10000.0)
    assert filled.history_buckets(["db1"], [], 1.0, 1.0, 10000.0)  # 10,000 is fine


def test_many_hosts_beyond_one_in_list(store: Store) -> None:
    """More hosts than one IN (...) list takes (500): every one is still answered."""
    store.record_runs([run(f"h{i:04}", 100.0) for i in range(1200)])
    names = [f"h{i:04}" for i in range(1200)]
    found = store.history_buckets(names, ["up"], 60.0, 0.0, 200.0)
    assert len(found) == 1200
    assert {b.points for b in found} == {((60.0, 1.0),)}
    lines = store.sparklines(names, [("up", {})], 200.0, 100.0, 3)
    assert len(lines) == 1200
    assert {(s.latest, s.points) for s in lines} == {(1.0, ((100.0, 1.0),))}


def test_a_week_of_one_second_samples_comes_back_as_a_few_hundred_points(
    sqlite_store: Store,
) -> None:
    """604,800 samples of one series in 15-minute steps: 672 points, each the mean."""
    store = sqlite_store
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO series (host, metric, labels) VALUES ('h', 'cpu_percent', '{}')"
        )
        conn.exec_driver_sql(
            "WITH RECURSIVE t(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM t WHERE i < 604799)"
            " INSERT INTO samples (series_id, ts_ms, value) SELECT 1, i * 1000, i % 900 FROM t"
        )
    [week] = store.history_buckets(["h"], ["cpu_percent"], 900.0, 0.0, 604799.0)
    assert len(week.points) == 672
    assert {value for _ts, value in week.points} == {449.5}
    assert week.points[-1][0] == 671 * 900.0


def test_the_samples_are_read_by_primary_key_series_after_series(sqlite_store: Store) -> None:
    store = sqlite_store
    hosts = [f"h{i:03}" for i in range(400)]  # many series: SQLite's choice of loop order
    for ts in range(3):
        store.record_runs([run(h, float(ts), sample("m", 1.0)) for h in hosts])
    plans = plans_of(store, lambda: store.history_buckets(hosts, ["m"], 5.0, 2.0, 8.0))
    assert len(plans) == 2
    assert "SEARCH series USING" in plans[0], plans[0]
    assert_samples_by_primary_key(plans[1])
    assert "TEMP B-TREE FOR GROUP BY" not in plans[1]  # no sort of the samples
    # the series outside, the steps inside: one series' steps read neighbouring pages
    # (the last SCAN steps is the main loop's; the one before it makes the CTE)
    lines = plans[1].splitlines()
    series = lines.index("SEARCH series USING INTEGER PRIMARY KEY (rowid=?)")
    assert series < max(i for i, line in enumerate(lines) if line == "SCAN steps"), plans[1]
    plans = plans_of(store, lambda: store.sparklines(hosts, [("m", {})], 9.0, 3.0, 3))
    assert len(plans) == 2
    assert_samples_by_primary_key(plans[1])
    assert plans[1].count("CORRELATED SCALAR SUBQUERY") == 1 + 3  # the latest; 3 instants


# -- sparklines ---------------------------------------------------------------


def test_sparklines_are_the_newest_sample_before_each_instant(filled: Store) -> None:
    found = filled.sparklines(
        ["web1", "db1", "nope"],
        [("cpu_percent", {}), ("disk_percent", {"mount": "/"})],
        until=1300.0,
        step=100.0,
        count=4,
    )
    assert isinstance(found[0], Sparkline)
    assert [(s.host, s.metric, s.labels) for s in found] == [
        ("db1", "cpu_percent", {}),
        ("web1", "cpu_percent", {}),
        ("web1", "disk_percent", {"mount": "/"}),  # not the hostile mount: not asked for
    ]
    db1, web1, disk = found
    # instants 1000, 1100, 1200, 1300; each takes the newest sample in (t - 100, t]
    assert db1.latest == 8.0
    assert db1.points == ((1000.0, 4.0), (1200.0, 8.0))  # nothing in (1000, 1100]: a gap
    assert web1.latest == 129.0
    assert web1.points == ((1000.0, 100.0), (1100.0, 110.0), (1200.0, 120.0), (1300.0, 129.0))
    assert disk.points[-1] == (1300.0, 50.0)


def test_a_sparkline_keeps_the_latest_sample_however_old(filled: Store) -> None:
    [db1] = filled.sparklines(["db1"], [("cpu_percent", {})], until=9000.0, step=60.0, count=5)
    assert db1.latest == 8.0
    assert db1.points == ()
    [early] = filled.sparklines(["db1"], [("cpu_percent", {})], until=1100.0, step=60.0, count=2)
    assert early.latest == 4.0  # nothing after until counts


@pytest.mark.parametrize("count", [0, 101])
def test_sparklines_take_one_to_a_hundred_instants(filled: Store, count: int) -> None:
    with pytest.raises(ValueError, match="instants: give 1 to 100"):
        filled.sparklines(["db1"], [("up", {})], 1000.0, 1.0, count)
