"""The benchmark harness still runs end to end (tiny fleet, one run; no timing asserts)."""

from __future__ import annotations

import json
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
