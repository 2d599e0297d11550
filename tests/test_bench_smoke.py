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
