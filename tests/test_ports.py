"""The test port blocks: two test sessions at once never share one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PRINT_BLOCK = (
    "import sys, ports; "
    "print((ports.free_port() - ports.FIRST) // ports.BLOCK, flush=True); "
    "sys.stdin.read()"
)


def _worker(name: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTEST_XDIST_WORKER": name, "PYTHONPATH": str(HERE)}
    return subprocess.Popen(
        [sys.executable, "-c", PRINT_BLOCK],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_same_named_workers_of_two_sessions_get_different_blocks() -> None:
    first, second = _worker("gw0"), _worker("gw0")
    try:
        assert first.stdout is not None
        assert second.stdout is not None
        blocks = {first.stdout.readline().strip(), second.stdout.readline().strip()}
    finally:
        for proc in (first, second):
            proc.communicate("", timeout=30)
    assert len(blocks) == 2, blocks
