"""``collect.run_upload`` and ``collect.run_execute``: the jobs the CLI and the demo run,
and the reports they return (real sshd, the real probe, a real SMTP server)."""

from __future__ import annotations

import asyncio
import gc
import re
import sqlite3
import threading

import pytest
from conftest import Fleet
from smtpserver import SMTPServer

from netmetrix import collect, envelope
from netmetrix.config import load_config
from netmetrix.configxml import Alert
from netmetrix.errors import Outcome, StoreError
from netmetrix.store import Store

ALWAYS = Alert(metric="cpu_count", op=">=", limit=1, email=("ops@example.com",))
SUMMARY_TIMES = re.compile(r" in [0-9.]+s \(per host p50 [0-9.]+s, p95 [0-9.]+s\)$")
LATER = "kept in the outbox for the next execute or `netmetrix alerts flush`"


@pytest.mark.sshd
def test_execute_reports_what_it_stored_queued_and_could_not_deliver(
    fleet: Fleet, smtp: SMTPServer
) -> None:
    fleet.host("f4", 0)
    fleet.write(smtp=smtp.settings(), alerts=[ALWAYS])
    config = load_config(fleet.config)
    said: list[str] = []
    with Store.open(config.database) as store:
        uploaded = collect.run_upload(config, store, config.hosts, say=said.append)
        smtp.stop()
        first = collect.run_execute(config, store, config.hosts, say=said.append)
        smtp.start()
        second = collect.run_execute(config, store, config.hosts, say=said.append)

    assert uploaded.ok
    assert [r.outcome for r in uploaded.results] == [Outcome.OK]
    # The first run stored every sample and queued the mail, which stayed in the outbox.
    assert [r.outcome for r in first.results] == [Outcome.OK]
    samples = first.results[0].value  # the answer is not kept: how many samples it brought
    assert samples is not None
    assert samples > 20
    assert first.recorded.samples == samples + 1  # and `up`
    assert (first.recorded.events, first.queued) == (1, 1)
    assert first.delivery is not None
    assert [f.recipient for f in first.delivery.retrying] == ["ops@example.com"]
    assert first.summary.all_ok
    assert (first.undelivered, first.ok) == (True, False)
    # The second queued nothing (still firing) and delivered what the first left.
    assert (second.recorded.events, second.queued) == (0, 0)
    assert second.delivery is not None
    assert [mail.recipient for mail in second.delivery.sent] == ["ops@example.com"]
    assert (second.undelivered, second.ok) == (False, True)
    assert [m.subject.split(" is ")[0] for m in smtp.messages] == ["ALERT [f4] cpu_count"]
    # What each run said, in order: the summary first, then what mail stayed behind.
    assert [SUMMARY_TIMES.sub("", line) for line in said] == [
        "upload: 1 ok",
        "execute: 1 ok",
        f"execute: 1 mail(s) to ops@example.com not delivered; {LATER}",
        "execute: 1 ok",
    ]


@pytest.mark.sshd
def test_the_jobs_say_which_hosts_are_not_set_up(fleet: Fleet) -> None:
    fleet.host("f4", 0)
    fleet.host("f5", 1)
    config = load_config(fleet.config)
    said: list[str] = []
    with Store.open(config.database) as store:
        collect.run_upload(config, store, config.hosts[:1], say=said.append)
        report = collect.run_execute(config, store, config.hosts, say=said.append)
    assert [r.outcome for r in report.results] == [Outcome.OK, Outcome.NOT_SET_UP]
    assert not report.ok
    assert report.delivery is not None
    assert report.delivery.ok  # nothing to send
    assert said[1].startswith("execute: 1 ok, 1 not set up in ")
    assert said[2:] == [
        "execute: not set up (no key stored yet, so never collected): f5"
        " — run `netmetrix upload -h f5`"
    ]


# ---------------------------------------------------------------- results stored as hosts finish


@pytest.fixture
def small_queue(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    """Ten hosts, two at once, results stored two by two, at most two waiting: four
    answers at most between a host's start and the store."""
    monkeypatch.setattr(collect._Writer, "BATCH", 2)
    monkeypatch.setattr(collect._Writer, "QUEUED", 2)
    fleet.settings["concurrency"] = "2"
    for i in range(10):
        fleet.host(f"h{i}", i % len(fleet.farm.servers))
    return fleet


IN_FLIGHT = 2 + 2  # concurrency + QUEUED of small_queue


@pytest.mark.sshd
def test_execute_keeps_no_answer_once_it_is_stored(small_queue: Fleet) -> None:
    """Peak memory is flat in the fleet's size: answers are dropped once stored (#15)."""
    config = load_config(small_queue.config)
    live: list[int] = []

    def count_answers(_result: object) -> None:
        live.append(sum(isinstance(o, envelope.Message) for o in gc.get_objects()))

    with Store.open(config.database) as store:
        assert collect.run_upload(config, store, config.hosts).ok
        gc.collect()
        report = collect.run_execute(config, store, config.hosts, progress=count_answers)
        assert len(store.history("h9", "mem_percent")) == 1
    assert len(live) == 10
    assert max(live) <= IN_FLIGHT, live
    assert report.summary.counts == {Outcome.OK: 10}
    assert [r.host.name for r in report.results] == [f"h{i}" for i in range(10)]  # host order
    assert report.recorded.samples == sum(r.value or 0 for r in report.results) + 10  # `up`


@pytest.mark.sshd
def test_a_store_that_falls_behind_holds_the_hosts_back(small_queue: Fleet) -> None:
    """Backpressure: while another writer holds the database, no more than IN_FLIGHT hosts
    finish; the rest start once a batch is stored."""
    config = load_config(small_queue.config)
    released = threading.Event()
    seen: list[bool] = []  # per finished host: was the store free again?
    with Store.open(config.database) as store:
        assert collect.run_upload(config, store, config.hosts).ok
    locker = sqlite3.connect(small_queue.database, isolation_level=None, check_same_thread=False)
    timer: threading.Timer | None = None

    def release() -> None:
        released.set()
        locker.execute("ROLLBACK")

    def progress(_result: object) -> None:
        nonlocal timer
        seen.append(released.is_set())
        if len(seen) == IN_FLIGHT:  # the queue is full: let the store catch up soon
            timer = threading.Timer(1.0, release)
            timer.start()

    try:
        locker.execute("BEGIN IMMEDIATE")
        with Store.open(config.database, busy_timeout=120) as store:
            report = collect.run_execute(config, store, config.hosts, progress=progress)
    finally:
        if timer is not None:
            timer.join()
        if not released.is_set():
            release()
        locker.close()
    assert report.summary.counts == {Outcome.OK: 10}
    assert seen == [False] * IN_FLIGHT + [True] * (10 - IN_FLIGHT)


@pytest.mark.sshd
def test_a_store_failure_stops_the_run(small_queue: Fleet) -> None:
    """A store that cannot write stops the fan-out with its StoreError, rather than
    collecting from every host for nothing (or waiting forever for room)."""
    config = load_config(small_queue.config)
    finished: list[str] = []
    with Store.open(config.database) as store:
        assert collect.run_upload(config, store, config.hosts).ok
    locker = sqlite3.connect(small_queue.database, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        with Store.open(config.database, busy_timeout=0.5) as store:
            run = collect.execute(
                config, store, config.hosts, progress=lambda r: finished.append(r.host.name)
            )
            with pytest.raises(StoreError, match="is locked"):
                asyncio.run(asyncio.wait_for(run, 120))  # bounded: a hang fails the test
    finally:
        locker.close()
    assert 0 < len(finished) <= IN_FLIGHT
    with Store.open(config.database) as store:
        assert store.history("h0", "up") == []
