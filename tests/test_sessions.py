"""watch's pure parts: backoff, the handshake ramp, the tick schedule, the words it logs (#13).

No sshd here: the clock and the random source are injected or asyncio's own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netmetrix import sessions, watch
from netmetrix.config import SSHConfig
from netmetrix.format import elapsed


@pytest.mark.parametrize(
    ("failures", "low", "high"),
    [(1, 1.0, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (5, 8.0, 16.0), (9, 128.0, 256.0)],
)
def test_backoff_doubles_with_jitter_in_the_upper_half(
    failures: int, low: float, high: float
) -> None:
    assert sessions.backoff(failures, rng=lambda: 0.0) == low
    assert sessions.backoff(failures, rng=lambda: 1.0) == high


@given(st.integers(min_value=1, max_value=10_000), st.floats(min_value=0, max_value=1))
def test_backoff_stays_between_one_second_and_five_minutes(failures: int, draw: float) -> None:
    assert 1.0 <= sessions.backoff(failures, rng=lambda: draw) <= 300.0


def test_ramp_holds_handshakes_to_its_concurrency_and_rate() -> None:
    async def main() -> tuple[int, list[float]]:
        ramp = sessions.Ramp(concurrency=2, rate=20.0)
        inside, most, starts = 0, 0, []

        async def handshake() -> None:
            nonlocal inside, most
            async with ramp.slot():
                starts.append(time.monotonic())
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0.05)
                inside -= 1

        await asyncio.gather(*(handshake() for _ in range(6)))
        return most, starts

    most, starts = asyncio.run(main())
    assert most == 2
    # six starts at most 20 a second: the last is at least 5 gaps of 50 ms after the first
    assert starts[-1] - starts[0] >= 5 * 0.05 - 0.01


def test_next_tick_keeps_the_schedule() -> None:
    assert watch._next_tick(100.0, 10.0, now=100.5) == 110.0


def test_next_tick_skips_the_ticks_a_stall_missed(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert watch._next_tick(100.0, 10.0, now=135.0) == 140.0
    assert "watch: 3 tick(s) skipped: the collector fell behind" in caplog.text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.84, "0.8s"),
        (3.0, "3s"),
        (45.2, "45s"),
        (133, "2m13s"),
        (3900, "1h05m"),
        (2 * 86400 + 4 * 3600, "2d4h"),
    ],
)
def test_elapsed_reads_like_a_clock(seconds: float, text: str) -> None:
    assert elapsed(seconds) == text


def test_request_line_asks_for_three_intervals_of_patience() -> None:
    plan = sessions.Plan(
        ssh=SSHConfig(known_hosts=Path("known_hosts"), command_timeout=30.0),
        script="client.py",
        collector="c1",
        interval=5.0,
        require_encryption=False,
        known=None,  # type: ignore[arg-type]  # not used by request()
        files=None,  # type: ignore[arg-type]
    )
    assert plan.request("a" * 32) == b"a" * 32 + b" 15 27\n"
    assert plan.wait == 5.0
    short = dataclasses.replace(plan, interval=1.0)
    assert short.request("b" * 32).split()[1] == b"10"  # at least 10 s: a stall is no death
