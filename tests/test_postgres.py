"""PostgreSQL specifics: password from the environment, schema, concurrent collectors, plans.

The query-plan test doubles as the tool behind docs/store-plans.md:
``NETMETRIX_PLAN_SAMPLES=1000000 pytest -s tests/test_postgres.py -k plans`` prints
the plans with 1M samples on both engines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pgserver
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import Fleet, Run
from sqlalchemy import event

from netmetrix import probe
from netmetrix.configxml import ConfigXml, Host, render
from netmetrix.errors import StoreError
from netmetrix.model import HostRun, Sample
from netmetrix.store import Store, metadata
from netmetrix.store import admin as dbadmin

Cli = Callable[..., Run]
DAY = 86400.0


def run(host: str, ts: float, *values: float, ok: bool = True) -> HostRun:
    samples = tuple(Sample(metric=f"m{i}", labels=(), value=v) for i, v in enumerate(values))
    return HostRun(host=host, address=host, ts=ts, ok=ok, samples=samples)


@pytest.fixture
def database(postgres: pgserver.Postgres) -> Iterator[str]:
    """A fresh database owned by the password role ``monitor``; yields its name."""
    name = postgres.create_database()
    try:
        yield name
    finally:
        postgres.drop_database(name)


# -- password from the environment ---------------------------------------------


def test_password_comes_from_pgpassword_and_is_never_shown(
    postgres: pgserver.Postgres,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    netmetrix: Cli,
) -> None:
    url = postgres.url(database, user=pgserver.PASSWORD_USER)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    with pytest.raises(StoreError) as info:
        Store.open(url)
    assert str(info.value).startswith(f"database {url}: cannot read the schema version: ")
    assert "password" in str(info.value)  # libpq says a password was needed

    monkeypatch.setenv("PGPASSWORD", pgserver.PASSWORD)
    with Store.open(url) as store:
        store.record_runs([run("a", 1.0, 2.0)])
        assert store.url_display == url
    config = tmp_path / "config.xml"
    config.write_text(render(ConfigXml(database=url, hosts=[Host(name="a")])))
    outputs = ""
    for args in (
        ["db", "info"],
        ["db", "info", "--format", "json"],
        ["config", "show", "--format", "csv"],
        ["metrics", "latest"],
        ["db", "upgrade"],
    ):
        done = netmetrix("--config", config, *args)
        assert done.code == 0, done.err
        outputs += done.out + done.err
    assert pgserver.PASSWORD not in outputs
    assert re.search(rf"^url +{re.escape(url)}$", outputs, re.MULTILINE)  # db info's table
    assert "database.password,$PGPASSWORD (set),environment\n" in outputs


def test_password_from_pgpass(
    postgres: pgserver.Postgres,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    isolated_home: Path,
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    pgpass = isolated_home / ".pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres.port}:*:{pgserver.PASSWORD_USER}:{pgserver.PASSWORD}\n")
    pgpass.chmod(0o600)
    with Store.open(postgres.url(database, user=pgserver.PASSWORD_USER)) as store:
        assert store.schema_version() == Store.schema_head()


def test_a_password_in_the_config_url_is_refused_and_not_echoed(
    tmp_path: Path, netmetrix: Cli
) -> None:
    config = tmp_path / "config.xml"
    config.write_text(
        "<netmetrix>\n"
        "  <database>postgresql://monitor:s3cr3t@db.example.com/netmetrix</database>\n"
        '  <hosts><host name="a"/></hosts>\n'
        "</netmetrix>\n"
    )
    done = netmetrix("config", "check", config)
    assert done.code == 2
    assert "s3cr3t" not in done.err
    assert done.err == (
        f"{config}:2: <database>: the URL contains a password; keep secrets out of the"
        " config file (PostgreSQL reads PGPASSWORD or ~/.pgpass)\n"
    )


# -- schema ---------------------------------------------------------------------


def test_migrations_create_exactly_the_metadata_schema(postgres: pgserver.Postgres) -> None:
    name = postgres.create_database()
    try:
        with Store.open(postgres.url(name)) as store, store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        postgres.drop_database(name)


# -- concurrent writers ---------------------------------------------------------


def test_concurrent_writers_and_pruners_lose_nothing(
    postgres: pgserver.Postgres, database: str
) -> None:
    url = postgres.url(database)
    with Store.open(url) as setup:
        for ts in range(20):
            setup.record_runs(
                [run(f"w{w}h{h}", float(ts), 1.0, 2.0) for w in range(4) for h in range(5)]
            )
    barrier = threading.Barrier(6, timeout=30)
    errors: list[BaseException] = []
    pruned: list[int] = []

    def writer(w: int) -> None:
        try:
            with Store.open(url) as store:
                barrier.wait()
                for ts in range(1000, 1040):
                    store.record_runs([run(f"w{w}h{h}", float(ts), ts, -ts) for h in range(5)])
        except BaseException as exc:
            errors.append(exc)

    def pruner() -> None:
        try:
            with Store.open(url) as store:
                barrier.wait()
                pruned.append(dbadmin.prune(store, 500.0, now=1000.0, batch=37).deleted)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    threads += [threading.Thread(target=pruner) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert sum(pruned) == 20 * 20 * 3  # every old sample deleted exactly once
    with Store.open(url) as store:
        for w in range(4):
            for h in range(5):
                host = f"w{w}h{h}"
                assert [s.value for s in store.history(host, "m0")] == [
                    float(t) for t in range(1000, 1040)
                ]
                assert [s.value for s in store.history(host, "m1")] == [
                    -float(t) for t in range(1000, 1040)
                ]
                assert len(store.history(host, "up")) == 40
        assert dbadmin.info(store).samples == 20 * 40 * 3


@pytest.mark.sshd
def test_two_concurrent_executes_on_one_database(
    fleet: Fleet, postgres: pgserver.Postgres, database: str, netmetrix: Cli
) -> None:
    """Two collectors with disjoint -h sets, three rounds each, at once; retention in both."""
    hosts = {"a": ["a1", "a2"], "b": ["b1", "b2"]}
    for i, name in enumerate(hosts["a"] + hosts["b"]):
        fleet.host(name, i % 2)
    url = postgres.url(database)
    fleet.settings["database"] = url
    fleet.write(retention_days=1)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    now = time.time()
    with Store.open(url) as store:
        store.record_runs([run(name, now - 2 * DAY, 1.0) for name in hosts["a"] + hosts["b"]])
    exe = Path(sys.executable).with_name("netmetrix")
    procs = {
        group: subprocess.Popen(
            [
                "sh",
                "-c",
                'for i in 1 2 3; do "$0" "$@" || exit 1; done',
                str(exe),
                "--config",
                str(fleet.config),
                "execute",
                *(arg for name in names for arg in ("-h", name)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for group, names in hosts.items()
    }
    outputs = {group: proc.communicate(timeout=120) for group, proc in procs.items()}
    for group, proc in procs.items():
        assert proc.returncode == 0, outputs[group][1]
        assert outputs[group][0] == ""
        assert outputs[group][1].count("execute: 2 ok") == 3
    # retention in either collector: the 8 old samples (4 hosts x m0, up) go exactly once
    pruned = re.findall(r"retention: pruned (\d+) samples", "".join(e for _, e in outputs.values()))
    assert sum(map(int, pruned)) == 8
    expected = {m[0] for m in probe.METRICS} | {"up"}
    with Store.open(url) as store:
        for name in hosts["a"] + hosts["b"]:
            assert [s.value for s in store.history(name, "up")] == [1.0, 1.0, 1.0]
            latest = store.latest([name])
            assert {s.metric for s in latest} == expected
            for s in latest:
                assert len(store.history(name, s.metric, s.labels)) == 3, s
        assert store.history("a1", "m0") == []  # the 2-day-old sample went


# -- query plans ----------------------------------------------------------------

PLAN_SAMPLES = int(os.environ.get("NETMETRIX_PLAN_SAMPLES", "20000"))
PLAN_METRICS = 24  # + up = 25 series per host
PLAN_POINTS = 40  # samples per series


def fill_for_plans(store: Store, samples: int) -> int:
    """Hosts x 25 series x 40 points, as record_runs writes them; returns the host count."""
    hosts = max(1, samples // ((PLAN_METRICS + 1) * PLAN_POINTS))
    for point in range(PLAN_POINTS):
        store.record_runs(
            [
                run(
                    f"h{h:05}",
                    1_700_000_000.0 + 60 * point,
                    *(float(m) for m in range(PLAN_METRICS)),
                )
                for h in range(hosts)
            ]
        )
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    else:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return hosts


def explain(store: Store, call: Callable[[], object]) -> tuple[list[str], float]:
    """The plan of every SELECT ``call`` runs, and how long ``call`` took (seconds)."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        started = time.perf_counter()
        call()
        took = time.perf_counter() - started
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    postgres = store.engine.dialect.name == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF)" if postgres else "EXPLAIN QUERY PLAN"
    plans = []
    with store.engine.connect() as conn:
        for sql, params in seen:
            rows = conn.exec_driver_sql(f"{prefix} {sql}", params).all()
            plans.append("\n".join(str(row[0] if postgres else row[3]) for row in rows))
    return plans, took


def test_query_plans_use_the_primary_key(store_url: str) -> None:
    with Store.open(store_url) as store:
        hosts = fill_for_plans(store, PLAN_SAMPLES)
        total = dbadmin.info(store).samples
        host = f"h{hosts // 2:05}"
        since, until = 1_700_000_000.0 + 60 * 10, 1_700_000_000.0 + 60 * 19
        cases = {
            "latest per series, one host": lambda: store.latest([host]),
            "latest per series, one metric of every host": lambda: store.latest(metrics=["m7"]),
            "latest per series, every series": lambda: store.latest(),
            "hosts with their latest up": lambda: store.hosts(),
            "range of one series": lambda: store.history(host, "m3", {}, since, until),
        }
        report = [f"{store.engine.dialect.name}: {total} samples, {hosts} hosts"]
        for title, call in cases.items():
            [plan], took = explain(store, call)
            report += [f"--- {title} ({took * 1000:.1f} ms)", plan]
            if store.engine.dialect.name == "postgresql":
                assert "pk_samples" in plan, plan
                assert "Seq Scan on samples" not in plan, plan
            else:
                lines = [line for line in plan.splitlines() if "samples" in line]
                assert lines, plan
                for line in lines:
                    assert line.startswith("SEARCH samples USING PRIMARY KEY (series_id=?"), plan
        assert len(store.history(host, "m3", {}, since, until)) == 10
        print("\n" + "\n".join(report))
