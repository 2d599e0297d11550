"""``collect.run_upload`` and ``collect.run_execute``: the jobs the CLI and the demo run,
and the reports they return (real sshd, the real probe, a real SMTP server)."""

from __future__ import annotations

import re

import pytest
from conftest import Fleet
from smtpserver import SMTPServer

from netmetrix import collect
from netmetrix.config import load_config
from netmetrix.configxml import Alert
from netmetrix.errors import Outcome
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
    message = first.results[0].value
    assert message is not None
    assert first.recorded.samples == len(message.samples) + 1  # and `up`
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
