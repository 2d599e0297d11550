"""Webhook receivers and the one outbox for every receiver (#16), against a real HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import rule, sample
from hookserver import HookServer, hook_server
from test_notify import T0, record

from netmetrix import notify, payloads, pipeline
from netmetrix.config import SMTPConfig
from netmetrix.model import AlertEvent, HostRun
from netmetrix.receivers import Receiver
from netmetrix.store import Store
from netmetrix.store.schema import SCHEMA_HEAD

SECRET_ENV = "NMX_TEST_HOOK_SECRET"
SMTP_NOWHERE = SMTPConfig(host="127.0.0.1", port=1, sender="n@example.com")  # no mail is queued


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as s:
        yield s


@pytest.fixture
def hook() -> Iterator[HookServer]:
    with hook_server() as server:
        yield server


def webhook(server: HookServer, name: str = "chat", **fields: Any) -> Receiver:
    return Receiver(name=name, channel="webhook", urls=(f"{server.url}/hook/{name}",), **fields)


def fire(
    store: Store,
    receivers: list[Receiver],
    ts: float = T0,
    value: float = 38.5,
    host_labels: dict[str, dict[str, str]] | None = None,
    **overrides: Any,
) -> pipeline.Recorded:
    """cpu_percent of f4 is ``value`` at ``ts``, for a rule notifying ``receivers`` only."""
    fields: dict[str, Any] = {"email": (), "notify": tuple(r.name for r in receivers)}
    fields.update(overrides)
    routing = pipeline.Routing(
        receivers={r.name: r for r in receivers}, host_labels=host_labels or {}
    )
    run = HostRun(
        host="f4",
        address="f4.example",
        ts=ts,
        ok=True,
        error=None,
        samples=(sample("cpu_percent", value),),
    )
    return pipeline.record(store, [run], [rule(**fields)], now=ts, routing=routing)


def deliver(store: Store, receivers: list[Receiver], ts: float, **kw: Any) -> notify.Delivery:
    return notify.deliver(
        store, SMTP_NOWHERE, digest_over=10, receivers=receivers, clock=lambda: ts, **kw
    )


def test_a_webhook_gets_the_documented_json_signed(store: Store, hook: HookServer) -> None:
    chat = webhook(hook, secret_env=SECRET_ENV)
    assert fire(store, [chat], host_labels={"f4": {"role": "db", "dc": "fra"}}).queued == 1
    done = deliver(store, [chat], T0 + 1, environ={SECRET_ENV: "s3cret"})
    assert done.ok
    assert done.hooks is not None
    assert (done.hooks.sent, done.hooks.requests, done.sent) == (1, 1, [])
    [request] = hook.requests
    assert request.path == "/hook/chat"
    assert request.headers["Content-Type"] == "application/json"
    expected = hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Netmetrix-Signature"] == f"sha256={expected}"
    body = request.json()
    [event] = body.pop("events")
    assert body == {"version": 1, "receiver": "chat"}
    assert event.pop("id") > 0
    assert event == {
        "status": "firing",
        "kind": "firing",
        "subject": "ALERT [f4] cpu_percent is 38.5>20",
        "host": "f4",
        "address": "f4.example",
        "metric": "cpu_percent",
        "labels": {},
        "host_labels": {"role": "db", "dc": "fra"},  # config.xml's, never stored (#18)
        "value": 38.5,
        "rule": "cpu_percent > 20",
        "severity": "warning",
        "since": "2026-09-21T14:13:20.000Z",
        "at": "2026-09-21T14:13:20.000Z",
        "reason": None,
    }
    assert store.outbox() == []
    # resolved: the same receiver hears it, unsigned without secret_env
    plain = webhook(hook)
    fire(store, [plain], ts=T0 + 60, value=5.0)
    assert deliver(store, [plain], T0 + 61).ok
    resolved = hook.requests[-1]
    assert "X-Netmetrix-Signature" not in resolved.headers
    [event] = resolved.json()["events"]
    assert (event["status"], event["subject"]) == (
        "resolved",
        "RESOLVED [f4] cpu_percent is 5 (was >20)",
    )


def test_slack_format_is_one_text(store: Store, hook: HookServer) -> None:
    chat = webhook(hook, format="slack")
    fire(store, [chat])
    assert deliver(store, [chat], T0 + 1).ok
    # Slack shows &gt; as ">" (its escaping of &, < and >)
    assert [r.json() for r in hook.requests] == [{"text": "ALERT [f4] cpu_percent is 38.5&gt;20"}]


def test_slack_text_cannot_mention_or_link(store: Store, hook: HookServer) -> None:
    chat = webhook(hook, format="slack")
    hostile = HostRun(
        host="f4", address="f4", ts=T0, ok=True, error=None,
        samples=(sample("disk_percent", 99.0, mount="<!channel>"),),
    )  # fmt: skip
    rules = [rule(email=(), notify=("chat",), metric="disk_percent", limit=90.0)]
    routing = pipeline.Routing(receivers={"chat": chat})
    pipeline.record(store, [hostile], rules, now=T0, routing=routing)
    assert deliver(store, [chat], T0 + 1).ok
    [text] = [r.json()["text"] for r in hook.requests]
    assert text == 'ALERT [f4] disk_percent{mount="&lt;!channel&gt;"} is 99&gt;90'


def test_a_503_is_retried_with_backoff(store: Store, hook: HookServer) -> None:
    chat = webhook(hook)
    hook.answers = [503]
    fire(store, [chat])
    done = deliver(store, [chat], T0 + 1)
    assert not done.ok
    assert done.hooks is not None
    [failure] = done.hooks.failed
    assert not failure.permanent
    assert failure.error == "webhook chat answered HTTP 503: no such hook"
    [item] = store.outbox()
    assert (item.attempts, item.failed, item.channel, item.recipient) == (
        1,
        None,
        "webhook",
        "chat",
    )
    assert any("retried with backoff" in line for line in done.problems("execute"))
    # backing off: the next pass within 10 s leaves it alone
    early = deliver(store, [chat], T0 + 5)
    assert early.hooks is not None
    assert early.hooks.deferred == 1
    assert len(hook.requests) == 1
    later = deliver(store, [chat], T0 + 12)
    assert later.ok
    assert later.hooks is not None
    assert later.hooks.sent == 1
    assert len(hook.requests) == 2
    assert store.outbox() == []


def test_a_404_makes_a_dead_letter(store: Store, hook: HookServer) -> None:
    chat = webhook(hook)
    hook.answers = [404]
    fire(store, [chat])
    done = deliver(store, [chat], T0 + 1)
    assert done.hooks is not None
    [failure] = done.hooks.failed
    assert failure.permanent
    [dead] = store.outbox(failed=True)
    assert dead.last_error == "webhook chat answered HTTP 404: no such hook"
    again = deliver(store, [chat], T0 + 7200, force=True)
    assert again.hooks is None
    assert again.dead_letters == 1
    assert len(hook.requests) == 1
    assert store.retry_mail([dead.id]).changed == (dead.id,)
    assert deliver(store, [chat], T0 + 7201, force=True).ok
    assert len(hook.requests) == 2
    assert store.outbox() == []


def test_a_hanging_receiver_delays_no_other(store: Store, hook: HookServer) -> None:
    with hook_server() as slow:
        slow.hold = True
        stuck = Receiver(name="stuck", channel="webhook", urls=(slow.url,), timeout=1.0)
        chat = webhook(hook)
        fire(store, [stuck, chat])
        done = deliver(store, [stuck, chat], T0 + 1)
        assert done.hooks is not None
        assert done.hooks.sent == 1
        [failure] = done.hooks.failed
        assert failure.error == "cannot reach webhook stuck: no answer within 1s"
        assert [i.recipient for i in store.outbox()] == ["stuck"]
    assert len(hook.requests) == 1


def test_two_collectors_flushing_at_once_send_nothing_twice(store_url: str) -> None:
    with hook_server() as server:
        receivers = [webhook(server, f"hook{i}") for i in range(4)]
        with Store.open(store_url) as s:
            for minute in range(5):  # 5 firing/resolved events for each receiver
                fire(s, receivers, ts=T0 + 60 * minute, value=38.5 if minute % 2 == 0 else 5.0)
        barrier = threading.Barrier(2, timeout=60)
        results: list[notify.Delivery] = []
        errors: list[BaseException] = []

        def flush() -> None:
            try:
                with Store.open(store_url) as mine:
                    barrier.wait()
                    results.append(deliver(mine, receivers, T0 + 600))
            except BaseException as err:  # reported by the assert below
                errors.append(err)

        threads = [threading.Thread(target=flush) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        got: dict[str, list[int]] = {}
        for request in server.requests:
            got.setdefault(request.path, []).extend(e["id"] for e in request.json()["events"])
        assert sorted(got) == [f"/hook/hook{i}" for i in range(4)]
        for ids in got.values():
            assert len(ids) == 5
            assert len(set(ids)) == 5
        assert sum(r.hooks.sent for r in results if r.hooks) == 20


def test_email_and_webhook_from_one_rule_each_get_one_row(store: Store, hook: HookServer) -> None:
    ops = Receiver(name="ops", channel="email", to=("ops@example.com", "dba@example.com"))
    chat = webhook(hook)
    done = fire(store, [ops, chat], email=("ops@example.com",))
    assert done.queued == 3
    rows = sorted((i.channel, i.receiver, i.recipient) for i in store.outbox())
    assert rows == [
        ("email", "", "ops@example.com"),
        ("email", "ops", "dba@example.com"),
        ("webhook", "chat", "chat"),
    ]
    [email_body] = {i.body for i in store.outbox() if i.channel == "email"}
    assert email_body.startswith("cpu_percent on f4 is 38.5")
    assert (
        json.loads(next(i.body for i in store.outbox() if i.channel == "webhook"))["host"] == "f4"
    )


def test_migration_0007_makes_every_queued_row_mail(store_url: str) -> None:
    from alembic import command
    from sqlalchemy import text

    from netmetrix import store as store_module

    with Store.open(store_url, upgrade=False) as old:
        with old.writing("migrate to 0006") as conn:
            cfg = store_module.alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0006")
        with old.writing("fill the 0006 outbox") as conn:
            conn.execute(
                text(
                    "INSERT INTO alert_events (ts_ms, kind, rule_id, rule, severity, host, metric,"
                    " labels, value, since_ms) VALUES (1, 'firing', 'r', 'cpu > 1', 'warning',"
                    " 'f4', 'cpu', '{}', 2.0, 1)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO outbox (event_id, recipient, subject, body, created_ms,"
                    " attempts) VALUES (1, 'a@example.com', 's', 'b', 5, 0)"
                )
            )
    with Store.open(store_url) as new:
        assert new.schema_version() == SCHEMA_HEAD  # 0007 and every later migration
        [item] = new.outbox()
        assert (item.id, item.channel, item.receiver, item.recipient) == (
            1,
            "email",
            "",
            "a@example.com",
        )
        record(new, [rule()], T0, {"f4": [sample("cpu_percent", 38.5)]})
        assert [(i.id, i.channel) for i in new.outbox()] == [(1, "email"), (2, "email")]


def test_alertmanager_labels_carry_the_host_s_and_the_series_wins_a_clash() -> None:
    event = AlertEvent(
        kind="firing",
        rule_id="r",
        rule="disk_percent > 90",
        severity="critical",
        host="db1",
        metric="disk_percent",
        labels=(("mount", "/"), ("role", "series")),
        value=95.0,
        ts=T0,
        since=T0,
        seen=T0,
    )
    body = payloads.alert_json(
        event,
        subject="s",
        description="d",
        dashboard=None,
        host_labels={"role": "db", "dc": "fra", "host": "spoof"},
    )
    assert json.loads(body)["labels"] == {
        "dc": "fra",
        "role": "series",
        "alertname": "disk_percent",
        "host": "db1",
        "mount": "/",
        "severity": "critical",
    }
