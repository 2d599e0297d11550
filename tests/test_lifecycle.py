"""Alerts that follow the config (#11 items 8, 9, 10).

- a rule that matched no series although a host it watches answered is named
  once at the end of ``execute``;
- a firing alert whose rule changed or whose host left config.xml is resolved,
  with a RESOLVED mail saying why, and ``hosts forget`` deletes a host's data;
- a host without a key is "not set up", and ``up`` rules wait until a host has
  answered once, so a fresh (or mistyped) store pages nobody.

End to end with real sshd hosts, the real probe and aiosmtpd (SQLite); the
store's part on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import ports
import pytest
from conftest import Fleet, Run, line_of, rule, sample
from smtpserver import SMTPServer
from sqlalchemy import func, select
from test_alerting import LOAD_OVER_20, UP_IS_0, configure, dial_host, execute, query, upload

from netmetrix import alerts, pipeline
from netmetrix import store as store_module
from netmetrix.configxml import Alert, ConfigXml, Host, render
from netmetrix.model import HostRun, Sample
from netmetrix.pipeline import Forgotten
from netmetrix.store import Store

Cli = Callable[..., Run]
T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z


def runs(ts: float, hosts: dict[str, list[Sample] | None]) -> list[HostRun]:
    """One execute's runs: ``None`` for a host that did not answer."""
    return [
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


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as s:
        yield s


def mails(store: Store) -> list[tuple[str, str]]:
    return [(i.recipient, i.subject) for i in store.outbox(undelivered=False)]


# ---------------------------------------------------------------- 9: rule changed (sshd)


@pytest.mark.sshd
def test_a_limit_changed_while_firing_resolves_as_rule_changed_and_the_new_rule_starts_afresh(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    dial_host(fleet, "f4", 0, 38.5)
    configure(fleet, smtp, replace(LOAD_OVER_20, email=("ops@example.com", "oncall@x.org")))
    upload(fleet, netmetrix)
    execute(fleet, netmetrix)
    assert smtp.subjects == ["ALERT [f4] load1 is 38.5>20"] * 2

    # new limit, and only ops in the new rule: the end of the old alert still goes to both
    configure(fleet, smtp, replace(LOAD_OVER_20, limit=30))
    ran = execute(fleet, netmetrix)
    assert "1 firing alert(s) resolved: their rule or host is no longer in config.xml" in ran.err
    got = sorted((m.recipients, m.subject) for m in smtp.messages[2:])
    assert got == [
        (("oncall@x.org",), "RESOLVED [f4] load1 (rule changed)"),
        (("ops@example.com",), "ALERT [f4] load1 is 38.5>30"),
        (("ops@example.com",), "RESOLVED [f4] load1 (rule changed)"),
    ]
    resolved = next(m for m in smtp.messages if m.subject.endswith("(rule changed)"))
    assert resolved.body.startswith(
        "load1 on f4 is no longer watched: its rule was changed or removed in config.xml.\n"
    )
    assert "\nRule:      load1 > 20\n" in resolved.body
    assert "\nValue:     38.5 at " in resolved.body
    [active] = query(fleet, netmetrix, "active")
    assert (active["rule"], active["state"], active["value"]) == ("load1 > 30", "firing", 38.5)
    history = [(e["event"], e["rule"]) for e in query(fleet, netmetrix, "history")]
    assert history == [
        ("firing", "load1 > 30"),
        ("resolved", "load1 > 20"),
        ("firing", "load1 > 20"),
    ]
    execute(fleet, netmetrix)  # nothing left to resolve: no mail twice
    assert len(smtp.messages) == 5


# ---------------------------------------------------------------- 9: host removed (sshd)


@pytest.mark.sshd
def test_a_host_removed_while_firing_resolves_but_a_host_not_selected_does_not(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    dial_host(fleet, "f4", 0, 38.5)
    dial_host(fleet, "f5", 1, 1.0)
    configure(fleet, smtp, LOAD_OVER_20)
    upload(fleet, netmetrix)
    execute(fleet, netmetrix)
    assert smtp.subjects == ["ALERT [f4] load1 is 38.5>20"]

    only_f5 = netmetrix("--config", fleet.config, "execute", "-h", "f5")
    assert only_f5.code == 0, only_f5.err
    assert smtp.subjects == ["ALERT [f4] load1 is 38.5>20"]  # f4 not run, still configured
    assert [a["host"] for a in query(fleet, netmetrix, "active")] == ["f4"]

    fleet.hosts = [h for h in fleet.hosts if h["name"] != "f4"]
    configure(fleet, smtp, LOAD_OVER_20)
    execute(fleet, netmetrix)
    assert smtp.subjects[1:] == ["RESOLVED [f4] load1 (host removed)"]
    body = smtp.messages[1].body
    assert body.startswith("load1 on f4 is no longer watched: f4 was removed from config.xml.\n")
    assert "Its stored samples stay until `netmetrix hosts forget f4`." in body
    assert query(fleet, netmetrix, "active") == []
    assert query(fleet, netmetrix, "history", "-h", "f4")[0]["event"] == "resolved"

    # its samples stay until forgotten; then nothing of f4 is left but the history
    latest = netmetrix("--config", fleet.config, "metrics", "latest", "-h", "f4", "-m", "up")
    assert latest.code == 0
    assert "f4" in latest.out
    forgot = netmetrix("--config", fleet.config, "hosts", "forget", "f4", "--yes")
    assert forgot.code == 0, forgot.err
    assert forgot.out.startswith("forgot f4: ")
    assert forgot.out.endswith(", 1 key, 0 alerts, host row\n")
    gone = netmetrix("--config", fleet.config, "metrics", "latest", "-h", "f4")
    assert (gone.code, gone.err) == (2, 'unknown host "f4"; known hosts: f5\n')
    with Store.open(f"sqlite:///{fleet.database}") as store:
        assert store.host_names() == {"f5"}
        assert store.host_keys(["f4"]) == {}
        assert [e.kind for e in store.alert_history(["f4"])] == ["resolved", "firing"]


# ---------------------------------------------------------------- 10: not set up (sshd)


@pytest.mark.sshd
def test_execute_before_upload_is_not_set_up_exits_1_and_pages_nobody(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    fleet.host("f4", 0)
    fleet.host("f5", 1)
    configure(fleet, smtp, UP_IS_0)
    ran = execute(fleet, netmetrix, code=1)
    for name in ("f4", "f5"):
        assert (
            f"ERROR [{name}] FAILED: no key stored for this host"
            f" — run netmetrix upload -h {name}\n" in ran.err
        )
    assert "execute: 2 not set up in " in ran.err
    assert ran.err.endswith(
        "execute: not set up (no key stored yet, so never collected): f4, f5"
        " — run `netmetrix upload`\n"
    )
    assert smtp.messages == []
    assert query(fleet, netmetrix, "active") == []
    assert query(fleet, netmetrix, "history") == []
    listed = netmetrix("--config", fleet.config, "hosts", "--format", "json")
    rows = {row["host"]: row for row in json.loads(listed.out)}
    assert rows["f4"]["up"] is None  # no up sample: nothing was tried
    assert rows["f4"]["last_error"] == (
        "not set up: no key stored for this host — run netmetrix upload -h f4"
    )

    assert netmetrix("--config", fleet.config, "upload", "-h", "f4").code == 0
    ran = execute(fleet, netmetrix, code=1)
    assert "execute: 1 ok, 1 not set up in " in ran.err
    assert ran.err.endswith("f5 — run `netmetrix upload -h f5`\n")
    assert smtp.messages == []


@pytest.mark.sshd
def test_up_fires_only_once_the_host_has_answered(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    fleet.host("f4", 0)
    configure(fleet, smtp, UP_IS_0)
    upload(fleet, netmetrix)
    port = fleet.hosts[0]["port"]

    fleet.hosts[0]["port"] = str(ports.free_port())  # down before it ever answered
    configure(fleet, smtp, UP_IS_0)
    ran = execute(fleet, netmetrix, code=1)
    assert "ERROR [f4] FAILED: connection refused" in ran.err
    assert smtp.messages == []
    assert query(fleet, netmetrix, "active") == []
    with Store.open(f"sqlite:///{fleet.database}") as store:
        assert [s.value for s in store.history("f4", "up")] == [0.0]  # stored, not alerted on

    fleet.hosts[0]["port"] = port
    configure(fleet, smtp, UP_IS_0)
    execute(fleet, netmetrix)
    assert smtp.messages == []

    fleet.hosts[0]["port"] = str(ports.free_port())
    configure(fleet, smtp, UP_IS_0)
    ran = execute(fleet, netmetrix, code=1)
    assert "INFO Mail `ALERT [f4] up is 0==0` sent to `dba@example.com`" in ran.err
    assert smtp.subjects == ["ALERT [f4] up is 0==0"]


# ---------------------------------------------------------------- 8: unmatched rules (sshd)

NO_MOUNT = Alert(
    metric="disk_percent",
    labels="mount=/no/such/mount",
    op=">",
    limit=50,
    email="ops@example.com",
)
NO_HOST = Alert(metric="load1", op=">", limit=20, hosts="zz*", email="ops@example.com")
ONLY_F5 = Alert(
    metric="disk_percent", labels="mount=/x", op=">", limit=1, hosts="f5", email="ops@example.com"
)


@pytest.mark.sshd
def test_rules_that_matched_no_series_are_named_in_one_warning(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    dial_host(fleet, "f4", 0, 38.5)
    fleet.host("f5", 1)
    rules = (NO_MOUNT, NO_HOST, ONLY_F5, UP_IS_0, LOAD_OVER_20)
    configure(fleet, smtp, *rules)
    upload(fleet, netmetrix)
    fleet.hosts[1]["port"] = str(ports.free_port())  # f5 fails: its rule could not match
    configure(fleet, smtp, *rules)

    ran = execute(fleet, netmetrix, code=1)
    warnings = [line for line in ran.err.splitlines() if "matched no series" in line]
    assert len(warnings) == 1, ran.err
    assert warnings[0].endswith(
        " WARNING 2 alert rules matched no series this run:"
        f" config line {line_of(fleet.config, 'no/such')}:"
        ' disk_percent{mount="/no/such/mount"} > 50 (no such series on f4);'
        f" config line {line_of(fleet.config, 'zz*')}: load1 > 20 on zz*"
        " (no host in config.xml matches zz*)"
    )
    assert smtp.subjects == ["ALERT [f4] load1 is 38.5>20"]  # the rules that match still work


@pytest.mark.sshd
def test_no_warning_when_every_rule_matched(fleet: Fleet, netmetrix: Cli, smtp: SMTPServer) -> None:
    dial_host(fleet, "f4", 0, 1.0)
    configure(fleet, smtp, LOAD_OVER_20, UP_IS_0)
    upload(fleet, netmetrix)
    assert "matched no series" not in execute(fleet, netmetrix).err


# ---------------------------------------------------------------- 8: unmatched (pure)


def test_unmatched_judges_only_rules_a_host_that_answered_could_have_matched() -> None:
    answered = {"f4": [("load1", ()), ("disk_percent", (("mount", "/"),))]}
    configured = ["f4", "f5", "db1"]
    cases = {
        rule(metric="load1"): None,
        rule(metric="disk_percent", labels=(("mount", "/"),)): None,
        rule(metric="disk_percent", labels=(("mount", "/data"),)): "no such series on f4",
        rule(metric="load1", hosts=("db*",)): None,  # db1 did not answer
        rule(metric="up", op="==", limit=0.0): None,
        rule(metric="up", op="==", limit=0.0, hosts=("web*",)): (
            "no host in config.xml matches web*"
        ),
        rule(metric="load1", hosts=("zz*", "yy*")): "no host in config.xml matches zz*,yy*",
    }
    for case, why in cases.items():
        found = alerts.unmatched([case], configured=configured, answered=answered)
        assert [u.why for u in found] == ([] if why is None else [why]), case
    many = {f"h{i}": [("load1", ())] for i in range(5)}
    [one] = alerts.unmatched([rule()], configured=list(many), answered=many)
    assert one.why == "no such series on h0, h1, h2 and 2 more"
    assert alerts.unmatched([rule()], configured=list(many), answered={}) == []


def test_unmatched_text_names_rules_by_config_line() -> None:
    found = [
        alerts.Unmatched(rule=rule(line=14), why="no such series on f4"),
        alerts.Unmatched(rule=rule(metric="up", op="==", limit=0.0), why="x"),
    ]
    assert alerts.unmatched_text(found) == (
        "2 alert rules matched no series this run:"
        " config line 14: cpu_percent > 20 (no such series on f4); up == 0 (x)"
    )


# ---------------------------------------------------------------- 9: in the store


def test_a_removed_rule_resolves_to_the_firing_recipients_and_a_pending_one_goes_silently(
    store: Store,
) -> None:
    firing = rule(email=("ops@example.com", "oncall@example.com", "gone@example.com"))
    pending = rule(metric="mem_percent", limit=50.0, for_count=3)
    two = [sample("cpu_percent", 38.5), sample("mem_percent", 60.0)]
    pipeline.record(store, runs(T0, {"f4": two}), [firing, pending], now=T0, hosts=["f4"])
    assert {(a.metric, a.state) for a in store.alerts_active()} == {
        ("cpu_percent", "firing"),
        ("mem_percent", "pending"),
    }
    gone = next(i.id for i in store.outbox() if i.recipient == "gone@example.com")
    with store.engine.begin() as conn:  # the server refused it for good: no RESOLVED either
        o = store_module.outbox_table
        conn.execute(o.update().where(o.c.id == gone).values(failed_ms=1))

    done = pipeline.record(store, runs(T0 + 60, {"f4": two}), [], now=T0 + 61, hosts=["f4"])
    assert (done.retired, done.events, done.queued) == (1, 1, 2)
    assert mails(store)[3:] == [
        ("ops@example.com", "RESOLVED [f4] cpu_percent (rule changed)"),
        ("oncall@example.com", "RESOLVED [f4] cpu_percent (rule changed)"),
    ]
    assert store.alerts_active() == []
    [last, *_] = store.alert_history()
    assert (last.kind, last.rule, last.value, last.ts, last.since) == (
        "resolved",
        "cpu_percent > 20",
        38.5,
        T0 + 60,
        T0,
    )
    again = pipeline.record(store, runs(T0 + 120, {"f4": two}), [], now=T0 + 121)
    assert (again.retired, again.queued) == (0, 0)


def test_an_alert_evaluated_after_this_config_was_read_is_a_newer_config_s(
    store: Store,
) -> None:
    """``watch`` still runs the old config.xml while ``execute`` tries a new rule: the
    watch's ticks must not resolve the new rule's alert as "rule changed"."""
    new_rule = rule(email=("ops@example.com",))
    cpu = [sample("cpu_percent", 38.5)]
    pipeline.record(store, runs(T0 + 60, {"f4": cpu}), [new_rule], now=T0 + 60, hosts=["f4"])
    # the watch read its config.xml at T0, before the alert was evaluated at T0 + 60
    old = pipeline.record(
        store, runs(T0 + 70, {"f4": cpu}), [], now=T0 + 70, hosts=["f4"], read_at=T0
    )
    assert (old.retired, old.queued) == (0, 0)
    assert [a.state for a in store.alerts_active()] == ["firing"]
    # a process that read config.xml since (without the rule) resolves it
    later = pipeline.record(
        store, runs(T0 + 90, {"f4": cpu}), [], now=T0 + 90, hosts=["f4"], read_at=T0 + 80
    )
    assert (later.retired, later.queued) == (1, 1)
    assert mails(store)[-1] == ("ops@example.com", "RESOLVED [f4] cpu_percent (rule changed)")


def test_a_removed_host_resolves_by_its_rule_and_only_with_the_config_s_hosts(
    store: Store,
) -> None:
    rules = [rule(), rule(metric="load1", limit=1.0, resolved=False)]
    hot = [sample("cpu_percent", 38.5), sample("load1", 4.0)]
    pipeline.record(store, runs(T0, {"f4": hot, "f5": hot}), rules, now=T0)
    assert len(store.alerts_active()) == 4

    # a run of f5 alone without the config's hosts (None) leaves f4 alone
    pipeline.record(store, runs(T0 + 60, {"f5": hot}), rules, now=T0 + 60)
    assert len(store.alerts_active()) == 4
    done = pipeline.record(store, runs(T0 + 120, {"f5": hot}), rules, now=T0 + 120, hosts=["f5"])
    assert (done.retired, done.events, done.queued) == (2, 2, 1)  # resolved="false": no mail
    assert mails(store)[-1] == ("ops@example.com", "RESOLVED [f4] cpu_percent (host removed)")
    assert {a.host for a in store.alerts_active()} == {"f5"}
    [body] = [i.body for i in store.outbox() if "(host removed)" in i.subject]
    assert "\nAddress:   f4.example\n" in body
    assert "\nResolved:  2026-09-21T14:15:20.000Z (host removed)\n" in body


def test_with_no_host_to_run_config_changes_still_resolve(store: Store) -> None:
    pipeline.record(store, runs(T0, {"f4": [sample("cpu_percent", 38.5)]}), [rule()], now=T0)
    done = pipeline.record(store, [], [], now=T0 + 60, hosts=[])
    assert (done.samples, done.retired, done.queued) == (0, 1, 1)
    assert mails(store)[-1] == ("ops@example.com", "RESOLVED [f4] cpu_percent (host removed)")


def test_up_rules_skip_a_host_that_never_answered(store: Store) -> None:
    up = [rule(metric="up", op="==", limit=0.0)]
    down = pipeline.record(store, runs(T0, {"f4": None}), up, now=T0)
    assert (down.samples, down.events) == (1, 0)  # up = 0 stored, nobody paged
    assert store.alerts_active() == []
    pipeline.record(store, runs(T0 + 60, {"f4": []}), up, now=T0 + 60)
    fired = pipeline.record(store, runs(T0 + 120, {"f4": None}), up, now=T0 + 120)
    assert (fired.events, fired.queued) == (1, 1)
    assert mails(store) == [("ops@example.com", "ALERT [f4] up is 0==0")]


def test_forget_hosts_deletes_everything_of_those_hosts_only(store: Store) -> None:
    rules = [rule(), rule(metric="load1", limit=1.0, for_count=5)]
    hot = [sample("cpu_percent", 38.5), sample("load1", 4.0), sample("disk_percent", 5, mount="/")]
    for ts in (T0, T0 + 60):
        pipeline.record(store, runs(ts, {"f4": hot, "f5": hot}), rules, now=ts)
    for host in ("f4", "f5"):
        store.add_pending_keys([(host, f"kid-{host}", os.urandom(32))])

    done = pipeline.forget(store, ["f4", "nobody"], rules, configured=["f5"], now=T0 + 90)
    assert done == [
        Forgotten(host="f4", series=4, samples=8, keys=1, alerts=2, resolved=1, mails=1, row=True),
        Forgotten(
            host="nobody", series=0, samples=0, keys=0, alerts=0, resolved=0, mails=0, row=False
        ),
    ]
    assert store.host_names() == {"f5"}
    assert store.host_keys(["f4", "f5"]).keys() == {"f5"}
    assert {a.host for a in store.alerts_active()} == {"f5"}
    assert {s.host for s in store.latest()} == {"f5"}
    with store.engine.connect() as conn:
        p, s = store_module.samples_table, store_module.series_table
        left = conn.execute(select(func.count()).select_from(p.join(s, p.c.series_id == s.c.id)))
        assert left.scalar_one() == 8  # f5's
    assert mails(store)[-1] == ("ops@example.com", "RESOLVED [f4] cpu_percent (host removed)")
    assert [e.kind for e in store.alert_history(["f4"])] == ["resolved", "firing"]  # kept

    [reset] = pipeline.forget(store, ["f5"], rules, configured=["f5"], now=T0 + 120)
    assert (reset.resolved, reset.mails) == (1, 1)
    assert mails(store)[-1] == ("ops@example.com", "RESOLVED [f5] cpu_percent (host forgotten)")


# ---------------------------------------------------------------- hosts forget (CLI)


@pytest.fixture
def forget_env(tmp_path: Path, store_url: str) -> Path:
    """config.xml with web1; the store knows web1 and the removed old1, old2."""
    config = tmp_path / "config.xml"
    config.write_text(render(ConfigXml(database=store_url, hosts=[Host(name="web1")])))
    with Store.open(store_url) as store:
        store.record_runs(runs(T0, {h: [sample("load1", 1.0)] for h in ("web1", "old1", "old2")}))
    return config


def test_hosts_forget_by_glob_says_what_it_removed(forget_env: Path, netmetrix: Cli) -> None:
    done = netmetrix("--config", forget_env, "hosts", "forget", "old*", "--yes")
    assert (done.code, done.err) == (0, "")
    assert done.out == (
        "forgot old1: 2 series, 2 samples, 0 keys, 0 alerts, host row\n"
        "forgot old2: 2 series, 2 samples, 0 keys, 0 alerts, host row\n"
    )
    listed = netmetrix("--config", forget_env, "hosts", "--format", "csv")
    assert listed.out.splitlines()[1].startswith("web1,web1,22,")  # the listing is unchanged


def test_hosts_forget_json(forget_env: Path, netmetrix: Cli) -> None:
    done = netmetrix("--config", forget_env, "hosts", "forget", "old1", "--yes", "--format", "json")
    assert done.code == 0, done.err
    assert json.loads(done.out) == [
        {
            "host": "old1",
            "series": 2,
            "samples": 2,
            "keys": 0,
            "alerts": 0,
            "resolved": 0,
            "mails": 0,
        }
    ]


def test_hosts_forget_refuses_a_configured_host_unless_forced(
    forget_env: Path, netmetrix: Cli
) -> None:
    refused = netmetrix("--config", forget_env, "hosts", "forget", "web1", "old1", "--yes")
    assert (refused.code, refused.out) == (2, "")
    assert refused.err == (
        "hosts forget: web1 still in config.xml: remove it there first, or add --force to"
        " reset (then run `netmetrix upload` for them)\n"
    )
    forced = netmetrix("--config", forget_env, "hosts", "forget", "web1", "--yes", "--force")
    assert forced.code == 0, forced.err
    assert forced.out == "forgot web1: 2 series, 2 samples, 0 keys, 0 alerts, host row\n"


def test_hosts_forget_asks_and_needs_yes_without_a_terminal(
    forget_env: Path, netmetrix: Cli
) -> None:
    unknown = netmetrix("--config", forget_env, "hosts", "forget", "web9", "--yes")
    assert (unknown.code, unknown.err) == (2, 'unknown host "web9", did you mean "web1"?\n')
    piped = netmetrix("--config", forget_env, "hosts", "forget", "old1")
    assert (piped.code, piped.err) == (
        2,
        "hosts forget: stdin is not a terminal to ask on: add --yes to forget without asking\n",
    )
    misplaced = netmetrix("--config", forget_env, "hosts", "-h", "old1", "forget", "old1")
    assert misplaced.code == 2
    assert "-h and --format go after the command" in misplaced.err


@pytest.mark.parametrize(("answer", "code", "left"), [("n", 1, {"old1"}), ("y", 0, set())])
def test_hosts_forget_on_a_terminal_asks_first(
    forget_env: Path, store_url: str, answer: str, code: int, left: set[str]
) -> None:
    """A real pseudo-terminal on stdin, the answer typed into it."""
    exe = Path(sys.executable).with_name("netmetrix")
    leader, follower = os.openpty()
    try:
        os.write(leader, f"{answer}\n".encode())  # the terminal keeps it until read
        done = subprocess.run(
            [str(exe), "--config", str(forget_env), "hosts", "forget", "old1"],
            stdin=follower,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == code, done.stderr
    assert done.stderr.startswith(
        "Forget 1 host (old1): every sample, key and alert state stored for them? [y/N]:"
    )
    with Store.open(store_url) as store:
        assert store.host_names() & {"old1"} == left
