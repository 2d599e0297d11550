"""The benchmark harness still runs end to end (tiny fleet, one run; no timing asserts)."""

from __future__ import annotations

import collections
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "bench" / "harness.py"

pytestmark = pytest.mark.sshd


def test_harness_runs_netmetrix_and_the_spec_baseline(tmp_path: Path) -> None:
    pytest.importorskip("paramiko")  # in the test extra; the others are bench-only
    out = tmp_path / "out"
    args: list[str | Path] = ["--hosts", "4", "--runs", "1", "--servers", "2", "--login", "current"]
    args += ["--help-runs", "2", "--probe-runs", "1", "--contenders", "netmetrix,spec,pssh,floor"]
    args += ["--out", out, "--markdown", out / "RESULTS.md", "--workdir", tmp_path / "farm"]
    done = subprocess.run(
        [sys.executable, HARNESS, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (raw_path,) = out.glob("bench-*.json")
    raw = json.loads(raw_path.read_text())
    ran = {r["contender"] for r in raw["runs"]}
    assert {"netmetrix", "spec", "floor"} <= ran
    for run in raw["runs"]:
        assert (run["ok"], run["error"]) == (4, None), run
        assert min(run["cpu"], run["maxrss_mb"], run["host_cpu"]) > 0, run
    assert raw["startup"]["runs"] == 2
    assert raw["probe_cpu"]["netmetrix"]["error"] is None
    report = (out / "RESULTS.md").read_text()
    assert "| 4 | netmetrix execute |" in report
    assert "| 4 | spec design (paramiko + Pool) |" in report
    assert "## Goals" in report
    assert not (tmp_path / "farm").exists()  # the harness cleans up after itself


WATCH_BENCH = ROOT / "bench" / "watch_bench.py"


def test_watch_bench_measures_a_simulated_fleet_and_the_farm(tmp_path: Path) -> None:
    """bench/watch_bench.py end to end on 3 simulated hosts and 2 farm hosts, 3 ticks each.

    A 3 s interval leaves a loaded machine 6 s to connect before the last tick;
    only the report's shape and that each figure was measured (> 0) are checked.
    """
    out, work = tmp_path / "out", tmp_path / "work"
    args: list[str | Path] = ["--hosts", "3", "--interval", "3s", "--ticks", "3", "--repeat", "1"]
    args += ["--execute-runs", "1", "--workers", "2", "--sample-every", "0.25"]
    args += ["--farm-hosts", "2", "--farm-ticks", "3", "--farm-runs", "1", "--farm-servers", "1"]
    args += ["--login", "current", "--out", out, "--markdown", out / "RESULTS.md"]
    args += ["--workdir", work]
    done = subprocess.run(
        [sys.executable, WATCH_BENCH, *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (raw_path,) = out.glob("watch-*.json")
    raw = json.loads(raw_path.read_text())
    runs = {(r["fleet"], r["role"], r["hosts"]): r for r in raw["watch"]}
    assert set(runs) == {("sim", "base", 1), ("sim", "fleet", 3), ("farm", "fleet", 2)}
    for run in runs.values():
        assert (run["error"], run["connected"], run["ticks"]) == (None, run["hosts"], 3), run
        assert min(run["answers"], run["user"] + run["sys"], run["maxrss_mb"]) > 0, run
        assert run["samples"] >= 25 * run["answers"]  # 24 probe samples and `up` each
        assert run["empty_ok"] == 0, run  # no `up` = 1 stored without the probe's samples
        jitter = run["jitter"]
        assert jitter is not None, run
        assert jitter["answers"] > 0, run
        # answers are taken until the 3 s deadline: a tick told wrong is 3 s off
        assert 0 <= jitter["p50_ms"] <= jitter["max_ms"], run
        assert jitter["p50_ms"] < 3500, run
        assert len(run["points"]) >= 2, run
        assert all(p["rss"] > 0 for p in run["points"]), run
    farm = runs["farm", "fleet", 2]
    assert farm["host_cpu"] > 0, farm
    assert all(p["host_cpu"] is not None for p in farm["points"])
    assert all(p["sim_cpu"] is not None for p in runs["sim", "fleet", 3]["points"])
    executes = {(r["fleet"], r["hosts"]): r for r in raw["execute"]}
    assert set(executes) == {("sim", 3), ("farm", 2)}
    for run in executes.values():
        assert (run["ok"], run["error"]) == (run["hosts"], None), run
        assert min(run["cpu"], run["wall"]) > 0, run
    assert executes["farm", 2]["host_cpu"] > 0
    report = (out / "RESULTS.md").read_text()
    assert report.count("<!-- watch-bench:start -->") == 1
    assert "| fleet | 3 x 3 |" in report
    assert "| base | 1 x 3 |" in report
    assert "| fleet | 2 x 3 |" in report  # the farm's
    assert "host CPU per sample an order of magnitude under one-shot" in report
    assert not work.exists()  # the bench cleans up after itself
    mine = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(work) in " ".join(p.info["cmdline"] or [])
    ]
    assert mine == []  # no simulator worker, sshd or watch outlived it


def test_the_web_benchmark_builds_its_store_and_reports(tmp_path: Path) -> None:
    """bench/web_bench.py on a tiny store: every figure measured, its RESULTS section written
    (replacing the one there, keeping the rest)."""
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmarks\n\n## Web\n\nold\n\n## After\n\nkept\n")
    args: list[str | Path] = ["--hosts", "5", "--hours", "1", "--interval", "60", "--runs", "1"]
    args += ["--workdir", tmp_path / "work", "--markdown", results]
    done = subprocess.run(
        [sys.executable, ROOT / "bench" / "web_bench.py", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["rows"] == 5 * 25 * 60
    assert result["sparklines"] == 5 * 4  # every host's four columns have data
    assert result["charts"] == 20  # the metrics of the 25 series
    assert min(result["render_ms"], result["chart_ms"], result["html_gzip_bytes"]) > 0
    assert "vendor/htmx.min.js" in result["assets"]
    report = results.read_text()
    assert report.startswith("# Benchmarks\n\n## Web\n")
    assert "| `/` rendered server-side (queries + template) |" in report
    assert "old" not in report
    assert report.endswith("## After\n\nkept\n")


# ------------------------------------------------------------ the simulated fleet

sys.path.insert(0, str(ROOT / "bench"))
import harness  # noqa: E402
import report  # noqa: E402
import simfleet  # noqa: E402

NETMETRIX = Path(sys.executable).parent / "netmetrix"
# What netmetrix says of a host failing each way (simfleet.MODES has the outcomes).
REASONS = {
    "auth": "auth failed: Permission denied",
    "close": "connection dropped before login 5 times",
    "timeout": "timeout after 4s (run)",
    "garbage": "bad message: ",
    "refused": "connection refused (127.77.",
}
PROBE_SAMPLES = 24  # of the captured /proc every simulated answer carries (simfleet.py)


def _cli(fleet: simfleet.SimFleet, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NETMETRIX, "--config", fleet.config, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=fleet.root,
        check=False,
    )


def test_a_simulated_fleet_fails_as_told_and_the_others_store_samples(tmp_path: Path) -> None:
    """30 hosts, 30% failing (by name: every mode once or more), answers 1 s late."""
    with simfleet.simfleet(
        tmp_path / "sim",
        30,
        workers=2,
        command_timeout=4,
        latency=simfleet.Latency.parse("1000"),
        fail=0.3,
    ) as fleet:
        failing = fleet.failing
        assert set(failing.values()) == set(simfleet.MODES)  # the names decide: fixed
        ran = _cli(fleet, "execute")
        latest = _cli(fleet, "metrics", "latest", "--format", "json")
    assert ran.returncode == 1, ran.stderr[-3000:]
    summary = ran.stderr.strip().splitlines()[-1]
    expected = collections.Counter(h.expected for h in fleet.hosts)
    for outcome, count in expected.items():
        assert f" {count} {outcome}" in summary, summary
    assert set(summary.split("; failed: ")[1].split(", ")) == set(failing)
    for name, mode in failing.items():
        (line,) = [x for x in ran.stderr.splitlines() if f"[{name}] FAILED: " in x]
        assert REASONS[mode] in line, line
    p50 = float(summary.split("per host p50 ")[1].split("s")[0])
    assert p50 >= 1.0  # every answer waited its 1 s: the latency is served
    assert latest.returncode == 0, latest.stderr
    series: dict[str, dict[str, float]] = collections.defaultdict(dict)
    for row in json.loads(latest.stdout):
        series[row["host"]][row["metric"] + str(row.get("labels") or "")] = row["value"]
    for host in fleet.hosts:
        stored = series[host.name]
        if host.fail is None:
            assert stored["up"] == 1, host
            assert len(stored) == PROBE_SAMPLES + 1, (host, sorted(stored))
        else:
            assert stored == {"up": 0}, (host, stored)
    assert not fleet.workers  # stopped on leaving the context


def test_fail_modes_and_latency_are_functions_of_the_name_and_seed() -> None:
    share = 0.3
    names = [simfleet.host_name(i) for i in range(2000)]
    modes = [simfleet.fail_mode(n, share) for n in names]
    failing = [m for m in modes if m is not None]
    assert 0.25 < len(failing) / len(names) < 0.35
    counts = collections.Counter(failing)
    assert set(counts) == set(simfleet.MODES)
    assert max(counts.values()) < 1.5 * min(counts.values())  # evenly spread
    assert modes[:100] == [simfleet.fail_mode(n, share) for n in names[:100]]
    assert simfleet.fail_mode("s00001", 0.0) is None
    assert all(simfleet.fail_mode(n, 1.0) is not None for n in names[:50])
    assert {simfleet.fail_mode(n, 1.0, ("auth",)) for n in names[:50]} == {"auth"}
    fixed, spread = simfleet.Latency.parse("50"), simfleet.Latency.parse("20-200ms")
    assert (fixed.low, fixed.high, str(fixed)) == (0.05, 0.05, "50 ms")
    assert (spread.low, spread.high, str(spread)) == (0.02, 0.2, "20-200 ms")
    delays = [spread.delay(seed) for seed in range(500)]
    assert min(delays) >= 0.02
    assert max(delays) <= 0.2
    assert max(delays) - min(delays) > 0.15  # spread over the range, not one value
    assert delays[7] == spread.delay(7)
    assert simfleet.Latency().delay(3) == 0.0
    for bad in ("fast", "-5", "200-20", "1-2-3"):
        with pytest.raises(ValueError, match="milliseconds, as 50 or 20-200"):
            simfleet.Latency.parse(bad)


SCALE_BENCH = ROOT / "bench" / "scale_bench.py"


def test_scale_bench_runs_netmetrix_and_the_floor_side_by_side(tmp_path: Path) -> None:
    """bench/scale_bench.py on 10 and 20 simulated hosts (30% failing fast), one round:
    every run collects the hosts it should, and its section replaces the old one only."""
    results, out, work = tmp_path / "RESULTS.md", tmp_path / "out", tmp_path / "work"
    results.write_text(
        "# Benchmarks\n\n<!-- harness:start -->\nharness kept\n<!-- harness:end -->\n\n"
        "<!-- scale-bench:start -->\nold scale\n<!-- scale-bench:end -->\n\n## After\n\nkept\n"
    )
    args: list[str | Path] = ["--hosts", "10,20", "--runs", "1", "--warmup", "0"]
    args += ["--sim-workers", "2", "--fail", "30%", "--fail-modes", "auth,refused,garbage"]
    args += ["--out", out, "--markdown", results, "--workdir", work]
    done = subprocess.run(
        [sys.executable, SCALE_BENCH, *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (raw_path,) = out.glob("scale-*.json")
    raw = json.loads(raw_path.read_text())
    contenders = raw["settings"]["contenders"]
    assert contenders[:2] == ["netmetrix", "floor"]
    if raw["settings"]["no_workers"] is None:  # this netmetrix has execute --workers
        assert contenders[2:] == ["workers-1", "workers-2"]
    runs = {(r["contender"], r["hosts"]): r for r in raw["runs"]}
    assert set(runs) == {(c, n) for c in contenders for n in (10, 20)}
    for (_, n), run in runs.items():
        failing = sum(1 for i in range(n) if simfleet.fail_mode(simfleet.host_name(i), 0.3))
        assert 0 < failing < n
        assert (run["ok"], run["expected_ok"], run["error"]) == (n - failing, n - failing, None)
        assert min(run["cpu"], run["wall"], run["maxrss_mb"], run["tree_rss_mb"]) > 0, run
        assert run["sim_cpu"] > 0, run
    report_text = results.read_text()
    assert report_text.startswith("# Benchmarks\n\n<!-- harness:start -->\nharness kept\n")
    assert report_text.endswith("\n\n## After\n\nkept\n")
    assert report_text.count("<!-- scale-bench:start -->") == 1
    assert "old scale" not in report_text
    assert "| 20 | netmetrix execute | 1 |" in report_text
    assert "| 20 | bare asyncssh (floor) | 1 |" in report_text
    ratio = "| N=20: netmetrix collector CPU per host ≤ 1.15x the floor's | "
    assert ratio in report_text
    assert report_text.split(ratio)[1].split(" |")[0].endswith(")")  # a ratio was measured
    assert not work.exists()
    mine = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(work) in " ".join(p.info["cmdline"] or [])
    ]
    assert mine == []  # no simulator worker or contender outlived it


def test_the_harness_report_keeps_the_other_sections(tmp_path: Path) -> None:
    """harness.py wrote the whole RESULTS.md, dropping every other benchmark's section."""
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "# Benchmarks\n\n<!-- harness:start -->\nold harness\n<!-- harness:end -->\n\n"
        "<!-- watch-bench:start -->\nwatch kept\n<!-- watch-bench:end -->\n\n## Web\n\nkept\n"
    )
    (raw,) = sorted((ROOT / "bench" / "results").glob("bench-*.json"))[-1:]
    done = subprocess.run(
        [sys.executable, HARNESS, "--report-only", raw, "--markdown", results],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = results.read_text()
    assert text.startswith("# Benchmarks\n\n<!-- harness:start -->\nRun ")
    assert "old harness" not in text
    assert "| goal | measured | |" in text
    assert text.endswith(
        "<!-- harness:end -->\n\n<!-- watch-bench:start -->\nwatch kept\n"
        "<!-- watch-bench:end -->\n\n## Web\n\nkept\n"
    )
    fresh = tmp_path / "new" / "RESULTS.md"
    fresh.parent.mkdir()
    report.write_section(fresh, report.marked("x", "one"), "x")
    report.write_section(fresh, report.marked("y", "two"), "y")
    report.write_section(fresh, report.marked("x", "three"), "x")
    assert fresh.read_text() == (
        "# Benchmarks\n\n<!-- x:start -->\nthree\n<!-- x:end -->\n\n<!-- y:start -->\ntwo\n"
        "<!-- y:end -->\n"
    )


def test_peak_rss_is_the_childs_own_not_the_benchs(tmp_path: Path) -> None:
    """os.wait4's ru_maxrss of a child never went below the bench's RSS at fork."""
    ballast = bytearray(150 * 2**20)
    ballast[::4096] = b"\1" * len(ballast[::4096])  # touch every page: resident
    small = harness.run_measured(["/bin/true"], env=dict(os.environ), cwd=tmp_path, timeout=60)
    code = "b = bytearray(60 * 2**20); b[::4096] = b'1' * len(b[::4096])"
    big = harness.run_measured(
        [sys.executable, "-c", code], env=dict(os.environ), cwd=tmp_path, timeout=60
    )
    assert ballast[4096] == 1
    assert (small.returncode, big.returncode) == (0, 0)
    assert small.maxrss_mb < 20
    assert 60 < big.maxrss_mb < 140


SIMFLEET = ROOT / "bench" / "simfleet.py"


def _serve_under(nofile: str, root: Path, hosts: int) -> subprocess.Popen[str]:
    """bench/simfleet.py (one worker) with RLIMIT_NOFILE soft:hard = ``nofile``."""
    argv = ["--hosts", str(hosts), "--workers", "1", "--dir", str(root)]
    return subprocess.Popen(
        ["prlimit", f"--nofile={nofile}", sys.executable, SIMFLEET, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_simulator_worker_raises_its_file_limit_or_says_what_it_needs(tmp_path: Path) -> None:
    """300 hosts on one worker need more than a 128-file soft limit: raised to the hard
    limit, or, with the hard limit at 128 too, one line saying so."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1024:
        pytest.skip(f"the hard file limit is {hard}")
    limit = f"128:{hard if hard != resource.RLIM_INFINITY else 'unlimited'}"
    with _serve_under(limit, tmp_path / "ok", 300) as served:
        try:
            assert served.stdout is not None
            first = served.stdout.readline()  # the ready line, or EOF when it failed
            assert first.startswith("simfleet: 300 hosts on 1 worker, "), served.communicate()
            (worker,) = psutil.Process(served.pid).children()
            assert worker.rlimit(psutil.RLIMIT_NOFILE)[0] >= 300
            listening = [c for c in worker.net_connections("tcp") if c.status == "LISTEN"]
            assert len(listening) == 300  # every host has its own listening socket
        finally:
            served.terminate()  # SIGTERM: it stops its workers, as on Ctrl-C
            served.wait(timeout=60)
    assert served.returncode == 0
    with _serve_under("128:128", tmp_path / "short", 300) as short:
        _, err = short.communicate(timeout=300)
    assert short.returncode == 1
    needed = 300 + 2 * 100 + simfleet.FD_SPARE  # hosts, connections at concurrency 100, spare
    assert f"exited before it was ready: simfleet: a worker needs {needed} open files" in err
    assert "the hard limit is 128: use more --workers, or raise the limit" in err
