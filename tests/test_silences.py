"""Silences (#16): silenced alerts are recorded but notify nobody; when the silence ends
on a still-firing alert it notifies then.  Store (SQLite, PostgreSQL), CLI, real sshd."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Fleet, Run, rule, sample
from hookserver import hook_server
from smtpserver import SMTPServer
from test_alerting import dial_host, execute, query, upload
from test_notify import T0

from netmetrix import pipeline
from netmetrix.configxml import Alert, Receiver
from netmetrix.model import HostRun
from netmetrix.silences import NewSilence, Silence, new_silence, silencing
from netmetrix.store import Store

Cli = Callable[..., Run]


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as s:
        yield s


def runs(ts: float, **values: float) -> list[HostRun]:
    return [
        HostRun(
            host=host,
            address=host,
            ts=ts,
            ok=True,
            error=None,
            samples=(sample("cpu_percent", value),),
        )
        for host, value in values.items()
    ]


def record(store: Store, ts: float, **values: float) -> pipeline.Recorded:
    return pipeline.record(store, runs(ts, **values), [rule()], now=ts)


def silence(store: Store, *hosts: str, ends: float, **fields: Any) -> int:
    new = NewSilence(
        starts=T0, ends=ends, hosts=hosts, comment="maintenance", author="ops", **fields
    )
    return store.add_silence(new, T0)


def test_a_silenced_alert_is_recorded_tells_nobody_then_notifies_when_it_ends(
    store: Store,
) -> None:
    silence(store, "f4", ends=T0 + 3600)
    done = record(store, T0, f4=38.5, f5=38.5)
    assert (done.events, done.queued) == (2, 1)  # f4's firing recorded, only f5's mailed
    assert [i.subject for i in store.outbox()] == ["ALERT [f5] cpu_percent is 38.5>20"]
    history = {(e.host, e.kind, e.silenced) for e in store.alert_history()}
    assert history == {("f4", "firing", True), ("f5", "firing", False)}
    assert record(store, T0 + 60, f4=40.0).queued == 0  # still silenced, still firing

    record(store, T0 + 3600, f4=41.0)  # the silence has ended: tell now
    subjects = [i.subject for i in store.outbox()]
    assert subjects == ["ALERT [f5] cpu_percent is 38.5>20", "ALERT [f4] cpu_percent is 41>20"]
    assert record(store, T0 + 3660, f4=42.0).queued == 0  # once
    assert record(store, T0 + 3720, f4=5.0).queued == 1  # and its resolve is told too
    assert store.outbox()[-1].subject == "RESOLVED [f4] cpu_percent is 5 (was >20)"


def test_an_alert_that_resolved_while_silenced_tells_nobody_afterwards(store: Store) -> None:
    silence(store, "f4", ends=T0 + 600)
    record(store, T0, f4=38.5)
    record(store, T0 + 60, f4=5.0)  # resolved while silenced
    record(store, T0 + 660, f4=6.0)  # the silence ended: nothing fires
    assert store.outbox() == []
    kinds = [(e.kind, e.silenced) for e in reversed(store.alert_history())]
    assert kinds == [("firing", True), ("resolved", True)]


def test_an_ended_silence_is_settled_once_by_one_collector(store: Store) -> None:
    silence(store, "f4", ends=T0 + 600)
    record(store, T0, f4=38.5)
    with store.transaction("settle") as tx:
        first = tx.settle_ended_silences(T0 + 700)
        second = tx.settle_ended_silences(T0 + 700)
    assert ([s.hosts for s in first], second) == ([("f4",)], [])
    record(store, T0 + 760, f4=40.0)  # settled already: no repeat from this one
    assert store.outbox() == []


def test_unsilence_ends_it_now(store: Store) -> None:
    sid = silence(store, "f*", ends=T0 + 3600)
    assert [s.id for s in store.silences(T0 + 1)] == [sid]
    assert store.end_silence(sid, T0 + 10)
    assert not store.end_silence(sid, T0 + 11)  # ended already
    assert store.silences(T0 + 11) == []
    assert [s.id for s in store.silences(T0 + 11, ended=True)] == [sid]


@pytest.mark.parametrize(
    ("hosts", "metric", "labels", "matched"),
    [
        ((), "", {}, True),
        (("f*",), "", {}, True),
        (("db*",), "", {}, False),
        ((), "disk_percent", {}, True),
        ((), "cpu_percent", {}, False),
        ((), "disk_percent", {"mount": "/"}, True),
        ((), "disk_percent", {"mount": "/data"}, False),
    ],
)
def test_what_a_silence_matches(
    hosts: tuple[str, ...], metric: str, labels: dict[str, str], matched: bool
) -> None:
    quiet = Silence(
        id=1,
        created=0,
        starts=10,
        ends=20,
        hosts=hosts,
        metric=metric,
        labels=labels,
        comment="",
        author="",
    )
    series = ("f4", "disk_percent", {"mount": "/"})
    assert (silencing([quiet], *series, 15) is not None) == matched
    assert silencing([quiet], *series, 20) is None  # ended
    assert silencing([quiet], *series, 9) is None  # not started


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "give --for DURATION or --until TIME (one of them)"),
        ({"duration": "2h", "until": "2030-01-01T00:00Z"}, "give --for DURATION or --until"),
        ({"duration": "soon"}, 'invalid duration "soon"'),
        ({"until": "2020-01-01T00:00Z"}, "--until '2020-01-01T00:00Z' is not in the future"),
        ({"duration": "2h", "labels": "mount"}, "--labels: expected name=value, got 'mount'"),
        ({"duration": "2h", "comment": " "}, "--comment must say why"),
    ],
)
def test_new_silence_refuses(fields: dict[str, Any], message: str) -> None:
    given: dict[str, Any] = {
        "hosts": (),
        "metric": "",
        "labels": "",
        "duration": None,
        "until": None,
        "comment": "why",
        "author": "ops",
        "now": T0,
    }
    given.update(fields)
    with pytest.raises(ValueError, match=None) as caught:
        new_silence(**given)
    assert str(caught.value).startswith(message)


def test_silence_commands(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("f4")
    made = netmetrix(
        "--config", fleet.config, "alerts", "silence", "-h", "f4", "--metric", "cpu_percent",
        "--for", "2h", "--comment", "disk swap",
    )  # fmt: skip
    assert made.code == 0, made.err
    sid = int(made.out)
    assert made.err.startswith(f"silence: {sid} on f4 until ")
    listed = netmetrix("--config", fleet.config, "alerts", "silences", "--format", "json")
    [row] = json.loads(listed.out)
    assert {k: row[k] for k in ("id", "hosts", "metric", "labels", "comment")} == {
        "id": sid,
        "hosts": "f4",
        "metric": "cpu_percent",
        "labels": {},
        "comment": "disk swap",
    }
    ended = netmetrix("--config", fleet.config, "alerts", "unsilence", str(sid))
    assert (ended.code, ended.err) == (0, f"unsilence: silence {sid} ended\n")
    again = netmetrix("--config", fleet.config, "alerts", "unsilence", str(sid))
    assert again.code == 2
    assert f"no silence {sid} in force" in again.err
    listed = netmetrix("--config", fleet.config, "alerts", "silences", "--format", "json")
    assert json.loads(listed.out) == []
    bad = netmetrix("--config", fleet.config, "alerts", "silence", "--comment", "x")
    assert bad.code == 2
    assert "alerts silence: give --for DURATION or --until TIME (one of them)" in bad.err


@pytest.mark.sshd
def test_a_silenced_host_reaches_no_receiver_until_the_silence_ends(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    with hook_server() as hook:
        dial_host(fleet, "f4", 0, 38.5)
        chat = Receiver(tag="webhook", name="chat", url=f"{hook.url}/chat")
        fleet.write(
            smtp=smtp.settings(),
            receivers=[chat],
            alerts=[
                Alert(metric="load1", op=">", limit=20, email="ops@example.com", notify="chat")
            ],
        )
        upload(fleet, netmetrix)
        made = netmetrix(
            "--config", fleet.config, "alerts", "silence", "-h", "f4", "--for", "1h",
            "--comment", "maintenance",
        )  # fmt: skip
        assert made.code == 0, made.err

        execute(fleet, netmetrix)
        assert smtp.subjects == []
        assert hook.requests == []
        [event] = query(fleet, netmetrix, "history")
        assert (event["event"], event["host"]) == ("firing (silenced)", "f4")

        assert (
            netmetrix("--config", fleet.config, "alerts", "unsilence", made.out.strip()).code == 0
        )
        execute(fleet, netmetrix)
        assert smtp.subjects == ["ALERT [f4] load1 is 38.5>20"]
        [request] = hook.requests
        assert [e["subject"] for e in request.json()["events"]] == ["ALERT [f4] load1 is 38.5>20"]
