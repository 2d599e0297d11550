"""run_fleet: one host's failure, whatever it is, stays that host's (#10)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from netmetrix import fleet
from netmetrix.config import HostConfig
from netmetrix.errors import EnvelopeError, Outcome
from netmetrix.fleet import HostResult, run_fleet

HOSTS = [HostConfig(name=n) for n in ("a", "bad", "c")]


def run(failure: BaseException) -> tuple[list[HostResult[str]], list[str]]:
    """Run a fleet whose job fails with ``failure`` on host "bad" only."""
    reported: list[str] = []

    async def job(host: HostConfig) -> str:
        await asyncio.sleep(0)
        if host.name == "bad":
            raise failure
        return f"{host.name} ok"

    results = asyncio.run(
        run_fleet(HOSTS, job, concurrency=2, on_result=lambda r: reported.append(r.host.name))
    )
    return results, reported


@pytest.mark.parametrize(
    ("failure", "outcome", "reason"),
    [
        (
            RecursionError("maximum recursion depth exceeded"),
            Outcome.ERROR,
            "unexpected RecursionError: maximum recursion depth exceeded (-v logs the traceback)",
        ),
        (
            OverflowError("int too large to convert to float"),
            Outcome.ERROR,
            "unexpected OverflowError: int too large to convert to float (-v logs the traceback)",
        ),
        (KeyError("kid"), Outcome.ERROR, "unexpected KeyError: 'kid' (-v logs the traceback)"),
        (
            RuntimeError(),
            Outcome.ERROR,
            "unexpected RuntimeError: no detail (-v logs the traceback)",
        ),
        (EnvelopeError("bad message: x"), Outcome.BAD_MESSAGE, "bad message: x"),
        (
            EnvelopeError("bad message: \x1b[2Jcleared\nforged log line\x00"),
            Outcome.BAD_MESSAGE,
            "bad message: cleared forged log line\\x00",
        ),
    ],
)
def test_any_exception_fails_its_host_only(
    failure: Exception, outcome: Outcome, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="netmetrix.fleet"):
        results, reported = run(failure)
    assert [(r.host.name, r.outcome, r.error, r.value) for r in results] == [
        ("a", Outcome.OK, None, "a ok"),
        ("bad", outcome, reason, None),
        ("c", Outcome.OK, None, "c ok"),
    ]
    assert sorted(reported) == ["a", "bad", "c"]  # progress heard of every host
    [record] = [r for r in caplog.records if r.name == "netmetrix.fleet"]
    assert record.levelno == logging.DEBUG
    assert record.getMessage() == f"[bad] {reason}"
    assert record.exc_info is not None  # the traceback
    assert record.exc_info[1] is failure


def test_long_reasons_are_capped() -> None:
    results, _ = run(ValueError("x" * 5000))
    error = results[1].error or ""
    assert len(error) == fleet.REASON_LIMIT == 1000
    assert error.endswith("…")


@pytest.mark.parametrize("failure", [asyncio.CancelledError(), KeyboardInterrupt()])
def test_cancellation_and_ctrl_c_are_never_swallowed(failure: BaseException) -> None:
    with pytest.raises(type(failure)):
        run(failure)
