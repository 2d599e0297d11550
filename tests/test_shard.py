"""Shards (#15): rendezvous hashing, --shard and <collector>, alert state per shard, and
three collector processes sharing one PostgreSQL database against real sshd hosts."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pgserver
import pytest
from conftest import Background, Fleet, Run
from hypothesis import given, settings
from hypothesis import strategies as st
from smtpserver import SMTPServer

from netmetrix import alerts, pipeline
from netmetrix.config import AlertRule, load_config, machine_name
from netmetrix.configxml import Alert, Collector, ConfigXml, Host, render
from netmetrix.errors import UsageError
from netmetrix.model import AlertState, HostRun, Sample
from netmetrix.shard import MAX_SHARDS, Shard, owner, parse_shard, pick, take, weight
from netmetrix.store import Store

Cli = Callable[..., Run]
NAMES = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
    min_size=1,
    max_size=40,
)
# Which shard each name hashes to: fixed for good, since a change would move every
# fleet's hosts between collectors on upgrade (and the tests below rely on them).
OWNERS_OF_2 = {"a": 2, "b": 2, "d": 1, "web1": 1, "x1": 2, "x5": 1}
OWNERS_OF_3 = {"s1": 2, "s2": 2, "s3": 2, "s4": 3, "s5": 2, "s6": 1, "s7": 3, "s8": 2, "s9": 1}


# ---------------------------------------------------------------- the hashing


def test_owners_are_fixed() -> None:
    assert {n: owner(n, 2) for n in OWNERS_OF_2} == OWNERS_OF_2
    assert {n: owner(n, 3) for n in OWNERS_OF_3} == OWNERS_OF_3
    digest = hashlib.blake2b(b"\x00\x00\x00\x01s1", digest_size=8).digest()
    assert weight("s1", 1) == int.from_bytes(digest, "big")


@settings(max_examples=300, deadline=None)
@given(names=st.lists(NAMES, min_size=1, max_size=30, unique=True), count=st.integers(1, 40))
def test_every_host_is_in_exactly_one_shard(names: list[str], count: int) -> None:
    for name in names:
        assert [k for k in range(1, count + 1) if Shard(k, count).owns(name)] == [
            owner(name, count)
        ]
    hosts = [Host(name=n) for n in names]
    shares = [pick(hosts, Shard(k, count)) for k in range(1, count + 1)]
    assert sorted(h.name for share in shares for h in share) == sorted(names)


@settings(max_examples=300, deadline=None)
@given(name=NAMES, count=st.integers(1, 60))
def test_the_owner_is_the_shard_of_the_highest_weight(name: str, count: int) -> None:
    weights = {index: weight(name, index) for index in range(1, count + 1)}
    assert owner(name, count) == max(weights, key=lambda index: (weights[index], index))


@settings(max_examples=300, deadline=None)
@given(name=NAMES, count=st.integers(1, 60))
def test_one_more_shard_takes_hosts_only_for_itself(name: str, count: int) -> None:
    # a host either stays where it was or moves to the new shard N+1, never elsewhere
    assert owner(name, count + 1) in (owner(name, count), count + 1)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_one_more_shard_moves_about_a_share_of_the_fleet(count: int) -> None:
    names = [f"host-{i:05}.example.com" for i in range(6000)]
    moved = sum(owner(n, count) != owner(n, count + 1) for n in names)
    share = moved / len(names)
    expected = 1 / (count + 1)
    assert expected * 0.85 < share < expected * 1.15, (share, expected)


def test_shards_are_about_even() -> None:
    names = [f"web{i}" for i in range(9000)]
    sizes = [len(pick([Host(name=n) for n in names], Shard(k, 3))) for k in (1, 2, 3)]
    assert sum(sizes) == 9000
    assert all(2700 < size < 3300 for size in sizes), sizes


def test_the_owner_is_the_same_in_every_process() -> None:
    names = [f"db{i}" for i in range(200)]
    here = [owner(n, 5) for n in names]
    code = (
        "import json, sys; from netmetrix.shard import owner;"
        "print(json.dumps([owner(n, 5) for n in json.load(sys.stdin)]))"
    )
    for seed in ("0", "1", "12345"):  # str hashes differ between these: ours must not
        done = subprocess.run(
            [sys.executable, "-c", code],
            input=json.dumps(names),
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
            timeout=120,
        )
        assert json.loads(done.stdout) == here


def test_pick_keeps_the_order_and_none_is_everything() -> None:
    hosts = [Host(name=n) for n in ("s9", "s1", "s6", "s2", "s4")]
    assert [h.name for h in pick(hosts, Shard(1, 3))] == ["s9", "s6"]
    assert [h.name for h in pick(hosts, Shard(2, 3))] == ["s1", "s2"]
    assert pick(hosts, None) == tuple(hosts)
    assert pick(hosts, Shard(1, 1)) == tuple(hosts)


# ---------------------------------------------------------------- parsing and messages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1/1", Shard(1, 1)),
        ("2/3", Shard(2, 3)),
        (" 3 / 3 ", Shard(3, 3)),
        (f"{MAX_SHARDS}/{MAX_SHARDS}", Shard(MAX_SHARDS, MAX_SHARDS)),
    ],
)
def test_parse_shard(text: str, expected: Shard) -> None:
    assert parse_shard(text) == expected
    assert str(expected) == text.replace(" ", "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4/3", '"4/3": K must be from 1 to N (3), got 4'),
        ("0/3", '"0/3": K must be from 1 to N (3), got 0'),
        ("1/0", '"1/0": N must be from 1 to 1000, got 0'),
        ("1/1001", '"1/1001": N must be from 1 to 1000, got 1001'),
        ("2", '"2" is not K/N (two whole numbers, e.g. 2/3)'),
        ("-1/3", '"-1/3" is not K/N (two whole numbers, e.g. 2/3)'),
        ("a/b", '"a/b" is not K/N (two whole numbers, e.g. 2/3)'),
        ("", '"" is not K/N (two whole numbers, e.g. 2/3)'),
    ],
)
def test_parse_shard_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_shard(text)
    assert str(caught.value) == message


def test_take_says_where_the_hosts_went() -> None:
    hosts = [Host(name=n) for n in ("s1", "s2", "s6")]
    with pytest.raises(UsageError) as caught:
        take(hosts, Shard(3, 3), where="--shard 3/3", selected=False)
    assert str(caught.value) == (
        "--shard 3/3: none of the 3 hosts is in shard 3/3 (hosts per shard: 1/3: 1, 2/3: 2);"
        " run fewer collectors for this few hosts"
    )
    with pytest.raises(UsageError) as caught:
        take(hosts[:2], Shard(1, 3), where="--shard 1/3", selected=True)
    assert str(caught.value) == (
        "--shard 1/3: no host that -h selected is in shard 1/3 (s1 is in 2/3, s2 is in 2/3)"
    )
    assert take(hosts, Shard(1, 3), where="-", selected=True) == (hosts[2],)


def write_config(path: Path, *names: str, collector: Collector | None = None) -> Path:
    """config.xml for hosts no test connects to (192.0.2.0/24 is TEST-NET-1)."""
    hosts = [Host(name=n, address=f"192.0.2.{i}") for i, n in enumerate(names, start=1)]
    path.write_text(render(ConfigXml(database="netmetrix.db", collector=collector, hosts=hosts)))
    return path


def test_collector_element(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "config.xml", "a"))
    assert (config.collector.name, config.collector.shard) == (machine_name(), None)
    assert config.collector.label == machine_name()
    both = Collector(name="db1", shard="2/3")
    config = load_config(write_config(tmp_path / "config.xml", "a", collector=both))
    assert (config.collector.name, config.collector.shard) == ("db1", Shard(2, 3))
    assert config.collector.label == "db1 (2/3)"
    assert config.with_shard(Shard(1, 2)).collector.label == "db1 (1/2)"
    assert config.with_shard(None) is config


@pytest.mark.parametrize(
    ("collector", "problem"),
    [
        (Collector(shard="4/3"), '<collector>: shard: "4/3": K must be from 1 to N (3), got 4'),
        (Collector(shard="3"), '<collector>: shard: "3" is not K/N (two whole numbers, e.g. 2/3)'),
        (
            Collector(name="db 1"),
            '<collector>: name must be a name of letters, digits, ".", "_", "-", got "db 1"',
        ),
    ],
)
def test_collector_element_errors(
    tmp_path: Path, netmetrix: Cli, collector: Collector, problem: str
) -> None:
    config = write_config(tmp_path / "config.xml", "a", collector=collector)
    line = next(i for i, t in enumerate(config.read_text().splitlines(), 1) if "<collector" in t)
    done = netmetrix("--config", config, "execute")
    assert (done.code, done.out) == (2, "")
    assert done.err == f"{config}:{line}: {problem}\n"


def test_config_show_names_the_collector(tmp_path: Path, netmetrix: Cli) -> None:
    config = write_config(tmp_path / "config.xml", "a", collector=Collector(shard="2/3"))
    done = netmetrix("--config", config, "config", "show", "--format", "json")
    assert done.code == 0, done.err
    rows = {row["setting"]: row for row in json.loads(done.out)}
    assert (rows["collector.name"]["value"], rows["collector.name"]["source"]) == (
        machine_name(),
        "default",
    )
    assert (rows["collector.shard"]["value"], rows["collector.shard"]["source"]) == (
        "2/3",
        "config.xml",
    )


@pytest.mark.parametrize("command", ["upload", "execute", "watch"])
def test_a_bad_shard_flag_is_a_usage_error(tmp_path: Path, netmetrix: Cli, command: str) -> None:
    config = write_config(tmp_path / "config.xml", "a")
    done = netmetrix("--config", config, command, "--shard", "4/3")
    assert (done.code, done.out) == (2, "")
    assert (
        "Error: Invalid value for '--shard': \"4/3\": K must be from 1 to N (3), got 4" in done.err
    )


@pytest.mark.parametrize("command", ["upload", "execute", "watch"])
def test_a_shard_without_hosts_says_so(tmp_path: Path, netmetrix: Cli, command: str) -> None:
    config = write_config(tmp_path / "config.xml", "s1", "s2", "s6")
    done = netmetrix("--config", config, command, "--shard", "3/3")
    assert (done.code, done.out) == (2, "")
    assert done.err == (
        "--shard 3/3: none of the 3 hosts is in shard 3/3 (hosts per shard: 1/3: 1,"
        " 2/3: 2); run fewer collectors for this few hosts\n"
    )
    done = netmetrix("--config", config, command, "--shard", "1/3", "-h", "s1")
    assert (done.code, done.out) == (2, "")
    assert done.err == "--shard 1/3: no host that -h selected is in shard 1/3 (s1 is in 2/3)\n"
    # the same from config.xml's <collector>, named as such
    write_config(config, "s1", "s2", "s6", collector=Collector(shard="3/3"))
    done = netmetrix("--config", config, command)
    assert done.err.startswith('config.xml: <collector shard="3/3">: none of the 3 hosts')
    assert not (tmp_path / "netmetrix.db").exists()  # refused before the store is opened


def test_the_flag_wins_over_config_and_the_host_row_names_the_collector(
    tmp_path: Path, netmetrix: Cli
) -> None:
    """No SSH here: none of the hosts has a key, so execute only marks them "not set up"."""
    both = Collector(name="c9", shard="1/2")
    config = write_config(tmp_path / "config.xml", "a", "b", "d", "web1", collector=both)
    done = netmetrix("--config", config, "execute")  # config.xml: shard 1/2: d, web1
    assert done.code == 1
    assert "execute: 2 not set up" in done.err
    assert "run `netmetrix upload -h d -h web1`" in done.err
    done = netmetrix("--config", config, "execute", "--shard", "2/2")  # a, b
    assert done.code == 1
    assert "execute: 2 not set up" in done.err
    done = netmetrix("--config", config, "hosts", "--format", "json")
    assert {r["host"]: r["collector"] for r in json.loads(done.out)} == {
        "a": "c9 (2/2)",
        "b": "c9 (2/2)",
        "d": "c9 (1/2)",
        "web1": "c9 (1/2)",
    }
    done = netmetrix("--config", config, "db", "info")
    assert re.search(r"^collectors +c9 \(1/2\) 2 hosts, c9 \(2/2\) 2 hosts$", done.out, re.M)


def test_hosts_not_set_up_in_a_shard_are_set_up_with_the_shard(
    tmp_path: Path, netmetrix: Cli
) -> None:
    names = [f"n{i}" for i in range(40)]
    config = write_config(tmp_path / "config.xml", *names)
    mine = [n for n in names if owner(n, 2) == 2]
    done = netmetrix("--config", config, "execute", "--shard", "2/2")
    assert done.code == 1
    assert f"execute: {len(mine)} not set up" in done.err
    assert done.err.endswith(" — run `netmetrix upload --shard 2/2`\n")


# ---------------------------------------------------------------- the hosts table


def up_counts(url: str) -> dict[str, int]:
    """Host -> how many `up` samples the store holds of it."""
    with Store.open(url) as store:
        return {name: len(store.history(name, "up")) for name in sorted(store.host_names())}


def test_migration_0005_keeps_the_host_rows(store_url: str) -> None:
    from alembic import command
    from sqlalchemy import text

    from netmetrix.store import alembic_config

    with Store.open(store_url, upgrade=False) as old:
        with old.writing("migrate to 0004") as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0004")
        with old.writing("fill the 0004 hosts") as conn:
            conn.execute(
                text(
                    "INSERT INTO hosts (name, address, last_seen_ms, last_error, probe_version,"
                    " updated_ms) VALUES ('f4', '192.0.2.4', 5000, 'timeout', '1.0', 6000)"
                )
            )
    with Store.open(store_url) as new:
        [row] = new.hosts()
        assert (row.name, row.address, row.last_seen, row.last_error) == (
            "f4",
            "192.0.2.4",
            5.0,
            "timeout",
        )
        assert (row.probe_version, row.collector) == ("1.0", None)
        new.record_runs([HostRun(host="f4", address="f4", ts=7.0, ok=True, collector="c (1/2)")])
        new.record_runs([HostRun(host="f4", address="f4", ts=8.0, ok=False, error="x")])
        [row] = new.hosts()
        assert (row.last_seen, row.collector) == (7.0, "c (1/2)")  # kept: not named by 8.0


# ---------------------------------------------------------------- alert state per shard

T0 = 1_700_000_000.0
CPU_OVER_20 = AlertRule(metric="cpu_percent", op=">", limit=20.0, email=("ops@example.com",))


def cpu_run(host: str, ts: float, value: float) -> HostRun:
    sample = Sample(metric="cpu_percent", labels=(), value=value)
    return HostRun(host=host, address=host, ts=ts, ok=True, samples=(sample,))


def firing(store: Store) -> dict[str, str]:
    """Host -> phase of every stored alert state."""
    return {a.host: a.state for a in store.alerts_active()}


def resolved(store: Store) -> list[tuple[str, str]]:
    return sorted((e.host, e.kind) for e in store.alert_history() if e.kind == "resolved")


def test_a_shard_retires_only_its_own_hosts_alerts(store_url: str) -> None:
    """Regression (#15): a collector resolved every shard's alerts of a rule that left
    config.xml; two collectors doing so at once would both mail RESOLVED."""
    with Store.open(store_url) as store:
        runs = [cpu_run(h, T0, 50.0) for h in ("a", "d")]  # a: shard 2/2, d: 1/2
        pipeline.record(store, runs, [CPU_OVER_20], now=T0, hosts=["a", "d"])
        assert firing(store) == {"a": "firing", "d": "firing"}

        # the rule left config.xml; collector 1/2 runs first: d's alert only
        done = pipeline.record(
            store,
            [cpu_run("d", T0 + 60, 50.0)],
            [],
            now=T0 + 60,
            hosts=["a", "d"],
            shard=Shard(1, 2),
        )
        assert (done.retired, done.queued) == (1, 1)
        assert firing(store) == {"a": "firing"}
        assert resolved(store) == [("d", "resolved")]
        # then 2/2: a's
        done = pipeline.record(
            store,
            [cpu_run("a", T0 + 61, 50.0)],
            [],
            now=T0 + 61,
            hosts=["a", "d"],
            shard=Shard(2, 2),
        )
        assert (done.retired, done.queued) == (1, 1)
        assert firing(store) == {}
        assert resolved(store) == [("a", "resolved"), ("d", "resolved")]


def test_a_removed_host_is_resolved_by_the_shard_it_hashes_to(store_url: str) -> None:
    with Store.open(store_url) as store:
        runs = [cpu_run(h, T0, 50.0) for h in ("a", "b", "d")]
        pipeline.record(store, runs, [CPU_OVER_20], now=T0, hosts=["a", "b", "d"])
        # b (shard 2/2) left config.xml: collector 1/2 leaves its alert alone ...
        kept = ["a", "d"]
        done = pipeline.record(
            store,
            [cpu_run("d", T0 + 60, 50.0)],
            [CPU_OVER_20],
            now=T0 + 60,
            hosts=kept,
            shard=Shard(1, 2),
        )
        assert (done.retired, firing(store)) == (0, {"a": "firing", "b": "firing", "d": "firing"})
        # ... and 2/2 resolves it, once, "host removed"
        done = pipeline.record(
            store,
            [cpu_run("a", T0 + 61, 50.0)],
            [CPU_OVER_20],
            now=T0 + 61,
            hosts=kept,
            shard=Shard(2, 2),
        )
        assert (done.retired, firing(store)) == (1, {"a": "firing", "d": "firing"})
        [mail] = [m for m in store.outbox(undelivered=True) if m.subject.startswith("RESOLVED")]
        assert mail.subject.startswith("RESOLVED [b] ")
        assert "host removed" in mail.body


def test_evaluate_never_touches_states_it_was_not_given() -> None:
    """What the pipeline relies on: states of hosts without points, and not orphaned, stay."""
    rid = alerts.rule_id(CPU_OVER_20)
    other = (rid, "a", "cpu_percent", ())
    state = AlertState(phase="pending", count=1, since=T0, value=50.0, ts=T0)
    changes, events = alerts.evaluate(
        {rid: CPU_OVER_20}, {other: state}, [], T0 + 60, hosts=["a", "d"]
    )
    assert (changes, events) == ({}, [])


# ---------------------------------------------------------------- three collectors, one PostgreSQL

ALERTED = (
    "s1",
    "s4",
    "s6",
    "s7",
    "s9",
)  # on every shard: s1 in 2/3, s4 and s7 in 3/3, s6 and s9 in 1/3
UPTIME_ALERT = Alert(
    metric="uptime_sec", op=">", limit=0, hosts=",".join(ALERTED), email="ops@example.com"
)


def collectors_at_once(fleet: Fleet, rounds: int) -> dict[int, str]:
    """``netmetrix execute --shard K/3`` for K = 1, 2, 3, as three processes started together,
    each ``rounds`` times in a row; their stderr, by K."""
    exe = Path(sys.executable).with_name("netmetrix")
    script = f'for i in $(seq {rounds}); do "$0" "$@" || exit 1; done'
    procs = {
        k: subprocess.Popen(
            [
                "sh",
                "-c",
                script,
                str(exe),
                "--config",
                str(fleet.config),
                "execute",
                "--shard",
                f"{k}/3",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in (1, 2, 3)
    }
    try:
        outputs = {k: proc.communicate(timeout=300) for k, proc in procs.items()}
    finally:
        for proc in procs.values():  # ours, by PID, even when the test failed
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for k, proc in procs.items():
        assert proc.returncode == 0, outputs[k][1]
        assert outputs[k][0] == ""
    return {k: err for k, (_, err) in outputs.items()}


@pytest.mark.sshd
def test_three_collectors_split_the_fleet_on_one_postgresql(
    fleet: Fleet, postgres: pgserver.Postgres, netmetrix: Cli, smtp: SMTPServer
) -> None:
    names = list(OWNERS_OF_3)
    for i, name in enumerate(names):
        fleet.host(name, i % 3)
    database = postgres.create_database()
    try:
        url = postgres.url(database)
        fleet.settings["database"] = url
        fleet.write(smtp=smtp.settings(), alerts=[UPTIME_ALERT])
        done = netmetrix("--config", fleet.config, "upload")
        assert done.code == 0, done.err

        # round 1: every host collected once, by its shard; one mail per alert
        errs = collectors_at_once(fleet, rounds=1)
        for k in (1, 2, 3):
            mine = [n for n in names if OWNERS_OF_3[n] == k]
            assert f"execute: {len(mine)} ok" in errs[k], errs[k]
        assert up_counts(url) == dict.fromkeys(sorted(names), 1)
        label = machine_name()
        hosts = json.loads(netmetrix("--config", fleet.config, "hosts", "--format", "json").out)
        assert {h["host"]: h["collector"] for h in hosts} == {
            n: f"{label} ({OWNERS_OF_3[n]}/3)" for n in names
        }
        assert {h["host"]: h["up"] for h in hosts} == dict.fromkeys(names, 1)
        info = json.loads(netmetrix("--config", fleet.config, "db", "info", "--format", "json").out)
        assert info[0]["collectors"] == {
            f"{label} (2/3)": 5,
            f"{label} (1/3)": 2,
            f"{label} (3/3)": 2,
        }
        assert sorted(re.findall(r"ALERT \[(\w+)\]", " ".join(smtp.subjects))) == sorted(ALERTED)
        assert len(smtp.messages) == len(ALERTED)

        # two more rounds: every host collected once per round, no mail sent twice
        collectors_at_once(fleet, rounds=2)
        assert up_counts(url) == dict.fromkeys(sorted(names), 3)
        assert len(smtp.messages) == len(ALERTED)
        with Store.open(url) as store:
            assert firing(store) == dict.fromkeys(ALERTED, "firing")
            assert sorted(e.host for e in store.alert_history() if e.kind == "firing") == sorted(
                ALERTED
            )

        # the rule leaves config.xml: each alert resolved once, by its own shard's collector
        fleet.write(smtp=smtp.settings())
        collectors_at_once(fleet, rounds=1)
        resolved_mail = [s for s in smtp.subjects if s.startswith("RESOLVED")]
        assert sorted(re.findall(r"RESOLVED \[(\w+)\]", " ".join(resolved_mail))) == sorted(ALERTED)
        with Store.open(url) as store:
            assert firing(store) == {}
            assert len(resolved(store)) == len(ALERTED)
            assert store.outbox(undelivered=True) == []
    finally:
        postgres.drop_database(database)


# ---------------------------------------------------------------- watch


@pytest.mark.sshd
def test_watch_keeps_its_shard_across_a_reload(
    fleet: Fleet, netmetrix: Cli, background: Callable[..., Background]
) -> None:
    for name in ("d", "a"):  # d: shard 1/2, a: 2/2
        fleet.host(name, 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    watch = background(fleet.config, "watch", "--interval", "1s", "--shard", "1/2")
    watch.wait_for("watch: 1 host(s) every 1s", "[d] connected")
    fleet.host("x5", 1)  # 1/2
    fleet.host("x1", 1)  # 2/2
    assert netmetrix("--config", fleet.config, "upload", "-h", "x*").code == 0
    watch.process.send_signal(signal.SIGHUP)
    watch.wait_for("reload: config.xml read; 2 host(s), 1 added, 0 removed", "[x5] connected")
    deadline = time.monotonic() + 60
    while up_counts(f"sqlite:///{fleet.database}").get("x5", 0) < 1:
        assert time.monotonic() < deadline, watch.err
        time.sleep(0.1)
    watch.process.send_signal(signal.SIGTERM)
    assert watch.finish() == 0, watch.err
    counts = up_counts(f"sqlite:///{fleet.database}")
    assert counts.get("a", 0) == counts.get("x1", 0) == 0
    assert counts["d"] >= 1
    hosts = json.loads(netmetrix("--config", fleet.config, "hosts", "--format", "json").out)
    assert {h["host"]: h["collector"] for h in hosts} == {
        "d": f"{machine_name()} (1/2)",
        "a": None,
        "x5": f"{machine_name()} (1/2)",
        "x1": None,
    }
