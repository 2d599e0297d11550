"""Custom checks (#17): Nagios plugins configured on the collector, run by the probe on
real sshd hosts, sealed with the built-in metrics, stored with their text."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import psutil
import pytest
from conftest import Fleet, Run
from smtpserver import SMTPServer

from netmetrix import checks, probe
from netmetrix.config import load_config
from netmetrix.errors import ConfigError
from netmetrix.model import HostRun
from netmetrix.store import Store

Cli = Callable[..., Run]
PLUGINS = Path("/usr/lib/nagios/plugins")


def plugin(fleet: Fleet, name: str, body: str) -> str:
    """An executable plugin-like script (POSIX sh) written by the test; its path."""
    path = fleet.root / "plugins" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def with_checks(fleet: Fleet, *entries: str, alerts: str = "", smtp: Any = None) -> None:
    """Write config.xml with ``<checks>`` holding ``entries`` (and ``alerts`` after it)."""
    fleet.write(smtp=smtp)
    block = "  <checks>\n" + "".join(f"    {e}\n" for e in entries) + "  </checks>\n" + alerts
    text = fleet.config.read_text().replace("</netmetrix>", block + "</netmetrix>")
    fleet.config.write_text(text)


def check(name: str, command: str, **attrs: str) -> str:
    more = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    return f"<check name={quoteattr(name)} command={quoteattr(command)}{more}/>"


def store_of(fleet: Fleet) -> Store:
    return Store.open(f"sqlite:///{fleet.database}")


def latest(fleet: Fleet, host: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with store_of(fleet) as store:
        rows = store.latest(hosts=[host])
    return {(r.metric, tuple(sorted(r.labels.items()))): r.value for r in rows}


def checks_of(fleet: Fleet) -> dict[tuple[str, str], tuple[int, str]]:
    with store_of(fleet) as store:
        return {(r.host, r.name): (r.status, r.text) for r in store.checks()}


def test_states_match_the_probe() -> None:
    assert checks.STATES == probe.CHECK_STATES
    assert checks.CHECKS_VERSION == probe.CHECKS_VERSION


# ---------------------------------------------------------------- config.xml


def config_with(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.xml"
    path.write_text(
        '<netmetrix>\n  <hosts><host name="web1"/><host name="db1"/></hosts>\n'
        f"  <checks>\n{body}\n  </checks>\n</netmetrix>\n"
    )
    return path


def test_checks_config_splits_commands_with_shlex(tmp_path: Path) -> None:
    config = load_config(
        config_with(
            tmp_path,
            '<check name="disk" command="/usr/lib/nagios/plugins/check_disk -w 10% -p \'/my dir\'"'
            ' timeout="5s" every="5m" hosts="web*"/>\n<check name="load" command="check_load"/>',
        )
    )
    disk, load = config.checks.checks
    assert disk.argv == ("/usr/lib/nagios/plugins/check_disk", "-w", "10%", "-p", "/my dir")
    assert (disk.timeout, disk.every, disk.hosts, disk.line) == (5.0, 300.0, ("web*",), 4)
    assert (load.timeout, load.every, load.hosts) == (10.0, 0.0, ())
    assert [c["name"] for c in checks.plan_for(config.checks, "web1")["checks"]] == ["disk", "load"]
    assert [c["name"] for c in checks.plan_for(config.checks, "db1")["checks"]] == ["load"]


def test_a_check_s_hosts_take_groups_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "config.xml"
    path.write_text(
        "<netmetrix>\n  <hosts>\n"
        '    <host name="web1" labels="role=web"/><host name="web2" labels="role=web"/>\n'
        '    <host name="db1" labels="role=db,dc=fra"/>\n'
        '    <group name="front" hosts="web1"/>\n'
        "  </hosts>\n  <checks>\n"
        '    <check name="nginx" command="check_procs" hosts="@front"/>\n'
        '    <check name="pg" command="check_pg" hosts="role=db"/>\n'
        '    <check name="ntp" command="check_ntp" hosts="dc!=fra"/>\n'
        '    <textfile dir="/var/lib/tf" hosts="@front,db1"/>\n'
        "  </checks>\n</netmetrix>\n"
    )
    config = load_config(path)

    def planned(host: str) -> tuple[list[str], list[str]]:
        plan = checks.plan_for(config.checks, host)
        return [c["name"] for c in plan["checks"]], [t["dir"] for t in plan["textfiles"]]

    assert planned("web1") == (["nginx", "ntp"], ["/var/lib/tf"])
    assert planned("web2") == (["ntp"], [])
    assert planned("db1") == (["pg"], ["/var/lib/tf"])


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('<check command="x"/>', '<check>: missing required attribute "name"'),
        ('<check name="a b" command="x"/>', "<check>: name must be a name of letters"),
        ('<check name="a" command="\'x"/>', "<check>: command: cannot be split into words"),
        ('<check name="a" command="  "/>', "<check>: command must be a command line"),
        ('<check name="a" command="x" timeout="soon"/>', "<check>: timeout must be a duration"),
        ('<check name="a" command="x" hosts="web2"/>', 'hosts: unknown host "web2", did you mean'),
        ('<check name="a" command="x" hosts="@dbs"/>', 'hosts: unknown group "dbs"'),
        ('<check name="a" command="x" comand="y"/>', 'did you mean "command"?'),
        ('<check name="a" command="x"/><check name="a" command="y"/>', 'duplicate check name "a"'),
    ],
)
def test_bad_checks_config_names_file_line_and_field(
    tmp_path: Path, body: str, problem: str
) -> None:
    path = config_with(tmp_path, body)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    [message] = raised.value.problems
    assert message.startswith(f"{path}:4: ")
    assert problem in message


# ---------------------------------------------------------------- run_check (the probe's part)


def test_a_plugin_that_forks_a_daemon_leaves_nothing_behind(tmp_path: Path) -> None:
    marker = secrets.token_hex(8)
    script = tmp_path / "daemon"
    script.write_text(f"#!/bin/sh\n(exec -a nmx{marker} sleep 300) &\necho 'OK forked'\n")
    script.chmod(0o755)
    result = probe.run_check([str(script)], 30.0)
    assert (result["status"], result["output"], result["reason"]) == (0, "OK forked\n", "")
    left = [
        p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])
    ]
    assert left == []
    assert result["duration"] < 25  # it did not wait for the daemon holding stdout


def test_a_check_ends_before_the_probe_s_deadline_whatever_its_timeout() -> None:
    hang = {"name": "hang", "argv": ["/bin/sleep", "300"], "timeout": 60, "every": 0}
    began = time.monotonic()
    samples, reports, _ = probe.run_plan(
        {"v": 1, "host": "h", "checks": [hang]}, None, time.time(), 2.5
    )
    assert time.monotonic() - began < 30  # not its own 60 s
    # cut to what is left of the 2.5 s deadline less the margin kept to answer
    match = re.fullmatch(r"UNKNOWN: timed out after ([0-9.]+)s", reports[0]["text"])
    assert match is not None, reports
    assert 0 < float(match.group(1)) <= 2.5 - probe.CHECK_MARGIN
    assert samples[0] == ["check_status", {"check": "hang"}, 3.0]


def test_a_hanging_plugin_is_killed_at_its_timeout(tmp_path: Path) -> None:
    result = probe.run_check(["/bin/sleep", "300"], 0.5)
    assert (result["status"], result["reason"]) == (3, "timed out after 0.5s")
    assert result["duration"] >= 0.5


def test_a_flood_is_cut_at_the_cap() -> None:
    result = probe.run_check(["/usr/bin/yes", "CRITICAL flood"], 30.0)
    assert result["status"] == 3
    assert result["reason"] == f"output over {probe.MAX_CHECK_OUTPUT} bytes; cut"
    assert len(result["output"]) <= probe.MAX_CHECK_OUTPUT


def test_split_output_takes_the_first_line_and_all_perfdata() -> None:
    output = "DISK OK - free | '/'=1MB;2;3\nlong text\nmore | time=1ms\n"
    assert probe.split_output(output) == ("DISK OK - free", "'/'=1MB;2;3 time=1ms")
    assert probe.split_output("") == ("", "")


def test_the_probe_refuses_a_checks_file_another_key_signed(tmp_path: Path) -> None:
    key, other = os.urandom(32), os.urandom(32)
    path = tmp_path / "client.py.abc.checks"
    plan = {"v": 1, "host": "h", "checks": [{"name": "x", "argv": ["/bin/true"], "timeout": 1}]}
    path.write_bytes(probe.checks_file_text(other, plan))
    path.chmod(0o600)
    with pytest.raises(ValueError, match="MAC does not verify"):
        probe.read_checks(str(path), "h", key)
    path.write_bytes(probe.checks_file_text(key, plan))
    assert probe.read_checks(str(path), "h", key) == plan
    with pytest.raises(ValueError, match="not a checks file for host 'g'"):
        probe.read_checks(str(path), "g", key)
    path.chmod(0o622)
    with pytest.raises(probe.UnsafeFile, match="writable by group/others"):
        probe.read_checks(str(path), "h", key)


# ---------------------------------------------------------------- end to end on real sshd


@pytest.mark.sshd
def test_plugin_checks_end_to_end(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("web1", 0, directory=str(fleet.root / "remote" / "web1"))
    fleet.settings["command_timeout"] = "20"
    ok = plugin(
        fleet,
        "ok",
        "echo \"DISK OK - free space: / 3326 MB (56%); | '/'=2643MB;5948;6292;0;6620 'x y'=12ms\"",
    )
    warn = plugin(fleet, "warn", 'echo "LOAD WARNING - load average: 5.1|load1=5.1;5;10;0"; exit 1')
    crit = plugin(
        fleet, "crit", "echo \"PROCS CRITICAL: 0 processes with command name 'nginx'\"; exit 2"
    )
    unknown = plugin(fleet, "unknown", 'echo "UNKNOWN - cannot stat"; exit 3')
    odd = plugin(fleet, "odd", 'echo "weird"; exit 7')
    hang = plugin(fleet, "hang", "exec sleep 300")
    flood = plugin(fleet, "flood", 'exec yes "spam spam spam"')
    garbage = plugin(fleet, "garbage", "echo 'OK | a=1zz b=2 =3 c=4KB'")
    with_checks(
        fleet,
        check("disk", ok),
        check("load", warn),
        check("nginx", crit),
        check("unknown", unknown),
        check("odd", odd),
        check("hang", hang, timeout="1s"),
        check("flood", flood),
        check("garbage", garbage),
        check("missing", str(fleet.root / "plugins" / "nowhere") + " -w 1"),
        check("elsewhere", ok, hosts="db*"),
    )
    assert netmetrix("--config", fleet.config, "upload").code == 0
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 0, ran.err  # WARNING/CRITICAL/UNKNOWN checks are for alerts, not exit codes
    assert "[web1] probe could not read check garbage: perfdata 'a': unknown unit 'zz'" in ran.err
    assert "check garbage: perfdata '': empty label" in ran.err

    found = checks_of(fleet)
    missing = fleet.root / "plugins" / "nowhere"
    assert found == {
        ("web1", "disk"): (0, "DISK OK - free space: / 3326 MB (56%);"),
        ("web1", "load"): (1, "LOAD WARNING - load average: 5.1"),
        ("web1", "nginx"): (2, "PROCS CRITICAL: 0 processes with command name 'nginx'"),
        ("web1", "unknown"): (3, "UNKNOWN - cannot stat"),
        ("web1", "odd"): (3, "UNKNOWN: exit status 7 (weird)"),
        ("web1", "hang"): (3, "UNKNOWN: timed out after 1s"),
        ("web1", "flood"): (
            3,
            f"UNKNOWN: output over {probe.MAX_CHECK_OUTPUT} bytes; cut (spam spam spam)",
        ),
        ("web1", "garbage"): (0, "OK"),
        ("web1", "missing"): (3, f"UNKNOWN: cannot run {missing}: No such file or directory"),
    }
    values = latest(fleet, "web1")
    assert values[("check_status", (("check", "nginx"),))] == 2.0
    assert values[("check_status", (("check", "hang"),))] == 3.0
    assert 1.0 <= values[("check_duration_seconds", (("check", "hang"),))] < 15
    disk = (("check", "disk"), ("label", "/"), ("unit", "B"))
    assert values[("check_perf", disk)] == 2643 * 1024**2
    edged = (("check", "disk"), ("edge", "high"), ("label", "/"), ("unit", "B"))
    assert values[("check_perf_warn", edged)] == 5948 * 1024**2
    assert values[("check_perf_crit", edged)] == 6292 * 1024**2
    lows = [
        labels
        for metric, labels in values
        if metric == "check_perf_warn" and ("edge", "low") in labels
    ]
    assert lows == []  # "5948" is 0..5948: no low edge anyone wrote
    assert values[("check_perf", (("check", "disk"), ("label", "x y"), ("unit", "s")))] == 0.012
    assert values[("check_perf", (("check", "garbage"), ("label", "c"), ("unit", "B")))] == 4096
    assert values[("cpu_percent", ())] >= 0  # the built-in metrics arrive as before


@pytest.mark.sshd
def test_a_host_runs_only_what_the_collector_signed(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("web1", 0)
    marker = fleet.root / "planted-ran"
    with_checks(fleet, check("load", plugin(fleet, "ok", 'echo "OK"')))
    assert netmetrix("--config", fleet.config, "upload").code == 0
    with store_of(fleet) as store:
        collector = store.collector_id()
    path = Path(probe.checks_path(str(fleet.remote_dir("web1") / "client.py"), collector))
    body, mac = path.read_text().splitlines()
    plan = json.loads(body)
    plan["checks"].append({"name": "planted", "argv": ["/bin/touch", str(marker)], "timeout": 5})
    path.write_text(json.dumps(plan, sort_keys=True, separators=(",", ":")) + "\n" + mac + "\n")

    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 0, ran.err
    assert not marker.exists()
    assert f"[web1] probe could not read checks file {path} refused: its MAC does not verify" in (
        ran.err
    )
    assert checks_of(fleet) == {}


@pytest.mark.sshd
def test_every_reports_the_cached_result_between_runs(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("web1", 0)
    counter = fleet.root / "runs"
    slow = plugin(fleet, "slow", f'echo x >> {shlex.quote(str(counter))}; echo "OK ran"')
    fast = plugin(fleet, "fast", f'echo y >> {shlex.quote(str(counter))}.fast; echo "OK fast"')
    with_checks(fleet, check("slow", slow, every="1h"), check("fast", fast))
    assert netmetrix("--config", fleet.config, "upload").code == 0
    for _ in range(3):
        assert netmetrix("--config", fleet.config, "execute").code == 0
    assert counter.read_text() == "x\n"
    assert Path(f"{counter}.fast").read_text() == "y\ny\ny\n"
    assert checks_of(fleet)[("web1", "slow")] == (0, "OK ran")


def test_a_daemon_that_leaves_the_plugin_s_session_is_killed_too(
    fleet: Fleet, netmetrix: Cli
) -> None:
    """setsid puts the daemon in a session of its own: killing the plugin's process group
    misses it; the probe, its subreaper, kills it once the checks are done."""
    marker = f"3000.{secrets.randbelow(10**9):09d}"  # sleep's argument names the daemon
    detach = f"setsid sh -c 'sleep {marker} </dev/null >/dev/null 2>&1 &'"
    fleet.host("web1", 0)
    with_checks(fleet, check("detach", plugin(fleet, "detach", f'{detach}; echo "OK detached"')))
    assert netmetrix("--config", fleet.config, "upload").code == 0
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 0, ran.err
    assert checks_of(fleet)[("web1", "detach")] == (0, "OK detached")
    left = [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]
    for process in left:  # the test's own clean-up: only what this test started
        process.kill()
    assert left == []


@pytest.mark.sshd
def test_checks_run_as_the_login_user(
    fleet: Fleet, netmetrix: Cli, test_user: object, user_dir: Path
) -> None:
    fleet.host(
        "web1", 0, user="nmx-test", directory=str(user_dir / "probe"), python="/usr/bin/python3"
    )
    whoami = user_dir / "whoami"  # where the login user can reach it
    whoami.write_text('#!/bin/sh\necho "OK $(id -un)"\n')
    whoami.chmod(0o755)
    with_checks(fleet, check("who", str(whoami)))
    assert netmetrix("--config", fleet.config, "upload").code == 0
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 0, ran.err
    assert checks_of(fleet) == {("web1", "who"): (0, "OK nmx-test")}


@pytest.mark.sshd
@pytest.mark.skipif(not (PLUGINS / "check_procs").exists(), reason="monitoring-plugins-basic")
def test_the_real_monitoring_plugins(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("web1", 0)
    with_checks(
        fleet,
        check("disk", f"{PLUGINS}/check_disk -w 1% -c 0% -p /"),
        check("load", f"{PLUGINS}/check_load -w 1000,1000,1000 -c 2000,2000,2000"),
        check("nginx", f"{PLUGINS}/check_procs -C nmx-no-such-daemon -c 1:"),
    )
    assert netmetrix("--config", fleet.config, "upload").code == 0
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 0, ran.err
    found = checks_of(fleet)
    assert found[("web1", "disk")][0] == 0
    assert found[("web1", "disk")][1].startswith("DISK OK")
    assert found[("web1", "load")][0] == 0
    assert "load average" in found[("web1", "load")][1].lower()
    assert found[("web1", "nginx")] == (
        2,
        "PROCS CRITICAL: 0 processes with command name 'nmx-no-such-daemon'",
    )
    values = latest(fleet, "web1")
    assert values[("check_perf", (("check", "disk"), ("label", "/"), ("unit", "B")))] > 0
    assert ("check_perf", (("check", "load"), ("label", "load1"), ("unit", ""))) in values


# ---------------------------------------------------------------- netmetrix checks


T0 = 1795557294.757  # 2026-11-24T21:54:54.757Z


def stored_fleet(tmp_path: Path, store_url: str) -> Path:
    """A config.xml over ``store_url`` with web1 and db1, and two runs of checks stored."""
    config = tmp_path / "config.xml"
    config.write_text(
        f"<netmetrix>\n  <database>{store_url}</database>\n"
        '  <hosts><host name="web1"/><host name="db1"/></hosts>\n</netmetrix>\n'
    )
    nginx = "PROCS CRITICAL: 0 processes with command name 'nginx'"
    with Store.open(store_url) as store:
        store.record_runs(
            [
                HostRun(
                    host="web1",
                    address="web1",
                    ts=T0 - 60,
                    ok=True,
                    checks=(
                        ("nginx", 2, nginx, T0 - 61, 0.25),
                        ("disk", 0, "DISK OK", T0 - 61, 0.5),
                    ),
                ),
                HostRun(
                    host="db1",
                    address="db1",
                    ts=T0 - 60,
                    ok=True,
                    checks=(("disk", 1, "DISK WARNING - 9% free", T0 - 61, 0.125),),
                ),
            ]
        )
        store.record_runs(
            [
                HostRun(
                    host="web1",
                    address="web1",
                    ts=T0,
                    ok=True,
                    checks=(
                        ("nginx", 2, nginx, T0 - 1, 0.25),
                        ("disk", 1, "DISK WARNING", T0 - 1, 0.5),
                    ),
                ),
                HostRun(host="db1", address="db1", ts=T0, ok=False, error="timeout"),
            ]
        )
    return config


def test_checks_lists_each_host_s_checks_with_since(
    tmp_path: Path, store_url: str, netmetrix: Cli
) -> None:
    config = stored_fleet(tmp_path, store_url)
    ran = netmetrix("--config", config, "checks", "--format", "json")
    assert ran.code == 0, ran.err
    assert json.loads(ran.out) == [
        {
            "host": "db1",  # its failed run keeps what it last reported
            "check": "disk",
            "status": "WARNING",
            "since": "2026-11-24T21:53:54.757Z",
            "duration": 0.125,
            "last_run": "2026-11-24T21:53:53.757Z",
            "text": "DISK WARNING - 9% free",
        },
        {
            "host": "web1",
            "check": "disk",
            "status": "WARNING",  # changed: since is this run
            "since": "2026-11-24T21:54:54.757Z",
            "duration": 0.5,
            "last_run": "2026-11-24T21:54:53.757Z",
            "text": "DISK WARNING",
        },
        {
            "host": "web1",
            "check": "nginx",
            "status": "CRITICAL",  # unchanged: since is the first run in it
            "since": "2026-11-24T21:53:54.757Z",
            "duration": 0.25,
            "last_run": "2026-11-24T21:54:53.757Z",
            "text": "PROCS CRITICAL: 0 processes with command name 'nginx'",
        },
    ]
    table = netmetrix("--config", config, "checks", "-h", "web*")
    assert table.code == 0, table.err
    assert table.out.splitlines() == [
        "host  check  status    since                     duration  last_run                  text",
        "web1  disk   WARNING   2026-11-24T21:54:54.757Z  0.5       2026-11-24T21:54:53.757Z"
        "  DISK WARNING",
        "web1  nginx  CRITICAL  2026-11-24T21:53:54.757Z  0.25      2026-11-24T21:54:53.757Z"
        "  PROCS CRITICAL: 0 processes with command name 'nginx'",
    ]
    csv_out = netmetrix("--config", config, "checks", "-h", "db1", "--format", "csv")
    assert csv_out.out.splitlines() == [
        "host,check,status,since,duration,last_run,text",
        "db1,disk,WARNING,2026-11-24T21:53:54.757Z,0.125,2026-11-24T21:53:53.757Z,"
        "DISK WARNING - 9% free",
    ]


def test_a_check_taken_out_of_the_config_leaves_the_listing(
    tmp_path: Path, store_url: str, netmetrix: Cli
) -> None:
    config = stored_fleet(tmp_path, store_url)
    with Store.open(store_url) as store:
        store.record_runs([HostRun(host="web1", address="web1", ts=T0 + 60, ok=True)])
    ran = netmetrix("--config", config, "checks", "--format", "json")
    assert [(r["host"], r["check"]) for r in json.loads(ran.out)] == [("db1", "disk")]


# ---------------------------------------------------------------- alerts on checks


@pytest.mark.sshd
def test_an_alert_on_a_check_mails_its_state_and_text(
    fleet: Fleet, netmetrix: Cli, smtp: SMTPServer
) -> None:
    fleet.host("web1", 0)
    state = fleet.root / "nginx-state"
    state.write_text("2\n")
    nginx = plugin(
        fleet,
        "check_nginx",
        f"s=$(cat {shlex.quote(str(state))})\n"
        'if [ "$s" = 2 ]; then\n'
        "  echo \"PROCS CRITICAL: 0 processes with command name 'nginx'\"; exit 2\n"
        "fi\n"
        "echo \"PROCS OK: 1 process with command name 'nginx'\"; exit 0",
    )
    disk = plugin(fleet, "check_disk", 'echo "DISK WARNING - free space: / 9%"; exit 1')
    with_checks(
        fleet,
        check("nginx", nginx),
        check("disk", disk),
        smtp=smtp.settings(),
        alerts="  <alerts>\n"
        '    <alert check="nginx" email="ops@example.com"/>\n'
        '    <alert metric="check_status" labels="check=disk" op="&gt;=" limit="2"'
        ' email="ops@example.com"/>\n'
        "  </alerts>\n",
    )
    assert netmetrix("--config", fleet.config, "upload").code == 0
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 0, ran.err
    # disk is only WARNING (1), below its rule's limit of 2: no mail for it
    assert smtp.subjects == [
        "ALERT [web1] check nginx is CRITICAL: PROCS CRITICAL: 0 processes with command name"
        " 'nginx'"
    ]
    assert "The check's output: PROCS CRITICAL: 0 processes" in smtp.messages[0].body
    state.write_text("0\n")
    assert netmetrix("--config", fleet.config, "execute").code == 0
    assert smtp.subjects[1:] == [
        "RESOLVED [web1] check nginx is OK: PROCS OK: 1 process with command name 'nginx'"
    ]


def test_an_alert_on_an_unknown_check_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.xml"
    path.write_text(
        '<netmetrix>\n  <hosts><host name="web1"/></hosts>\n'
        '  <checks><check name="nginx" command="/bin/true"/></checks>\n'
        "  <alerts>\n"
        '    <alert check="ngnix" email="ops@example.com"/>\n'
        '    <alert metric="check_perf" labels="check=disk,lable=/" op="&gt;" limit="1"'
        ' email="ops@example.com"/>\n'
        "  </alerts>\n</netmetrix>\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert list(raised.value.problems) == [
        f'{path}:5: <alert metric="check_status">: check: unknown check "ngnix",'
        ' did you mean "nginx"?',
        f'{path}:6: <alert metric="check_perf">: labels: check_perf has no label "lable",'
        ' did you mean "label"?',
        f'{path}:6: <alert metric="check_perf">: check: unknown check "disk";'
        " no <check> has that name",
    ]


def test_the_check_shortcut_is_status_at_least_warning(tmp_path: Path) -> None:
    path = tmp_path / "config.xml"
    path.write_text(
        '<netmetrix>\n  <hosts><host name="web1"/></hosts>\n'
        '  <checks><check name="nginx" command="/bin/true"/></checks>\n'
        '  <alerts><alert check="nginx" email="ops@example.com" severity="critical"/></alerts>\n'
        "</netmetrix>\n"
    )
    [rule] = load_config(path).alerts.rules
    assert (rule.metric, rule.labels, rule.op, rule.limit) == (
        "check_status",
        (("check", "nginx"),),
        ">=",
        1.0,
    )


# ---------------------------------------------------------------- dashboard


def test_the_host_page_shows_its_checks_escaped(
    fleet: Fleet, serve: Callable[..., Any], netmetrix: Cli
) -> None:
    fleet.host("web1", 0)
    fleet.host("db1", 0)
    with store_of(fleet) as store:
        store.record_runs(
            [
                HostRun(
                    host="web1",
                    address="127.0.0.1",
                    ts=T0,
                    ok=True,
                    checks=(("nginx", 2, "PROCS CRITICAL: <script>alert(1)</script>", T0, 0.25),),
                )
            ]
        )
    served = serve()
    status, page, _ = served.get("/hosts/web1")
    assert status == 200
    assert "<h2>Checks</h2>" in page
    assert '<tr class="CRITICAL">' in page
    assert "PROCS CRITICAL: &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    status, other, _ = served.get("/hosts/db1")
    assert status == 200
    assert "<h2>Checks</h2>" not in other  # no checks: no section


def test_the_overview_shows_each_host_s_failing_checks_worst_first(
    fleet: Fleet, serve: Callable[..., Any]
) -> None:
    fleet.host("web1", 0)
    fleet.host("db1", 0)
    checks = (
        ("disk", 1, "DISK WARNING", T0, 0.1),
        ("load", 0, "OK - load average: 0.1", T0, 0.1),
        ("nginx", 2, "PROCS CRITICAL: <b>0</b>", T0, 0.1),
        ("ntp", 0, "NTP OK", T0, 0.1),
    )
    with store_of(fleet) as store:
        store.record_runs(
            [
                HostRun(host="web1", address="127.0.0.1", ts=T0, ok=True, checks=checks),
                HostRun(host="db1", address="127.0.0.1", ts=T0, ok=True),
            ]
        )
    status, page, _ = serve().get("/")
    assert status == 200
    web1 = page[page.index('data-name="web1"') : page.index('data-name="db1"')]
    assert 'data-checks="2"' in web1
    assert "nginx CRITICAL, disk WARNING" in web1
    assert "2 OK" in web1
    db1 = page[page.index('data-name="db1"') :]
    assert 'data-checks="0"' in db1
    assert "failing-checks" not in db1.split("</tr>")[0]


@pytest.mark.sshd
def test_checks_arrive_from_worker_processes_and_show_in_metrics_latest(
    fleet: Fleet, netmetrix: Cli
) -> None:
    fleet.host("web1", 0)
    fleet.host("web2", 1)
    load = plugin(fleet, "load", 'echo "LOAD OK | load1=0.5;5;10;0 age=1500ms"')
    with_checks(fleet, check("load", load))
    assert netmetrix("--config", fleet.config, "upload").code == 0
    ran = netmetrix("--config", fleet.config, "execute", "--workers", "2")
    assert ran.code == 0, ran.err
    assert checks_of(fleet) == {("web1", "load"): (0, "LOAD OK"), ("web2", "load"): (0, "LOAD OK")}
    shown = netmetrix(
        "--config", fleet.config, "metrics", "latest", "-h", "web1", "--format", "json"
    )
    assert shown.code == 0, shown.err
    found = {(r["metric"], r["labels"].get("label")): r["value"] for r in json.loads(shown.out)}
    assert found[("check_status", None)] == 0
    assert found[("check_perf", "age")] == 1.5
    assert found[("check_perf_crit", "load1")] == 10


@pytest.mark.sshd
def test_watch_runs_the_checks_on_every_tick(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("web1", 0)
    counter = fleet.root / "ticks"
    ticking = plugin(
        fleet, "tick", f'echo x >> {shlex.quote(str(counter))}; echo "OK tick | n=1c"; exit 1'
    )
    with_checks(fleet, check("tick", ticking))
    assert netmetrix("--config", fleet.config, "upload").code == 0
    ran = netmetrix("--config", fleet.config, "watch", "--interval", "1s", "--ticks", "3")
    assert ran.code == 0, ran.err
    assert checks_of(fleet) == {("web1", "tick"): (1, "OK tick")}
    assert counter.read_text().count("x") >= 2  # once per answered tick
    values = latest(fleet, "web1")
    assert values[("check_perf", (("check", "tick"), ("label", "n"), ("unit", "c")))] == 1
