"""The benchmark harness still runs end to end (tiny fleet, one run; no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
