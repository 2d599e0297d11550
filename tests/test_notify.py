"""Alert state and the outbox in the store (SQLite, PostgreSQL), delivered to a real SMTP server."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import SMTP_PASSWORD_ENV, rule, sample
from smtpserver import DripServer, HoldingProxy, SMTPServer
from sqlalchemy import text

from netmetrix import notify, pipeline
from netmetrix import store as store_module
from netmetrix.config import AlertRule, SMTPConfig, load_config
from netmetrix.configxml import SMTP, ConfigXml, Host, render
from netmetrix.errors import ConfigError
from netmetrix.model import HostRun, Sample
from netmetrix.pipeline import Recorded
from netmetrix.store import OutboxChange, Store

T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z
SENDER = "netmetrix@example.com"


def record(
    store: Store,
    rules: list[AlertRule],
    ts: float,
    hosts: Mapping[str, list[Sample] | None],
) -> Recorded:
    """One execute's worth of runs: ``None`` for a host that did not answer."""
    runs = [
        HostRun(
            host=name,
            address=f"{name}.example",
            ts=ts,
            ok=samples is not None,
            error=None if samples is not None else "refused: connection refused",
            samples=tuple(samples or ()),
        )
        for name, samples in hosts.items()
    ]
    return pipeline.record(store, runs, rules, now=ts)


def smtp_config(server: SMTPServer, **overrides: Any) -> SMTPConfig:
    fields: dict[str, Any] = {"host": "127.0.0.1", "port": server.port, "sender": SENDER}
    fields.update(overrides)
    return SMTPConfig(**fields)


def deliver(store: Store, server: SMTPServer, *, digest_over: int = 10, **kw: Any) -> Any:
    return notify.deliver(store, smtp_config(server), digest_over=digest_over, **kw)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as s:
        yield s


@pytest.fixture
def mail_log(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.INFO, logger="netmetrix.notify")

    def lines() -> list[str]:
        return [
            f"{r.levelname} {r.getMessage()}"
            for r in caplog.records
            if r.name == "netmetrix.notify"
        ]

    return lines


# ---------------------------------------------------------------- the outbox in the store


def test_mail_is_queued_with_the_samples_and_delivered_exactly_once(
    store: Store, smtp: SMTPServer, mail_log: Callable[[], list[str]]
) -> None:
    rules = [rule()]
    got = record(store, rules, T0, {"f4": [sample("cpu_percent", 38.5)]})
    assert got == Recorded(samples=2, events=1, queued=1)
    [queued] = store.outbox()
    assert (queued.recipient, queued.subject, queued.attempts) == (
        "ops@example.com",
        "ALERT [f4] cpu_percent is 38.5>20",
        0,
    )
    assert smtp.messages == []  # queued, not sent: delivery is a separate step

    done = deliver(store, smtp, clock=lambda: T0 + 1)
    assert done.ok
    assert [m.subject for m in done.sent] == ["ALERT [f4] cpu_percent is 38.5>20"]
    [mail] = smtp.messages
    assert mail.sender == SENDER
    assert mail.recipients == ("ops@example.com",)
    assert mail.subject == "ALERT [f4] cpu_percent is 38.5>20"
    assert mail.message["From"] == SENDER
    assert mail.message["To"] == "ops@example.com"
    assert mail.message["Auto-Submitted"] == "auto-generated"
    assert mail.message["Message-ID"] == f"<netmetrix.{queued.id}.{round(T0 * 1000)}@example.com>"
    assert mail.body == queued.body
    assert "Host:      f4\nAddress:   f4.example\n" in mail.body
    assert mail_log() == ["INFO Mail `ALERT [f4] cpu_percent is 38.5>20` sent to `ops@example.com`"]
    assert store.outbox() == []
    [sent] = store.outbox(undelivered=False)
    assert (sent.attempts, sent.delivered, sent.last_error) == (1, T0 + 1, None)

    assert not deliver(store, smtp).sent  # nothing left
    assert record(store, rules, T0 + 60, {"f4": [sample("cpu_percent", 40.0)]}).events == 0
    assert not deliver(store, smtp).sent
    assert len(smtp.messages) == 1


def test_state_lives_in_the_store_so_a_new_process_neither_resends_nor_forgets(
    store_url: str,
) -> None:
    rules = [rule()]
    with Store.open(store_url) as first:
        assert record(first, rules, T0, {"f4": [sample("cpu_percent", 38.5)]}).queued == 1
    with Store.open(store_url) as second:
        assert record(second, rules, T0 + 60, {"f4": [sample("cpu_percent", 39.0)]}).events == 0
        [active] = second.alerts_active()
        assert (active.host, active.state, active.value, active.since) == ("f4", "firing", 39.0, T0)
        assert record(second, rules, T0 + 120, {"f4": [sample("cpu_percent", 12.0)]}).queued == 1
        assert [i.subject for i in second.outbox()] == [
            "ALERT [f4] cpu_percent is 38.5>20",
            "RESOLVED [f4] cpu_percent is 12 (was >20)",
        ]
        assert second.alerts_active() == []


def test_samples_state_and_mail_commit_together_or_not_at_all(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> int:
        raise RuntimeError("simulated crash while queueing mail")

    monkeypatch.setattr(pipeline, "_queue", broken)
    with pytest.raises(RuntimeError, match="simulated crash"):
        record(store, [rule()], T0, {"f4": [sample("cpu_percent", 38.5)]})
    assert store.history("f4", "cpu_percent") == []
    assert store.hosts() == []
    assert store.alerts_active() == []
    assert store.alert_history() == []
    assert store.outbox(undelivered=False) == []
    monkeypatch.undo()
    assert record(store, [rule()], T0, {"f4": [sample("cpu_percent", 38.5)]}).queued == 1


def test_history_records_every_event_and_resolved_false_mails_nobody(store: Store) -> None:
    rules = [rule(resolved=False, severity="critical")]
    for i, value in enumerate([38.5, 12.0]):
        record(store, rules, T0 + 60 * i, {"f4": [sample("cpu_percent", value)]})
    history = store.alert_history()
    assert [(e.kind, e.value, e.ts, e.since, e.severity) for e in history] == [
        ("resolved", 12.0, T0 + 60, T0, "critical"),
        ("firing", 38.5, T0, T0, "critical"),
    ]
    assert history[0].rule == "cpu_percent > 20"
    assert [i.subject for i in store.outbox()] == ["ALERT [f4] cpu_percent is 38.5>20"]


def test_labels_each_series_its_own_state_and_recent_values_in_the_body(store: Store) -> None:
    rules = [rule(metric="disk_percent", limit=90.0, labels=(("mount", "/"),))]
    for i, (root, var) in enumerate([(85.0, 95.0), (89.0, 96.0), (91.2, 97.0)]):
        record(
            store,
            rules,
            T0 + 60 * i,
            {
                "f4": [
                    sample("disk_percent", root, mount="/"),
                    sample("disk_percent", var, mount="/var"),
                ]
            },
        )
    [item] = store.outbox()  # /var is not watched by this rule
    assert item.subject == 'ALERT [f4] disk_percent{mount="/"} is 91.2>90'
    assert item.body.endswith(
        "Recent values (UTC, oldest first):\n"
        "  2026-09-21T14:13:20.000Z  85\n"
        "  2026-09-21T14:14:20.000Z  89\n"
        "  2026-09-21T14:15:20.000Z  91.2\n"
        "\n-- \nnetmetrix\n"
    )
    [active] = store.alerts_active()
    assert (active.labels, active.since) == ({"mount": "/"}, T0 + 120)


def test_a_host_that_does_not_answer_raises_only_its_up_rule(store: Store) -> None:
    rules = [
        rule(),
        rule(metric="up", op="==", limit=0.0, email=("dba@example.com",)),
        rule(metric="mem_percent", op="<", limit=101.0),  # true for any value it gets
    ]
    ok = [sample("cpu_percent", 38.5), sample("mem_percent", 50.0)]
    record(store, rules, T0, {"f4": ok})
    assert record(store, rules, T0 + 60, {"f4": None}) == Recorded(samples=1, events=1, queued=1)
    assert [i.subject for i in store.outbox()][-1] == "ALERT [f4] up is 0==0"
    active = {(a.metric, a.state, a.ts) for a in store.alerts_active()}
    assert active == {  # the others keep their state: no new sample, nothing to decide
        ("cpu_percent", "firing", T0),
        ("mem_percent", "firing", T0),
        ("up", "firing", T0 + 60),
    }
    record(store, rules, T0 + 120, {"f4": ok})
    assert [i.subject for i in store.outbox()] == [
        "ALERT [f4] cpu_percent is 38.5>20",
        "ALERT [f4] mem_percent is 50<101",
        "ALERT [f4] up is 0==0",
        "RESOLVED [f4] up is 1 (was ==0)",
    ]


def test_the_state_of_a_removed_rule_is_forgotten(store: Store) -> None:
    record(store, [rule()], T0, {"f4": [sample("cpu_percent", 38.5)]})
    assert len(store.alerts_active()) == 1
    record(store, [rule(limit=30.0)], T0 + 60, {"f4": [sample("cpu_percent", 38.5)]})
    assert [a.rule for a in store.alerts_active()] == ["cpu_percent > 30"]
    record(store, [], T0 + 120, {"f4": [sample("cpu_percent", 38.5)]})
    assert store.alerts_active() == []


# ---------------------------------------------------------------- delivery


def test_smtp_down_keeps_every_mail_then_delivers_each_once(
    store: Store, smtp: SMTPServer, mail_log: Callable[[], list[str]]
) -> None:
    rules = [rule(email=("ops@example.com", "oncall@example.com"))]
    record(store, rules, T0, {"f4": [sample("cpu_percent", 38.5)]})
    smtp.stop()
    done = deliver(store, smtp, clock=lambda: T0 + 1)
    error = f"cannot connect to SMTP server 127.0.0.1:{smtp.port} (none): Connection refused"
    assert [(f.recipient, f.error, f.notifications) for f in done.failed] == [
        ("ops@example.com", error, 1),
        ("oncall@example.com", error, 1),
    ]
    assert mail_log() == [
        f"ERROR Mail `ALERT [f4] cpu_percent is 38.5>20` not sent to `{to}`: {error} (attempt 1;"
        " kept in the outbox for the next execute or `netmetrix alerts flush`)"
        for to in ("ops@example.com", "oncall@example.com")
    ]
    waiting = store.outbox()
    assert [(i.attempts, i.last_error, i.last_attempt, i.claimed_until) for i in waiting] == [
        (1, error, T0 + 1, None)
    ] * 2

    smtp.start()
    done = deliver(store, smtp)
    assert done.ok
    assert sorted(m.recipients for m in smtp.messages) == [
        ("oncall@example.com",),
        ("ops@example.com",),
    ]
    assert [i.attempts for i in store.outbox(undelivered=False)] == [2, 2]
    assert not deliver(store, smtp).sent
    assert len(smtp.messages) == 2


def test_more_mail_for_one_recipient_than_digest_over_goes_as_one_digest(
    store: Store, smtp: SMTPServer, mail_log: Callable[[], list[str]]
) -> None:
    rules = [
        rule(metric="up", op="==", limit=1.0),
        rule(email=("dba@example.com",), hosts=("h1",)),
    ]
    hosts = {f"h{i}": [sample("cpu_percent", 50.0)] for i in range(1, 4)}
    assert record(store, rules, T0, hosts).queued == 4
    done = deliver(store, smtp, digest_over=2)
    assert done.ok
    by_rcpt = {m.recipients: m for m in smtp.messages}
    assert set(by_rcpt) == {("ops@example.com",), ("dba@example.com",)}
    digest = by_rcpt[("ops@example.com",)]
    assert digest.subject == "ALERT 3 alerts on 3 hosts"
    assert digest.body.splitlines()[:6] == [
        "3 notifications for ops@example.com in one mail (more than digest_over=2).",
        "",
        "TIME (UTC)                HOST  SEVERITY  NOTIFICATION",
        "2026-09-21T14:13:20.000Z  h1    warning   ALERT [h1] up is 1==1",
        "2026-09-21T14:13:20.000Z  h2    warning   ALERT [h2] up is 1==1",
        "2026-09-21T14:13:20.000Z  h3    warning   ALERT [h3] up is 1==1",
    ]
    assert by_rcpt[("dba@example.com",)].subject == "ALERT [h1] cpu_percent is 50>20"
    assert sorted(mail_log()) == [
        "INFO Mail `ALERT 3 alerts on 3 hosts` sent to `ops@example.com`",
        "INFO Mail `ALERT [h1] cpu_percent is 50>20` sent to `dba@example.com`",
    ]
    assert store.outbox() == []


def test_a_backlog_after_an_outage_goes_as_a_digest_too(store: Store, smtp: SMTPServer) -> None:
    rules = [rule()]
    smtp.stop()
    for i, host in enumerate(["a", "b", "c"]):
        record(store, rules, T0 + 60 * i, {host: [sample("cpu_percent", 30.0 + i)]})
        assert deliver(store, smtp, digest_over=2).failed
    smtp.start()
    assert deliver(store, smtp, digest_over=2).ok
    assert smtp.subjects == ["ALERT 3 alerts on 3 hosts"]


def test_a_refused_recipient_does_not_hold_back_the_others(store: Store, smtp: SMTPServer) -> None:
    smtp.mailbox.refuse["gone@example.com"] = "550 5.1.1 <gone@example.com>: no such user"
    record(
        store,
        [rule(email=("gone@example.com", "ops@example.com"))],
        T0,
        {"f4": [sample("cpu_percent", 38.5)]},
    )
    done = deliver(store, smtp)
    assert [m.recipients for m in smtp.messages] == [("ops@example.com",)]
    [failed] = done.failed
    assert failed.recipient == "gone@example.com"
    assert failed.error == "recipient refused: 550 5.1.1 <gone@example.com>: no such user"
    [left] = store.outbox()
    assert (left.recipient, left.attempts, left.last_error) == ("gone@example.com", 1, failed.error)


def test_mail_claimed_by_another_sender_is_left_to_it_until_its_lease_ends(
    store: Store, smtp: SMTPServer
) -> None:
    record(store, [rule()], T0, {"f4": [sample("cpu_percent", 38.5)]})
    [item] = store.outbox()
    assert store.claim_mail([item.id], "other-collector", now=T0, lease=60)
    assert not store.claim_mail([item.id], "third", now=T0 + 59, lease=60)
    done = deliver(store, smtp, clock=lambda: T0 + 30)
    assert (done.sent, done.failed, done.busy) == ([], [], 1)
    assert smtp.messages == []
    done = deliver(store, smtp, clock=lambda: T0 + 61)  # the other one died: its lease ran out
    assert (len(done.sent), done.busy) == (1, 0)
    assert len(smtp.messages) == 1


def test_two_senders_at_once_send_each_mail_once(store_url: str, smtp: SMTPServer) -> None:
    recipients = tuple(f"ops{i}@example.com" for i in range(12))
    with Store.open(store_url) as s:
        record(s, [rule(email=recipients)], T0, {"f4": [sample("cpu_percent", 38.5)]})
    barrier = threading.Barrier(2, timeout=30)
    results: list[Any] = []
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            with Store.open(store_url) as mine:
                barrier.wait()
                results.append(deliver(mine, smtp))
        except BaseException as err:  # reported by the assert below
            errors.append(err)

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(m.recipients[0] for m in smtp.messages) == sorted(recipients)
    assert sum(len(r.sent) for r in results) == 12
    assert all(r.ok for r in results)


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_and_login(
    store: Store, smtp_servers: Callable[..., SMTPServer], security: str
) -> None:
    server = smtp_servers(security=security, user="monitor", password="s3cret-Pw!")
    record(store, [rule()], T0, {"f4": [sample("cpu_percent", 38.5)]})
    config = smtp_config(server, security=security, user="monitor", password_env=SMTP_PASSWORD_ENV)
    done = notify.deliver(store, config, digest_over=10)
    assert done.ok, done.failed
    assert server.subjects == ["ALERT [f4] cpu_percent is 38.5>20"]
    assert server.mailbox.logins == ["monitor"]


def test_a_wrong_password_is_reported_and_never_shown(
    store: Store,
    smtp_servers: Callable[..., SMTPServer],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = smtp_servers(security="starttls", user="monitor", password="right-one")
    monkeypatch.setenv(SMTP_PASSWORD_ENV, "Wr0ng-PassW0rd")
    caplog.set_level(logging.DEBUG)
    record(store, [rule()], T0, {"f4": [sample("cpu_percent", 38.5)]})
    config = smtp_config(
        server, security="starttls", user="monitor", password_env=SMTP_PASSWORD_ENV
    )
    done = notify.deliver(store, config, digest_over=10)
    [failed] = done.failed
    assert failed.error == (
        f"127.0.0.1:{server.port} refused the login of user 'monitor':"
        " 535 5.7.8 Authentication credentials invalid"
    )
    assert server.messages == []
    assert "Wr0ng-PassW0rd" not in caplog.text
    assert all("Wr0ng" not in (i.last_error or "") + i.body for i in store.outbox())


def test_a_missing_password_variable_is_reported(
    store: Store, smtp_servers: Callable[..., SMTPServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_servers(security="starttls", user="monitor", password="pw")
    monkeypatch.delenv(SMTP_PASSWORD_ENV)
    record(store, [rule()], T0, {"f4": [sample("cpu_percent", 38.5)]})
    config = smtp_config(server, security="starttls", user="monitor", password_env="NO_SUCH_VAR")
    [failed] = notify.deliver(store, config, digest_over=10).failed
    assert failed.error == (
        "<smtp user> is 'monitor' but the environment variable NO_SUCH_VAR (password_env)"
        " is not set"
    )


def test_an_untrusted_certificate_is_refused(
    store: Store, smtp_servers: Callable[..., SMTPServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_servers(security="tls")
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    monkeypatch.setenv("SSL_CERT_DIR", "/nonexistent")
    record(store, [rule()], T0, {"f4": [sample("cpu_percent", 38.5)]})
    [failed] = notify.deliver(store, smtp_config(server, security="tls"), digest_over=10).failed
    assert failed.error.startswith(
        f"cannot connect to SMTP server 127.0.0.1:{server.port} (tls): TLS certificate not trusted:"
    )
    assert server.messages == []


def test_starttls_against_a_server_without_it(store: Store, smtp: SMTPServer) -> None:
    record(store, [rule()], T0, {"f4": [sample("cpu_percent", 38.5)]})
    [failed] = notify.deliver(store, smtp_config(smtp, security="starttls"), digest_over=10).failed
    assert failed.error == (
        f"cannot connect to SMTP server 127.0.0.1:{smtp.port} (starttls):"
        " STARTTLS extension not supported by server."
    )


# ---------------------------------------------------------------- one mail fails alone (#10)

CRLF_MOUNT = "/\r\nBcc: x@evil.example"


def test_a_label_with_crlf_cannot_add_a_header_and_the_other_mail_goes_too(
    store: Store, smtp: SMTPServer, mail_log: Callable[[], list[str]]
) -> None:
    rules = [rule(metric="disk_percent", limit=90.0), rule(email=("dba@example.com",))]
    samples = [sample("disk_percent", 95.0, mount=CRLF_MOUNT), sample("cpu_percent", 38.5)]
    assert record(store, rules, T0, {"f4": samples}).queued == 2
    done = deliver(store, smtp)
    assert (len(done.sent), done.failed) == (2, [])
    by_rcpt = {m.recipients: m for m in smtp.messages}
    assert set(by_rcpt) == {("ops@example.com",), ("dba@example.com",)}
    poisoned = by_rcpt[("ops@example.com",)]
    assert poisoned.subject == 'ALERT [f4] disk_percent{mount="/ Bcc: x@evil.example"} is 95>90'
    for mail in smtp.messages:
        assert mail.message["Bcc"] is None
        assert all("\r" not in v and "\n" not in v for v in mail.message.values())
    assert by_rcpt[("dba@example.com",)].subject == "ALERT [f4] cpu_percent is 38.5>20"
    assert all("\r" not in line and "\n" not in line for line in mail_log())
    assert store.outbox() == []


def test_header_text_is_one_clean_line() -> None:
    assert notify.header_text("a\r\nBcc: b\x00\x1b[2J\x85c\u2028d  e\t") == "a Bcc: b [2J c d e"
    assert notify.header_text("surrogate \ud800 here") == "surrogate ? here"
    assert notify.header_text("x" * 300) == "x" * 247 + "..."
    assert notify.body_text("a\r\nb\rc\x00d\te\x1b") == "a\nb\nc?d\te?"


def test_a_mail_that_cannot_be_built_is_a_dead_letter_and_the_rest_go(
    store: Store, smtp: SMTPServer, mail_log: Callable[[], list[str]]
) -> None:
    """A row whose recipient holds CRLF (a damaged or hand-edited store) fails alone."""
    rules = [rule(email=("ops@example.com", "dba@example.com"))]
    record(store, rules, T0, {"f4": [sample("cpu_percent", 38.5)]})
    bad = "ops@example.com\r\nBcc: x@evil.example"
    with store.engine.begin() as conn:
        conn.execute(
            store_module.outbox_table.update()
            .where(store_module.outbox_table.c.recipient == "ops@example.com")
            .values(recipient=bad)
        )
    done = deliver(store, smtp, clock=lambda: T0 + 1)
    assert [m.recipients for m in smtp.messages] == [("dba@example.com",)]
    error = (
        f"cannot build the mail: ValueError: address {bad!r} contains a space or control character"
    )
    assert [(f.error, f.permanent) for f in done.failed] == [(error, True)]
    [left] = store.outbox()
    assert (left.attempts, left.last_error, left.failed, left.claimed_until) == (
        1,
        error,
        T0 + 1,
        None,
    )
    assert [line.split(" outbox id")[0] for line in mail_log() if line.startswith("ERROR")] == [
        "ERROR Mail `ALERT [f4] cpu_percent is 38.5>20` to `ops@example.com Bcc: x@evil.example`"
        f" failed for good: {error}"
        " (attempt 1; a dead letter now,"
    ]
    assert not deliver(store, smtp).failed  # a dead letter is not tried again


def test_any_error_while_sending_one_mail_fails_that_mail_only(
    store: Store, smtp: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: smtplib raising something unforeseen for one message."""
    rules = [rule(), rule(metric="mem_percent", email=("dba@example.com",))]
    record(store, rules, T0, {"f4": [sample("cpu_percent", 38.5), sample("mem_percent", 50.0)]})
    real = notify._SMTP.send_message

    def send_message(self: Any, message: Any, *args: Any, **kw: Any) -> Any:
        if "cpu_percent" in str(message["Subject"]):
            raise RuntimeError("simulated bug\r\nin the mail library")
        return real(self, message, *args, **kw)

    monkeypatch.setattr(notify._SMTP, "send_message", send_message)
    done = deliver(store, smtp, clock=lambda: T0 + 1)
    assert smtp.subjects == ["ALERT [f4] mem_percent is 50>20"]
    error = "cannot send the mail: RuntimeError: simulated bug in the mail library"
    assert [(f.recipient, f.error, f.permanent) for f in done.failed] == [
        ("ops@example.com", error, False)
    ]
    [left] = store.outbox()
    assert (left.attempts, left.last_error, left.failed, left.claimed_until) == (
        1,
        error,
        None,
        None,
    )
    monkeypatch.undo()
    assert len(deliver(store, smtp).sent) == 1  # retried, and it goes
    assert store.outbox() == []


# ---------------------------------------------------------------- deadline, claims (#10)


def two_mails(store: Store) -> None:
    record(
        store,
        [rule(email=("ops@example.com", "dba@example.com"))],
        T0,
        {"f4": [sample("cpu_percent", 38.5)]},
    )


def deliver_in_thread(store: Store, config: SMTPConfig, **kw: Any) -> Any:
    """``notify.deliver`` in a thread, so a hang fails the test instead of blocking it."""
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(notify.deliver(store, config, digest_over=10, **kw))
        except BaseException as err:  # shown by the assert below
            results.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=120)  # the deadlines under test are seconds; generous for a loaded machine
    assert not thread.is_alive(), "deliver() ignored its deadline"
    [result] = results
    assert isinstance(result, notify.Delivery), result
    return result


def test_a_server_dripping_its_greeting_cannot_hold_delivery_past_the_deadline(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    two_mails(store)
    with DripServer("greeting") as slow:
        config = SMTPConfig(host="127.0.0.1", port=slow.port, timeout=10.0, deadline=1.5)
        done = deliver_in_thread(store, config, clock=lambda: T0 + 1)
        assert slow.dripping.is_set()
    assert (done.sent, done.failed, done.deferred, done.deadline) == ([], [], 2, 1.5)
    assert not done.ok
    assert [(i.attempts, i.last_error, i.claimed_until) for i in store.outbox()] == [
        (0, None, None)
    ] * 2  # not counted as an attempt: they were not tried
    assert (
        f"SMTP delivery deadline of 1.5s reached (127.0.0.1:{slow.port}): 2 mail(s) left in the"
        " outbox for the next execute or `netmetrix alerts flush`"
    ) in caplog.messages
    assert done.problems("execute") == [
        "execute: 2 mail(s) not tried, the SMTP delivery deadline (1.5s) came first; kept in"
        " the outbox for the next execute or `netmetrix alerts flush`"
    ]


def test_the_deadline_fails_the_mail_in_flight_and_leaves_the_rest_untried(store: Store) -> None:
    two_mails(store)
    with DripServer("data") as slow:
        # The deadline must outlast reaching DATA (milliseconds) on a loaded machine too.
        config = SMTPConfig(host="127.0.0.1", port=slow.port, timeout=10.0, deadline=8.0)
        done = deliver_in_thread(store, config, clock=lambda: T0 + 1)
    error = (
        f"SMTP server 127.0.0.1:{slow.port} still busy sending when the delivery deadline"
        " of 8s passed"
    )
    assert [(f.recipient, f.error, f.permanent) for f in done.failed] == [
        ("ops@example.com", error, False)
    ]
    assert done.deferred == 1
    by_rcpt = {i.recipient: i for i in store.outbox()}
    assert (by_rcpt["ops@example.com"].attempts, by_rcpt["ops@example.com"].last_error) == (
        1,
        error,
    )
    assert (by_rcpt["dba@example.com"].attempts, by_rcpt["dba@example.com"].last_error) == (0, None)
    assert all(i.claimed_until is None for i in store.outbox())


def test_two_deliverers_never_send_a_mail_twice_when_a_greeting_outlasts_the_lease(
    store_url: str, smtp: SMTPServer
) -> None:
    """A's server greets only after B, whose clock says A's lease ran out, sent the mail."""
    with Store.open(store_url) as s:
        record(s, [rule()], T0, {"f4": [sample("cpu_percent", 38.5)]})
    with HoldingProxy(smtp.port, hold="greeting") as proxy, Store.open(store_url) as a_store:
        results: list[Any] = []  # A's deadline: as long as the proxy holds it, on any machine
        a = threading.Thread(
            target=lambda: results.append(
                notify.deliver(
                    a_store, smtp_config(smtp, port=proxy.port, deadline=600.0), digest_over=10
                )
            ),
            daemon=True,
        )
        a.start()
        try:
            assert proxy.held.wait(timeout=60), "deliverer A never connected"
            with Store.open(store_url) as b_store:
                b = deliver(b_store, smtp, clock=lambda: time.time() + 3600)
        finally:
            proxy.release.set()
            a.join(timeout=120)
        assert not a.is_alive()
    assert len(b.sent) == 1
    [a_done] = results
    assert (a_done.sent, a_done.failed, a_done.busy) == ([], [], 1)
    ids = [m.message["Message-ID"] for m in smtp.messages]
    assert len(ids) == 1, ids


def test_a_claim_taken_over_while_sending_is_not_marked_delivered_by_us(
    store: Store, smtp: SMTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    record(store, [rule()], T0, {"f4": [sample("cpu_percent", 38.5)]})
    [item] = store.outbox()
    results: list[Any] = []  # A's deadline: as long as the proxy holds it, on any machine
    with HoldingProxy(smtp.port, hold="data-reply") as proxy:
        a = threading.Thread(
            target=lambda: results.append(
                notify.deliver(
                    store, smtp_config(smtp, port=proxy.port, deadline=600.0), digest_over=10
                )
            ),
            daemon=True,
        )
        a.start()
        try:
            assert proxy.held.wait(timeout=60), "the mail never reached the server"
            # Another collector whose clock says our lease ran out takes the mail over.
            assert store.claim_mail([item.id], "thief", now=time.time() + 3600, lease=60)
        finally:
            proxy.release.set()
            a.join(timeout=120)
        assert not a.is_alive()
    [done] = results
    assert (done.sent, done.failed, done.lost) == ([], [], 1)
    assert (
        "Mail `ALERT [f4] cpu_percent is 38.5>20` sent to `ops@example.com`, but our claim on it"
        " had run out: another netmetrix took it over and may send it too"
    ) in caplog.messages
    [left] = store.outbox()
    assert left.delivered is None  # the thief's to settle
    assert left.claimed_until is not None
    assert len(smtp.messages) == 1


def test_mail_delivered_counts_only_for_the_claim_still_held(store: Store) -> None:
    record(store, [rule()], T0, {"f4": [sample("cpu_percent", 38.5)]})
    [item] = store.outbox()
    assert store.claim_mail([item.id], "first", now=T0, lease=60)
    assert store.claim_mail([item.id], "second", now=T0 + 61, lease=60)  # first's ran out
    assert not store.mail_delivered([item.id], "first", now=T0 + 62)
    assert store.outbox()[0].delivered is None
    store.release_mail([item.id], "first")  # not ours any more: left alone
    assert store.outbox()[0].claimed_until == T0 + 121
    assert store.mail_delivered([item.id], "second", now=T0 + 63)
    assert store.outbox(undelivered=False)[0].delivered == T0 + 63


def test_smtp_timeout_and_deadline_come_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "config.xml"
    path.write_text(
        render(ConfigXml(smtp=SMTP(timeout="5s", deadline="1m"), hosts=[Host(name="a")]))
    )
    smtp = load_config(path).smtp
    assert (smtp.timeout, smtp.deadline) == (5.0, 60.0)
    assert (SMTPConfig().timeout, SMTPConfig().deadline) == (10.0, 30.0)
    path.write_text(
        '<netmetrix>\n<smtp deadline="2h" timeout="0"/>'
        '<hosts><host name="a"/></hosts></netmetrix>\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == (
        f'{path}:2: <smtp>: timeout must be a duration > 0 and at most 3600 s ("10s", "1m"),'
        ' got "0"',
        f'{path}:2: <smtp>: deadline must be a duration > 0 and at most 3600 s ("10s", "1m"),'
        ' got "2h"',
    )


# ---------------------------------------------------------------- dead letters (#10)


@pytest.mark.parametrize(
    ("where", "reply", "permanent"),
    [
        ("RCPT", "550 5.1.1 <ops@example.com>: no such user", True),
        ("RCPT", "553 5.1.3 bad address syntax", True),
        ("DATA", "554 5.6.0 message content rejected", True),
        ("RCPT", "450 4.2.1 mailbox busy, try later", False),
        ("DATA", "451 4.3.0 local error, try later", False),
        ("RCPT", "530 5.7.0 Authentication required", False),  # our setup, not the mail
    ],
)
def test_a_5xx_refusal_is_a_dead_letter_and_a_4xx_is_retried(
    store: Store, smtp: SMTPServer, where: str, reply: str, permanent: bool
) -> None:
    record(store, [rule()], T0, {"f4": [sample("cpu_percent", 38.5)]})
    if where == "RCPT":
        smtp.mailbox.refuse["ops@example.com"] = reply
    else:
        smtp.mailbox.refuse_data = reply
    done = deliver(store, smtp, clock=lambda: T0 + 1)
    kind = "recipient refused" if where == "RCPT" else "server refused the message"
    [failed] = done.failed
    assert (failed.error, failed.permanent) == (f"{kind}: {reply}", permanent)
    assert (done.dead == [failed]) is permanent
    [item] = store.outbox()
    assert (item.attempts, item.last_error) == (1, failed.error)
    assert item.failed == (T0 + 1 if permanent else None)
    assert store.outbox(failed=True) == ([item] if permanent else [])

    smtp.mailbox.refuse.clear()
    smtp.mailbox.refuse_data = None
    again = deliver(store, smtp)
    if permanent:  # left alone, and not counted against this pass
        assert (again.sent, again.failed, again.dead_letters, again.ok) == ([], [], 1, True)
        assert smtp.messages == []
        assert store.retry_mail([item.id]).changed == (item.id,)
        again = deliver(store, smtp)
    assert len(again.sent) == 1
    assert smtp.subjects == ["ALERT [f4] cpu_percent is 38.5>20"]
    [sent] = store.outbox(undelivered=False)
    assert (sent.attempts, sent.failed) == (2, None)


def test_drop_and_retry_act_on_undelivered_mail_all_or_nothing(
    store: Store, smtp: SMTPServer
) -> None:
    rules = [rule(email=("a@example.com", "b@example.com", "c@example.com"))]
    record(store, rules, T0, {"f4": [sample("cpu_percent", 38.5)]})
    smtp.mailbox.refuse["a@example.com"] = "550 5.1.1 no such user"
    smtp.mailbox.refuse["b@example.com"] = "450 4.2.1 try later"
    deliver(store, smtp)
    ids = {i.recipient: i.id for i in store.outbox(undelivered=False)}
    dead, waiting, sent = ids["a@example.com"], ids["b@example.com"], ids["c@example.com"]

    unknown = OutboxChange(unknown=(sent, 999))
    assert store.retry_mail([dead, sent, 999]) == unknown
    assert store.drop_mail([dead, waiting, 999, sent]) == unknown
    assert store.outbox(failed=True)[0].id == dead  # nothing changed
    assert store.retry_mail([waiting, dead]) == OutboxChange(changed=(dead,), unchanged=(waiting,))
    assert store.outbox(failed=True) == []
    assert store.drop_mail([dead, waiting]) == OutboxChange(changed=(dead, waiting))
    assert store.outbox() == []
    assert [i.id for i in store.outbox(undelivered=False)] == [sent]


def test_migration_0003_keeps_the_outbox_and_its_ids(store_url: str) -> None:
    from alembic import command

    with Store.open(store_url, upgrade=False) as old:
        with old.writing("migrate to 0002") as conn:
            cfg = store_module.alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0002")
        assert old.schema_version() == "0002"
        with old.writing("fill the 0002 outbox") as conn:
            conn.execute(
                text(
                    "INSERT INTO alert_events (ts_ms, kind, rule_id, rule, severity, host, metric,"
                    " labels, value, since_ms) VALUES (1, 'firing', 'r', 'cpu > 1', 'warning',"
                    " 'f4', 'cpu', '{}', 2.0, 1)"
                )
            )
            for recipient in ("a@example.com", "b@example.com", "c@example.com"):
                conn.execute(
                    text(
                        "INSERT INTO outbox (event_id, recipient, subject, body, created_ms,"
                        " attempts, last_error) VALUES (1, :r, 's', 'b', 5, 3, 'refused')"
                    ),
                    {"r": recipient},
                )
            conn.execute(text("DELETE FROM outbox WHERE recipient = 'c@example.com'"))
    with Store.open(store_url) as new:
        assert new.schema_version() == store_module.SCHEMA_HEAD
        items = new.outbox()
        assert [(i.id, i.recipient, i.attempts, i.last_error, i.failed) for i in items] == [
            (1, "a@example.com", 3, "refused", None),
            (2, "b@example.com", 3, "refused", None),
        ]
        record(new, [rule()], T0, {"f4": [sample("cpu_percent", 38.5)]})
        assert [i.id for i in new.outbox()] == [1, 2, 4]  # 3 was dropped: never reused
