"""Alert mail end to end: real sshd hosts, the real probe, a real SMTP server, the CLI.

Each host's ``load1`` is set by the test: its `python` is a wrapper that makes
the probe's ``os.getloadavg()`` read a file (see ``Dial``); everything else is
the real probe, sshd, store and aiosmtpd.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import ports
import pytest
from conftest import Fleet, Run, sigint_default
from smtpserver import DripServer, SMTPServer

from netmetrix import collect, notify, pipeline
from netmetrix.config import AlertRule, load_config
from netmetrix.configxml import SMTP, Alert, ConfigXml, Host, render
from netmetrix.model import HostRun, Sample
from netmetrix.store import Store

Cli = Callable[..., Run]
H = 3600.0

_HOOK = """\
import os
_path = os.environ.get("NMX_TEST_LOAD")
if _path:
    def _getloadavg():
        with open(_path) as handle:
            value = float(handle.read())
        return (value, value, value)
    os.getloadavg = _getloadavg
"""


@dataclass
class Dial:
    """The load average one test host reports (load1 = load5 = load15)."""

    path: Path

    def set(self, value: float) -> None:
        self.path.write_text(repr(value))


def dial_host(fleet: Fleet, name: str, server: int, value: float) -> Dial:
    hook = fleet.root / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(_HOOK)
    dial = Dial(fleet.root / f"load-{name}")
    dial.set(value)
    python = fleet.wrapper(
        f"load-{name}",
        f'NMX_TEST_LOAD="{dial.path}" PYTHONPATH="{hook}" exec "{sys.executable}" "$@"',
    )
    fleet.host(name, server, python=python)
    return dial


def configure(
    fleet: Fleet, smtp: SMTPServer, *rules: Alert, digest_over: int | None = None
) -> None:
    """Write config.xml with ``<smtp>`` for ``smtp`` and the alert ``rules``."""
    fleet.write(smtp=smtp.settings(), alerts=rules, digest_over=digest_over)


LOAD_OVER_20 = Alert(metric="load1", op=">", limit=20, email="ops@example.com")
UP_IS_0 = Alert(metric="up", op="==", limit=0, email="dba@example.com")


def upload(fleet: Fleet, netmetrix: Cli) -> None:
    done = netmetrix("--config", fleet.config, "upload")
    assert done.code == 0, done.err


def execute(fleet: Fleet, netmetrix: Cli, code: int = 0) -> Run:
    done = netmetrix("--config", fleet.config, "execute")
    assert done.code == code, done.err
    return done


def query(fleet: Fleet, netmetrix: Cli, *args: str) -> list[dict[str, object]]:
    done = netmetrix("--config", fleet.config, "alerts", *args, "--format", "json")
    assert done.code == 0, done.err
    rows = json.loads(done.out)
    assert isinstance(rows, list)
    return rows


# ---------------------------------------------------------------- with sshd


@pytest.mark.sshd
def test_a_crossing_mails_once_with_the_spec_subject_then_resolves(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    dial = dial_host(fleet, "f4", 0, 38.5)
    configure(fleet, smtp, LOAD_OVER_20)
    upload(fleet, netmetrix)

    ran = execute(fleet, netmetrix)
    assert " INFO Mail `ALERT [f4] load1 is 38.5>20` sent to `ops@example.com`\n" in ran.err
    assert smtp.subjects == ["ALERT [f4] load1 is 38.5>20"]
    [mail] = smtp.messages
    assert mail.recipients == ("ops@example.com",)
    assert "Host:      f4\nAddress:   127.0.0.1\nMetric:    load1\nLabels:    (none)\n" in mail.body
    assert "Rule:      load1 > 20 (config line " in mail.body
    for _ in range(2):
        assert "Mail" not in execute(fleet, netmetrix).err
    assert len(smtp.messages) == 1

    dial.set(12.0)
    ran = execute(fleet, netmetrix)
    assert "INFO Mail `RESOLVED [f4] load1 is 12 (was >20)` sent to `ops@example.com`" in ran.err
    assert smtp.subjects == ["ALERT [f4] load1 is 38.5>20", "RESOLVED [f4] load1 is 12 (was >20)"]
    assert query(fleet, netmetrix, "active") == []
    assert [(e["event"], e["value"]) for e in query(fleet, netmetrix, "history")] == [
        ("resolved", 12.0),
        ("firing", 38.5),
    ]


@pytest.mark.sshd
def test_mail_shows_a_short_value_and_the_store_keeps_the_exact_one(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    exact = 74.93908382066277
    dial_host(fleet, "f4", 0, exact)
    configure(fleet, smtp, replace(LOAD_OVER_20, limit=50))
    upload(fleet, netmetrix)
    execute(fleet, netmetrix)
    assert smtp.subjects == ["ALERT [f4] load1 is 74.9>50"]
    assert "load1 on f4 is 74.9, past the limit > 50.\n" in smtp.messages[0].body
    assert [e["value"] for e in query(fleet, netmetrix, "history")] == [exact]
    latest = netmetrix("--config", fleet.config, "metrics", "latest", "-m", "load1", "--format=csv")
    assert latest.out.splitlines()[1].endswith(f",{exact}")


@pytest.mark.sshd
def test_for_three_needs_three_runs(fleet: Fleet, netmetrix: Cli, smtp: SMTPServer) -> None:
    dial_host(fleet, "f4", 0, 38.5)
    configure(fleet, smtp, replace(LOAD_OVER_20, for_count=3))
    upload(fleet, netmetrix)
    for _ in (1, 2):
        execute(fleet, netmetrix)
        assert smtp.messages == []
        [row] = query(fleet, netmetrix, "active")
        assert (row["state"], row["metric"]) == ("pending", "load1")
    execute(fleet, netmetrix)
    assert smtp.subjects == ["ALERT [f4] load1 is 38.5>20"]
    [row] = query(fleet, netmetrix, "active")
    assert row["state"] == "firing"


@pytest.mark.sshd
def test_clear_holds_the_alert_between_clear_and_limit(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    dial = dial_host(fleet, "f4", 0, 95.0)
    configure(
        fleet,
        smtp,
        Alert(metric="load1", op=">", limit=90, clear=80, email="ops@example.com"),
    )
    upload(fleet, netmetrix)
    execute(fleet, netmetrix)
    for value in (85.0, 89.0, 80.5):  # under the limit, still past clear: no flapping
        dial.set(value)
        execute(fleet, netmetrix)
    assert smtp.subjects == ["ALERT [f4] load1 is 95>90"]
    dial.set(75.0)
    execute(fleet, netmetrix)
    assert smtp.subjects == ["ALERT [f4] load1 is 95>90", "RESOLVED [f4] load1 is 75 (was >90)"]


@pytest.mark.sshd
def test_smtp_down_stores_samples_keeps_mail_exits_1_then_delivers_each_once(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    dial_host(fleet, "f4", 0, 38.5)
    configure(fleet, smtp, replace(LOAD_OVER_20, email=("ops@example.com", "oncall@x.org")))
    upload(fleet, netmetrix)
    smtp.stop()

    ran = execute(fleet, netmetrix, code=1)
    error = f"cannot connect to SMTP server 127.0.0.1:{smtp.port} (none): Connection refused"
    for to in ("ops@example.com", "oncall@x.org"):
        assert (
            f" ERROR Mail `ALERT [f4] load1 is 38.5>20` not sent to `{to}`: {error} (attempt 1;"
        ) in ran.err
    assert "execute: 1 ok in " in ran.err
    assert ran.err.endswith(
        "execute: 2 mail(s) to oncall@x.org, ops@example.com not delivered; kept in the outbox"
        " for the next execute or `netmetrix alerts flush`\n"
    )
    with Store.open(f"sqlite:///{fleet.database}") as store:
        assert [s.value for s in store.history("f4", "load1")] == [38.5]  # stored all the same
    outbox = query(fleet, netmetrix, "outbox")
    assert [(r["status"], r["attempts"], r["last_error"]) for r in outbox] == [
        ("pending", 1, error)
    ] * 2

    smtp.start()
    ran = execute(fleet, netmetrix)
    assert sorted(m.recipients[0] for m in smtp.messages) == ["oncall@x.org", "ops@example.com"]
    assert set(smtp.subjects) == {"ALERT [f4] load1 is 38.5>20"}
    assert query(fleet, netmetrix, "outbox") == []
    delivered = query(fleet, netmetrix, "outbox", "--all")
    assert [(r["status"], r["attempts"]) for r in delivered] == [("delivered", 2)] * 2
    execute(fleet, netmetrix)
    assert len(smtp.messages) == 2


@pytest.mark.sshd
def test_alerts_flush_delivers_what_an_outage_left(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    dial_host(fleet, "f4", 0, 38.5)
    configure(fleet, smtp, LOAD_OVER_20)
    upload(fleet, netmetrix)
    smtp.stop()
    execute(fleet, netmetrix, code=1)

    flushed = netmetrix("--config", fleet.config, "alerts", "flush")
    assert flushed.code == 1
    assert flushed.err.endswith(
        "flush: 0 delivered in 0 mail(s), 1 not delivered (kept in the outbox)\n"
    )
    assert "(attempt 2; kept in the outbox" in flushed.err
    smtp.start()
    flushed = netmetrix("--config", fleet.config, "alerts", "flush")
    assert flushed.code == 0, flushed.err
    assert "INFO Mail `ALERT [f4] load1 is 38.5>20` sent to `ops@example.com`" in flushed.err
    assert flushed.err.endswith("flush: 1 delivered in 1 mail(s)\n")
    assert flushed.out == ""
    again = netmetrix("--config", fleet.config, "alerts", "flush")
    assert (again.code, again.err) == (0, "flush: the outbox is empty\n")
    assert smtp.subjects == ["ALERT [f4] load1 is 38.5>20"]


@pytest.mark.sshd
def test_a_fresh_process_does_not_resend(fleet: Fleet, smtp: SMTPServer) -> None:
    dial_host(fleet, "f4", 0, 38.5)
    configure(fleet, smtp, LOAD_OVER_20)
    env = {**os.environ, "NETMETRIX_CONFIG": str(fleet.config)}
    exe = Path(sys.executable).with_name("netmetrix")
    for verb in ("upload", "execute", "execute", "execute"):
        done = subprocess.run([exe, verb], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout == ""
    assert smtp.subjects == ["ALERT [f4] load1 is 38.5>20"]


@pytest.mark.sshd
def test_many_alerts_for_one_recipient_go_as_one_digest(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    for i, name in enumerate(("f1", "f2", "f3")):
        dial_host(fleet, name, i, 30.0 + i)
    configure(fleet, smtp, LOAD_OVER_20, UP_IS_0, digest_over=2)
    upload(fleet, netmetrix)
    ran = execute(fleet, netmetrix)
    assert "INFO Mail `ALERT 3 alerts on 3 hosts` sent to `ops@example.com`" in ran.err
    [digest] = smtp.messages
    assert digest.subject == "ALERT 3 alerts on 3 hosts"
    assert digest.recipients == ("ops@example.com",)
    table = [line.split(None, 3)[1:] for line in digest.body.splitlines()[3:6]]
    assert sorted(table) == [
        ["f1", "warning", "ALERT [f1] load1 is 30>20"],
        ["f2", "warning", "ALERT [f2] load1 is 31>20"],
        ["f3", "warning", "ALERT [f3] load1 is 32>20"],
    ]


@pytest.mark.sshd
@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_and_login_end_to_end(
    fleet: Fleet, netmetrix: Cli, smtp_servers: Callable[..., SMTPServer], security: str
) -> None:
    server = smtp_servers(security=security, user="monitor", password="pw-S3CRET-42")
    dial_host(fleet, "f4", 0, 38.5)
    configure(fleet, server, LOAD_OVER_20)
    upload(fleet, netmetrix)
    ran = netmetrix("--config", fleet.config, "-vv", "execute")
    assert ran.code == 0, ran.err
    assert server.subjects == ["ALERT [f4] load1 is 38.5>20"]
    assert server.mailbox.logins == ["monitor"]
    assert "pw-S3CRET-42" not in ran.err + ran.out


@pytest.mark.sshd
def test_a_host_that_stops_answering_fires_only_its_up_rule(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    dial_host(fleet, "f4", 0, 38.5)
    configure(fleet, smtp, LOAD_OVER_20, UP_IS_0)
    upload(fleet, netmetrix)
    execute(fleet, netmetrix)
    assert smtp.subjects == ["ALERT [f4] load1 is 38.5>20"]

    port = fleet.hosts[0]["port"]
    fleet.hosts[0]["port"] = str(ports.free_port())
    configure(fleet, smtp, LOAD_OVER_20, UP_IS_0)
    ran = execute(fleet, netmetrix, code=1)
    assert "ERROR [f4] FAILED: connection refused" in ran.err
    assert "INFO Mail `ALERT [f4] up is 0==0` sent to `dba@example.com`" in ran.err
    assert smtp.subjects == ["ALERT [f4] load1 is 38.5>20", "ALERT [f4] up is 0==0"]
    active = {(r["metric"], r["state"]) for r in query(fleet, netmetrix, "active")}
    assert active == {("load1", "firing"), ("up", "firing")}  # load1 neither resolved nor re-sent

    fleet.hosts[0]["port"] = port
    configure(fleet, smtp, LOAD_OVER_20, UP_IS_0)
    execute(fleet, netmetrix)
    assert smtp.subjects[2:] == ["RESOLVED [f4] up is 1 (was ==0)"]
    assert [r["metric"] for r in query(fleet, netmetrix, "active")] == ["load1"]


@pytest.mark.sshd
def test_repeat_re_sends_after_its_interval_by_the_injected_clock(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    dial_host(fleet, "f4", 0, 38.5)
    configure(fleet, smtp, replace(LOAD_OVER_20, repeat="4h"))
    upload(fleet, netmetrix)
    config = load_config(fleet.config)
    base = float(round(time.time()))  # whole seconds: the store keeps milliseconds
    now = [base]
    sent: list[int] = []
    with Store.open(config.database) as store:
        for offset in (0, H, 4 * H - 1, 4 * H, 5 * H, 8 * H):
            now[0] = base + offset
            asyncio.run(collect.execute(config, store, config.hosts, clock=lambda: now[0]))
            notify.deliver(store, config.smtp, digest_over=10, clock=lambda: now[0])
            sent.append(len(smtp.messages))
        history = store.alert_history()
    assert sent == [1, 1, 1, 2, 2, 3]
    assert smtp.subjects == ["ALERT [f4] load1 is 38.5>20"] * 3
    assert "(reminder)" in smtp.messages[1].body
    assert [(e.kind, e.ts - base) for e in reversed(history)] == [
        ("firing", 0.0),
        ("repeat", 4 * H),
        ("repeat", 8 * H),
    ]


# ---------------------------------------------------------------- the query commands


T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z


@pytest.fixture
def alerting_db(tmp_path: Path) -> Path:
    """A config.xml and a store with one firing and one pending alert and one undelivered mail."""
    config = tmp_path / "config.xml"
    config.write_text(
        render(ConfigXml(database="netmetrix.db", hosts=[Host(name="f4"), Host(name="f5")]))
    )
    rules = [
        AlertRule(metric="cpu_percent", op=">", limit=20.0, email=("ops@example.com",)),
        AlertRule(
            metric="disk_percent",
            op=">=",
            limit=90.0,
            labels=(("mount", "/"),),
            for_count=3,
            severity="critical",
            email=("ops@example.com",),
        ),
    ]
    samples = (
        Sample(metric="cpu_percent", labels=(), value=38.5),
        Sample(metric="disk_percent", labels=(("mount", "/"),), value=91.2),
    )
    with Store.open(f"sqlite:///{tmp_path}/netmetrix.db") as store:
        run = HostRun(host="f4", address="192.0.2.4", ts=T0, ok=True, samples=samples)
        pipeline.record(store, [run], rules, now=T0)
    return config


def test_alerts_active_in_every_format(alerting_db: Path, netmetrix: Cli) -> None:
    table = netmetrix("--config", alerting_db, "alerts", "active")
    assert table.code == 0, table.err
    assert table.out == (
        "host  metric        labels   state    value  rule                           severity"
        "  since                     ts\n"
        "f4    cpu_percent            firing   38.5%  cpu_percent > 20               warning "
        "  2026-09-21T14:13:20.000Z  2026-09-21T14:13:20.000Z\n"
        'f4    disk_percent  mount=/  pending  91.2%  disk_percent{mount="/"} >= 90  critical'
        "  2026-09-21T14:13:20.000Z  2026-09-21T14:13:20.000Z\n"
    )
    rows = json.loads(
        netmetrix("--config", alerting_db, "alerts", "active", "--format", "json").out
    )
    assert rows[1] == {
        "host": "f4",
        "metric": "disk_percent",
        "labels": {"mount": "/"},
        "state": "pending",
        "value": 91.2,
        "rule": 'disk_percent{mount="/"} >= 90',
        "severity": "critical",
        "since": "2026-09-21T14:13:20.000Z",
        "ts": "2026-09-21T14:13:20.000Z",
    }
    csv = netmetrix("--config", alerting_db, "alerts", "active", "--format", "csv")
    assert csv.out.splitlines() == [
        "host,metric,labels,state,value,rule,severity,since,ts",
        "f4,cpu_percent,,firing,38.5,cpu_percent > 20,warning,"
        "2026-09-21T14:13:20.000Z,2026-09-21T14:13:20.000Z",
        'f4,disk_percent,mount=/,pending,91.2,"disk_percent{mount=""/""} >= 90",critical,'
        "2026-09-21T14:13:20.000Z,2026-09-21T14:13:20.000Z",
    ]
    only_f5 = netmetrix("--config", alerting_db, "alerts", "active", "-h", "f5", "--format", "json")
    assert (only_f5.code, only_f5.out) == (0, "[]\n")


def test_alerts_history_and_outbox(alerting_db: Path, netmetrix: Cli) -> None:
    history = netmetrix("--config", alerting_db, "alerts", "history", "--format", "json")
    assert json.loads(history.out) == [
        {
            "ts": "2026-09-21T14:13:20.000Z",
            "event": "firing",
            "host": "f4",
            "metric": "cpu_percent",
            "labels": {},
            "value": 38.5,
            "rule": "cpu_percent > 20",
            "severity": "warning",
            "since": "2026-09-21T14:13:20.000Z",
        }
    ]
    outbox = netmetrix("--config", alerting_db, "alerts", "outbox", "--format", "csv")
    assert outbox.out.splitlines() == [
        "id,created,status,channel,recipient,subject,attempts,last_attempt,last_error,delivered",
        "1,2026-09-21T14:13:20.000Z,pending,email,ops@example.com,ALERT [f4] cpu_percent is"
        " 38.5>20,0,,,",
    ]
    with Store.open(f"sqlite:///{alerting_db.parent}/netmetrix.db") as store:
        assert store.claim_mail([1], "another-collector", now=time.time(), lease=60)
    claimed = netmetrix("--config", alerting_db, "alerts", "outbox", "--format", "json")
    assert [row["status"] for row in json.loads(claimed.out)] == ["sending"]
    table = netmetrix("--config", alerting_db, "alerts", "outbox")
    assert table.out.splitlines()[0].split() == [
        *("id", "created", "status", "channel", "recipient", "subject"),
        *("attempts", "last_attempt", "last_error", "delivered"),
    ]


def test_alerts_commands_when_empty_and_with_bad_arguments(tmp_path: Path, netmetrix: Cli) -> None:
    config = tmp_path / "config.xml"
    config.write_text(render(ConfigXml(hosts=[Host(name="f4")])))
    for command in ("active", "history", "outbox"):
        done = netmetrix("--config", config, "alerts", command, "--format", "json")
        assert (done.code, done.out) == (0, "[]\n"), done.err
        done = netmetrix("--config", config, "alerts", command, "--format", "csv")
        assert done.code == 0
        assert done.out.count("\n") == 1  # the header only
    unknown = netmetrix("--config", config, "alerts", "active", "-h", "f9")
    assert unknown.code == 2
    assert unknown.err.strip() == 'unknown host "f9"; known hosts: f4'
    bad = netmetrix("--config", config, "alerts", "history", "--limit", "0")
    assert bad.code == 2
    assert "Invalid value for '-n' / '--limit'" in bad.err
    for command in ("active", "history", "outbox", "flush", "retry", "drop"):
        helped = netmetrix("--config", config, "alerts", command, "--help")
        assert helped.code == 0
        assert "Examples:" in helped.out


# ---------------------------------------------------------------- delivery faults (#10)


def queued_mail(tmp_path: Path, smtp: SMTP, *recipients: str, mount: str = "/") -> Path:
    """A config.xml with ``smtp`` and a store holding one alert mailed to ``recipients``."""
    config = tmp_path / "config.xml"
    config.write_text(
        render(ConfigXml(database="netmetrix.db", smtp=smtp, hosts=[Host(name="f4")]))
    )
    rule = AlertRule(metric="disk_percent", op=">=", limit=90.0, email=recipients)
    disk = Sample(metric="disk_percent", labels=(("mount", mount),), value=91.2)
    with Store.open(f"sqlite:///{tmp_path}/netmetrix.db") as store:
        run = HostRun(host="f4", address="192.0.2.4", ts=T0, ok=True, samples=(disk,))
        assert pipeline.record(store, [run], [rule], now=T0).queued == len(recipients)
    return config


def outbox_rows(config: Path, netmetrix: Cli, *args: str) -> list[tuple[object, ...]]:
    done = netmetrix("--config", config, "alerts", "outbox", *args, "--format", "json")
    assert done.code == 0, done.err
    return [(r["id"], r["recipient"], r["status"], r["attempts"]) for r in json.loads(done.out)]


def test_a_poisoned_subject_neither_crashes_flush_nor_holds_back_other_mail(
    tmp_path: Path, netmetrix: Cli, smtp: SMTPServer
) -> None:
    config = queued_mail(
        tmp_path, smtp.settings(), "ops@example.com", "dba@example.com", mount="/\r\nBcc: x@evil"
    )
    flushed = netmetrix("--config", config, "alerts", "flush")
    assert flushed.code == 0, flushed.err
    assert flushed.err.endswith("flush: 2 delivered in 2 mail(s)\n")
    assert sorted(m.recipients for m in smtp.messages) == [
        ("dba@example.com",),
        ("ops@example.com",),
    ]
    assert {m.subject for m in smtp.messages} == {
        'ALERT [f4] disk_percent{mount="/ Bcc: x@evil"} is 91.2>=90'
    }
    assert all(m.message["Bcc"] is None for m in smtp.messages)


def test_flush_stops_at_the_delivery_deadline_and_keeps_the_mail(
    tmp_path: Path, netmetrix: Cli
) -> None:
    with DripServer("greeting") as slow:
        settings = SMTP(host="127.0.0.1", port=slow.port, timeout="30s", deadline="1s")
        config = queued_mail(tmp_path, settings, "ops@example.com")
        flushed = netmetrix("--config", config, "alerts", "flush")
    assert flushed.code == 1
    assert (
        f" WARNING SMTP delivery deadline of 1s reached (127.0.0.1:{slow.port}): 1 mail(s) left"
        " in the outbox for the next execute or `netmetrix alerts flush`\n"
    ) in flushed.err
    assert flushed.err.endswith(
        "flush: 0 delivered in 0 mail(s), 1 not tried (the delivery deadline of 1s came first;"
        " kept in the outbox)\n"
    )
    assert outbox_rows(config, netmetrix) == [(1, "ops@example.com", "pending", 0)]


def interrupt(argv: list[str], env: dict[str, str], ready: threading.Event) -> Run:
    """Run ``argv``, send it SIGINT (by PID) once ``ready`` is set; it must end within 60 s."""
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
    )
    try:
        if not ready.wait(timeout=120):
            proc.kill()
            pytest.fail(f"never reached the SMTP server: {proc.communicate()[1]}")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)  # generous: it takes well under a second
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return Run(proc.returncode, out, err)


def test_ctrl_c_while_flush_waits_on_the_server_exits_130_and_releases_the_mail(
    tmp_path: Path, netmetrix: Cli
) -> None:
    exe = str(Path(sys.executable).with_name("netmetrix"))
    with DripServer("data") as slow:  # the mail is claimed and sent; the 250 never comes
        settings = SMTP(host="127.0.0.1", port=slow.port, deadline="10m")
        config = queued_mail(tmp_path, settings, "ops@example.com")
        env = {**os.environ, "NETMETRIX_CONFIG": str(config)}
        done = interrupt([exe, "alerts", "flush"], env, slow.dripping)
    assert done.code == 130, done.err
    assert done.err.endswith("Aborted.\n")
    assert "Traceback" not in done.err
    assert outbox_rows(config, netmetrix) == [(1, "ops@example.com", "pending", 0)]


@pytest.mark.sshd
def test_ctrl_c_while_execute_delivers_to_a_dripping_server_exits_130_at_once(
    fleet: Fleet, netmetrix: Cli
) -> None:
    """The issue's server: one byte every few seconds kept execute alive for 12 minutes."""
    dial_host(fleet, "f4", 0, 38.5)
    exe = str(Path(sys.executable).with_name("netmetrix"))
    with DripServer("greeting", interval=3.0) as slow:
        settings = SMTP(host="127.0.0.1", port=slow.port, deadline="10m")
        fleet.write(smtp=settings, alerts=[LOAD_OVER_20])
        upload(fleet, netmetrix)
        env = {**os.environ, "NETMETRIX_CONFIG": str(fleet.config)}
        done = interrupt([exe, "execute"], env, slow.connected)
    assert done.code == 130, done.err
    assert done.err.endswith("Aborted.\n")
    assert "execute: 1 ok in " in done.err  # the run itself was complete
    assert [(r["status"], r["attempts"]) for r in query(fleet, netmetrix, "outbox")] == [
        ("pending", 0)
    ]
    with Store.open(f"sqlite:///{fleet.database}") as store:
        assert [s.value for s in store.history("f4", "load1")] == [38.5]


@pytest.mark.sshd
def test_a_poisoned_mail_left_in_the_outbox_does_not_break_execute(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    dial_host(fleet, "f4", 0, 38.5)
    configure(fleet, smtp, LOAD_OVER_20)
    upload(fleet, netmetrix)
    rule = AlertRule(metric="disk_percent", op=">", limit=90.0, email=("ops@example.com",))
    disk = Sample(metric="disk_percent", labels=(("mount", "/\r\nBcc: x@evil"),), value=95.0)
    with Store.open(f"sqlite:///{fleet.database}") as store:  # e.g. queued by an older version
        old = HostRun(host="gone", address="192.0.2.9", ts=T0, ok=True, samples=(disk,))
        pipeline.record(store, [old], [rule], now=T0)
    ran = execute(fleet, netmetrix)
    assert sorted(smtp.subjects) == [
        "ALERT [f4] load1 is 38.5>20",
        'ALERT [gone] disk_percent{mount="/ Bcc: x@evil"} is 95>90',
        # "gone" is not in config.xml: its alert ends, and that mail is clean too (#11)
        'RESOLVED [gone] disk_percent{mount="/ Bcc: x@evil"} (host removed)',
    ]
    assert all(m.message["Bcc"] is None for m in smtp.messages)
    assert "Traceback" not in ran.err
    assert query(fleet, netmetrix, "outbox") == []


@pytest.mark.sshd
def test_a_dead_letter_fails_the_run_that_made_it_only_then_can_be_retried(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    refusal = "550 5.1.1 <ops@example.com>: no such user"
    smtp.mailbox.refuse["ops@example.com"] = refusal
    dial_host(fleet, "f4", 0, 38.5)
    configure(fleet, smtp, LOAD_OVER_20)
    upload(fleet, netmetrix)

    ran = execute(fleet, netmetrix, code=1)
    error = f"recipient refused: {refusal}"
    assert (
        f" ERROR Mail `ALERT [f4] load1 is 38.5>20` to `ops@example.com` failed for good: {error}"
        " (attempt 1; a dead letter now, outbox id 1: `netmetrix alerts retry ID` or"
        " `netmetrix alerts drop ID`)\n"
    ) in ran.err
    assert ran.err.endswith(
        "execute: 1 mail(s) to ops@example.com refused for good; dead letters now, not retried:"
        " see `netmetrix alerts outbox --failed`\n"
    )
    ran = execute(fleet, netmetrix)  # reported once: the next run does not count it
    assert "Mail" not in ran.err
    assert [
        (r["status"], r["attempts"], r["last_error"]) for r in query(fleet, netmetrix, "outbox")
    ] == [("failed", 1, error)]
    flushed = netmetrix("--config", fleet.config, "alerts", "flush")
    assert (flushed.code, flushed.err) == (
        0,
        "flush: nothing to send; 1 dead letter(s) kept (`netmetrix alerts outbox --failed`)\n",
    )

    smtp.mailbox.refuse.clear()  # the address was fixed on the server
    retried = netmetrix("--config", fleet.config, "alerts", "retry", "1")
    assert (retried.code, retried.out) == (0, "")
    assert retried.err == "retry: mail 1 pending again; `netmetrix alerts flush` sends it now\n"
    execute(fleet, netmetrix)
    assert smtp.subjects == ["ALERT [f4] load1 is 38.5>20"]
    assert query(fleet, netmetrix, "outbox") == []


def test_alerts_outbox_failed_retry_and_drop(
    tmp_path: Path, netmetrix: Cli, smtp: SMTPServer
) -> None:
    smtp.mailbox.refuse["a@example.com"] = "550 5.1.1 no such user"
    smtp.mailbox.refuse["b@example.com"] = "450 4.2.1 try again later"
    config = queued_mail(
        tmp_path, smtp.settings(), "a@example.com", "b@example.com", "c@example.com"
    )
    flushed = netmetrix("--config", config, "alerts", "flush")
    assert flushed.code == 1
    assert flushed.err.endswith(
        "flush: 1 delivered in 1 mail(s), 1 not delivered (kept in the outbox), 1 refused for"
        " good (dead letters: `netmetrix alerts outbox --failed`)\n"
    )
    assert outbox_rows(config, netmetrix) == [
        (1, "a@example.com", "failed", 1),
        (2, "b@example.com", "pending", 1),
    ]
    assert outbox_rows(config, netmetrix, "--failed") == [(1, "a@example.com", "failed", 1)]
    assert [row[2] for row in outbox_rows(config, netmetrix, "--all")] == [
        "failed",
        "pending",
        "delivered",
    ]
    both = netmetrix("--config", config, "alerts", "outbox", "--all", "--failed")
    assert both.code == 2
    assert "--all and --failed cannot be combined" in both.err

    for verb, consequence in (("retry", "nothing changed"), ("drop", "nothing dropped")):
        unknown = netmetrix("--config", config, "alerts", verb, "1", "3", "99")
        assert (unknown.code, unknown.out) == (2, "")
        assert unknown.err == (
            f"alerts {verb}: no undelivered mail with id 3, 99 in the outbox; {consequence}"
            " (see `netmetrix alerts outbox`)\n"
        )
    assert [row[2] for row in outbox_rows(config, netmetrix)] == ["failed", "pending"]
    retried = netmetrix("--config", config, "alerts", "retry", "1", "2")
    assert retried.err == (
        "retry: mail 1 pending again, mail 2 already pending; `netmetrix alerts flush` sends it"
        " now\n"
    )
    dropped = netmetrix("--config", config, "alerts", "drop", "2", "1")
    assert (dropped.code, dropped.out) == (0, "")
    assert dropped.err == "drop: deleted mail 1, 2 from the outbox\n"
    assert outbox_rows(config, netmetrix) == []
    assert netmetrix("--config", config, "alerts", "drop").code == 2  # IDs are required
    flushed = netmetrix("--config", config, "alerts", "flush")
    assert (flushed.code, flushed.err) == (0, "flush: the outbox is empty\n")
    assert [m.recipients for m in smtp.messages] == [("c@example.com",)]
