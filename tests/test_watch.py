"""netmetrix watch against real sshd servers on 127.0.0.1: ticks, sessions, failures (#13).

Intervals are short real ones (1-2 s) because a real sshd is involved; every
wait is bounded and generous, and assertions count ticks, not seconds.
"""

from __future__ import annotations

import re
import shutil
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import smtpserver
import sshd
from conftest import Background, Fleet, Run
from test_identity import OLD_PROBE

from netmetrix.configxml import SMTP, Alert
from netmetrix.store import Store

pytestmark = pytest.mark.sshd
Cli = Callable[..., Run]


def up_values(fleet: Fleet, host: str) -> list[float]:
    """Host ``host``'s `up` samples, oldest first."""
    with sqlite3.connect(fleet.database) as db:
        rows = db.execute(
            "SELECT s.value FROM samples s JOIN series r ON r.id = s.series_id"
            " WHERE r.host = ? AND r.metric = 'up' ORDER BY s.ts_ms",
            (host,),
        ).fetchall()
    return [value for (value,) in rows]


def sample_count(fleet: Fleet) -> int:
    with sqlite3.connect(fleet.database) as db:
        return int(db.execute("SELECT count(*) FROM samples").fetchone()[0])


def wait_until(check: Callable[[], bool], what: str, budget: float = 60.0) -> None:
    deadline = time.monotonic() + budget
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


def probes_of(directory: Path) -> list[psutil.Process]:
    """Running streaming probes whose file is in ``directory`` (this test's own)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:  # ended, not yet reaped by its sshd
            continue
        cmdline = proc.info["cmdline"] or []
        if "--watch" in cmdline and any(str(directory) in word for word in cmdline):
            found.append(proc)
    return found


@pytest.fixture
def own_sshd(farm: sshd.Farm, fleet: Fleet, tmp_path: Path) -> Iterator[sshd.Sshd]:
    """An sshd of this test's own (it may stop it), logging every accepted login."""
    server = sshd.start_sshd(tmp_path / "own-sshd", farm.root / "authorized_keys", log_level="INFO")
    farm.servers.append(server)  # fleet.host(..., server=-1) and known_hosts find it
    fleet.known_hosts.write_text(farm.known_hosts_text())
    try:
        yield server
    finally:
        farm.servers.remove(server)
        server.stop(sessions=True)


def logins(server: sshd.Sshd) -> int:
    return server.log.read_text().count("Accepted publickey")


def test_watch_samples_every_tick_on_one_connection_per_host(
    fleet: Fleet, own_sshd: sshd.Sshd, netmetrix: Cli
) -> None:
    fleet.host("w1", -1)
    fleet.host("w2", -1)
    fleet.host("nokey", -1)
    assert netmetrix("--config", fleet.config, "upload", "-h", "w*").code == 0
    before = logins(own_sshd)

    ran = netmetrix("--config", fleet.config, "watch", "--interval", "1s", "--ticks", "10")

    assert ran.code == 0, ran.err
    assert logins(own_sshd) - before == 2  # one connection per host for all ten ticks
    for name in ("w1", "w2"):
        assert ran.err.count(f"[{name}] connected") == 1
        ups = up_values(fleet, name)
        # every tick stores one `up`, but the first may come before the connection is made
        assert 9 <= len(ups) <= 10, ups
        assert sum(ups) >= 3, ups  # most answer in time even on a loaded machine
    assert ran.err.count("[nokey] not set up") == 1  # said once, not every tick
    assert up_values(fleet, "nokey") == []
    assert "SUCCESS!" not in ran.err  # no per-host line per tick at INFO
    assert "stopped after 10 tick(s)" in ran.err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_stores_what_arrived_and_exits_0(
    fleet: Fleet, netmetrix: Cli, background: Callable[..., Background], sig: signal.Signals
) -> None:
    fleet.host("t1", 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    watch = background(fleet.config, "watch", "--interval", "1s")
    wait_until(lambda: len(up_values(fleet, "t1")) >= 2, "two ticks stored")
    watch.process.send_signal(sig)
    began = time.monotonic()
    assert watch.finish(budget=30) == 0, watch.err
    assert time.monotonic() - began < 10 + 5  # 10 s promised; 5 s for a loaded machine
    assert f"watch: {sig.name}: stopping" in watch.err
    [stored] = [line for line in watch.err.splitlines() if "samples stored" in line]
    assert stored.endswith(f"; {sample_count(fleet):,} samples stored"), stored
    # the probe ends on EOF as its session closes; sshd may take a moment to reap it
    wait_until(lambda: probes_of(fleet.remote_dir("t1")) == [], "the probe ended", 30)


def test_killed_collector_leaves_no_probe_on_the_host(
    fleet: Fleet,
    netmetrix: Cli,
    background: Callable[..., Background],
    test_user: sshd.User,
    user_dir: Path,
) -> None:
    directory = user_dir / "probe"
    fleet.host("k1", 0, user=test_user.name, python=test_user.python, directory=str(directory))
    assert netmetrix("--config", fleet.config, "upload").code == 0
    watch = background(fleet.config, "watch", "--interval", "2s")
    wait_until(lambda: sum(up_values(fleet, "k1")) >= 1, "an answer stored")
    probes = probes_of(directory)
    assert [p.username() for p in probes] == [test_user.name]

    watch.process.kill()  # kill -9: nothing of ours runs to close the session
    watch.finish()

    # within 3 intervals (6 s), with room for a loaded machine
    _gone, alive = psutil.wait_procs(probes, timeout=6 + 9)
    assert alive == [], [p.cmdline() for p in alive]


def test_sighup_adds_and_removes_hosts_and_keeps_a_broken_config_out(
    fleet: Fleet, netmetrix: Cli, background: Callable[..., Background]
) -> None:
    for name in ("h1", "h2", "h3"):
        fleet.host(name, 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    fleet.hosts = [h for h in fleet.hosts if h["name"] != "h3"]
    fleet.write()
    watch = background(fleet.config, "watch", "--interval", "1s")
    watch.wait_for("[h1] connected", "[h2] connected")
    wait_until(lambda: len(up_values(fleet, "h2")) >= 1, "h2 sampled")

    fleet.hosts = [h for h in [*fleet.hosts, {**fleet.hosts[0], "name": "h3"}] if h["name"] != "h2"]
    fleet.hosts[-1]["directory"] = str(fleet.remote_dir("h3"))
    fleet.write()
    watch.process.send_signal(signal.SIGHUP)
    watch.wait_for("reload: config.xml read; 2 host(s), 1 added, 1 removed", "[h3] connected")
    wait_until(lambda: len(up_values(fleet, "h3")) >= 2, "h3 sampled")
    wait_until(lambda: probes_of(fleet.remote_dir("h2")) == [], "h2's probe ended", 30)
    h2_samples = len(up_values(fleet, "h2"))

    fleet.config.write_text(fleet.config.read_text().replace("<hosts>", "<hosts><oops>"))
    watch.process.send_signal(signal.SIGHUP)
    watch.wait_for("has problems; the running configuration is kept")
    h1_then = len(up_values(fleet, "h1"))
    wait_until(lambda: len(up_values(fleet, "h1")) >= h1_then + 2, "ticks go on")

    watch.process.send_signal(signal.SIGTERM)
    assert watch.finish() == 0, watch.err
    assert watch.err.count("[h1] connected") == 1  # a reload leaves other sessions alone
    assert len(up_values(fleet, "h2")) == h2_samples  # no tick samples a removed host


def test_outage_alert_and_a_slow_mail_server(
    fleet: Fleet,
    own_sshd: sshd.Sshd,
    farm: sshd.Farm,
    netmetrix: Cli,
    background: Callable[..., Background],
    smtp: smtpserver.SMTPServer,
) -> None:
    fleet.host("o1", -1)
    fleet.host("o2", 0)
    with smtpserver.HoldingProxy(smtp.port, "data-reply") as slow:
        fleet.write(
            smtp=SMTP(host="127.0.0.1", port=slow.port, timeout="60s", deadline="120s"),
            alerts=[Alert(metric="up", op="==", limit=0, for_count=2, email="ops@example.com")],
        )
        assert netmetrix("--config", fleet.config, "upload").code == 0
        watch = background(fleet.config, "watch", "--interval", "1s")
        watch.wait_for("[o1] connected", "[o2] connected")
        wait_until(lambda: sum(up_values(fleet, "o1")) >= 1, "o1 answered")

        answered = len(up_values(fleet, "o1"))
        own_sshd.stop(sessions=True)  # the host goes down, its connection with it
        wait_until(lambda: 0.0 in up_values(fleet, "o1"), "o1 down")
        assert sum(up_values(fleet, "o1")[answered:]) <= 1  # down from the next tick on
        watch.wait_for("[o1] lost:")

        assert slow.held.wait(60), "the FIRING mail never reached the mail server"
        ticks_then = len(up_values(fleet, "o2"))
        wait_until(lambda: len(up_values(fleet, "o2")) >= ticks_then + 3, "ticks go on", 30)
        slow.release.set()

        restarted = sshd.start_sshd(
            own_sshd.workdir, farm.root / "authorized_keys", port=own_sshd.port, log_level="INFO"
        )
        own_sshd.process = restarted.process  # the fixture stops it
        watch.wait_for("[o1] back after", budget=90)
        wait_until(lambda: len(smtp.messages) >= 2, "FIRING and RESOLVED mail", 90)
        watch.process.send_signal(signal.SIGTERM)
        assert watch.finish() == 0, watch.err

    assert watch.err.count("[o1] back after") == 1
    assert "[o1] lost: connection lost; retrying in" in watch.err
    assert watch.err.count("[o1] lost:") == 1  # said once however many retries failed
    assert up_values(fleet, "o1")[-1] == 1.0
    subjects = smtp.subjects
    assert len(subjects) == 2, subjects
    assert [s.split(" is ")[0] for s in subjects] == ["ALERT [o1] up", "RESOLVED [o1] up"]


def test_execute_runs_beside_a_running_watch_on_the_same_store(
    fleet: Fleet, netmetrix: Cli, background: Callable[..., Background], store_url: str
) -> None:
    fleet.settings["database"] = store_url
    fleet.host("x1", 0)
    fleet.host("x2", 1)
    assert netmetrix("--config", fleet.config, "upload").code == 0

    def ups(host: str) -> list[float]:
        with Store.open(store_url) as store:
            return [s.value for s in store.history(host, "up")]

    watch = background(fleet.config, "watch", "--interval", "1s")
    wait_until(lambda: len(ups("x1")) >= 2, "watch storing ticks")
    for _ in range(2):
        ran = netmetrix("--config", fleet.config, "execute")
        assert ran.code == 0, ran.err
        assert "execute: 2 ok" in ran.err
    count = len(ups("x1"))
    wait_until(lambda: len(ups("x1")) >= count + 2, "watch going on after execute")
    watch.process.send_signal(signal.SIGTERM)
    assert watch.finish() == 0, watch.err
    assert "not stored" not in watch.err
    assert "ERROR" not in watch.err


def test_a_mute_or_lying_host_is_down_each_tick_and_delays_no_other(
    fleet: Fleet, netmetrix: Cli
) -> None:
    for name in ("ok1", "mute", "liar"):
        fleet.host(name, 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    fleet.hosts[1]["python"] = fleet.wrapper("mute", "exec cat >/dev/null")  # ends at EOF
    fleet.hosts[2]["python"] = fleet.wrapper("liar", "while read line; do echo garbage; done")
    fleet.write()

    ran = netmetrix("--config", fleet.config, "watch", "--interval", "1s", "--ticks", "5")

    assert ran.code == 0, ran.err
    ok, mute, liar = (up_values(fleet, name) for name in ("ok1", "mute", "liar"))
    assert len(ok) >= 4
    assert sum(ok) >= 2  # answered in time: the mute host's wait is not its own
    assert mute == [0.0] * len(mute)
    assert len(mute) >= 4
    assert liar == [0.0] * len(liar)
    with Store.open(f"sqlite:///{fleet.database}") as store:
        errors = {row.name: row.last_error for row in store.hosts()}
    assert errors["mute"] == "timeout: no answer within 1s"
    assert errors["liar"] == "bad message: not a netmetrix envelope"


def test_the_minute_summary_counts_hosts_answers_and_latency(
    fleet: Fleet, netmetrix: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netmetrix import watch

    monkeypatch.setattr(watch, "SUMMARY_EVERY", 2.0)  # a "minute" of two 1 s ticks
    fleet.host("s1", 0)
    fleet.host("s2", 1)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    ran = netmetrix("--config", fleet.config, "watch", "--interval", "1s", "--ticks", "6")
    assert ran.code == 0, ran.err
    summaries = [line for line in ran.err.splitlines() if "answers/min" in line]
    assert summaries, ran.err
    match = re.search(
        r"watch: 2 hosts, (\d) up, (\d) down, (\d+) answers/min, ([\d,]+) samples/min"
        r"(, tick p50 ([\d.]+)s p95 ([\d.]+)s)?$",
        summaries[-1],
    )
    assert match, summaries[-1]
    up, down, answers, samples = (int(match[i].replace(",", "")) for i in range(1, 5))
    assert up + down == 2
    assert samples >= answers  # every answer holds many samples
    if answers:
        assert match[5], summaries[-1]  # answers came: how long after the tick is said
        p50, p95 = float(match[6]), float(match[7])
        assert 0 <= p50 <= p95
        assert p95 > 0  # shown in ms: even a fast answer is more than 0.000 s


def test_a_probe_without_streaming_mode_says_run_upload_once(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("old", 0)
    fleet.host("new", 1)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    script = fleet.remote_dir("old") / "client.py"
    shutil.copyfile(OLD_PROBE, script)  # as uploaded by a netmetrix before watch
    script.chmod(0o700)
    ran = netmetrix("--config", fleet.config, "watch", "--interval", "1s", "--ticks", "4")
    assert ran.code == 0, ran.err  # a host's problem is not watch's failure
    assert (
        ran.err.count(
            f"ERROR [old] FAILED: probe {script} is from an older netmetrix (no streaming mode)"
            " — run upload"
        )
        == 1
    )
    assert set(up_values(fleet, "old")) == {0.0}
    assert sum(up_values(fleet, "new")) >= 1


def test_a_silent_session_is_reopened_and_never_counted_up(fleet: Fleet, netmetrix: Cli) -> None:
    """Closing a session for silence once left it dead and its host `up` = 1 every tick."""
    fleet.settings["command_timeout"] = "2"  # silent for 3 s (3 intervals) -> reopened
    fleet.host("quiet", 0)
    fleet.host("ok2", 1)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    fleet.hosts[0]["python"] = fleet.wrapper("quiet", "exec cat >/dev/null")
    fleet.write()
    ran = netmetrix("--config", fleet.config, "watch", "--interval", "1s", "--ticks", "9")
    assert ran.code == 0, ran.err
    assert set(up_values(fleet, "quiet")) == {0.0}, ran.err
    assert len(up_values(fleet, "quiet")) >= 6
    assert "[quiet] FAILED: no answer for" in ran.err  # closed for silence, then retried
    assert sum(up_values(fleet, "ok2")) >= 2
