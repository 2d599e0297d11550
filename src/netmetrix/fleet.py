"""Run one async job per host under a concurrency limit; never let one host stop the others.

Every per-host error becomes that host's ``HostResult``: the expected ones
(``OSError``, ``asyncssh.Error``, ``TimeoutError``, ``NetmetrixError``) by
``classify``, and any other ``Exception`` too (a bug, or host data a check
missed), as ``error`` with its traceback logged at DEBUG.  Cancellation and
Ctrl-C are never caught here.  Reasons are sanitised: they may quote the host.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import asyncssh

from netmetrix.config import HostConfig
from netmetrix.errors import EnvelopeError, HostError, NetmetrixError, Outcome
from netmetrix.sanitize import clean

log = logging.getLogger(__name__)
T = TypeVar("T")
# Characters of a one-line reason: room for a host-key hint naming two files by absolute
# path (it must work as printed), while host-supplied text in it is capped where it is read.
REASON_LIMIT = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class HostResult(Generic[T]):
    host: HostConfig
    outcome: Outcome
    error: str | None  # one line, without the host name
    seconds: float
    value: T | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


def classify(exc: BaseException) -> tuple[Outcome, str]:
    """Map an expected per-host exception to (outcome, one-line reason)."""
    if isinstance(exc, HostError):
        return exc.outcome, str(exc)
    if isinstance(exc, EnvelopeError):
        return Outcome.BAD_MESSAGE, str(exc)
    if isinstance(exc, asyncssh.Error):
        return Outcome.ERROR, f"ssh: {exc.reason}"
    if isinstance(exc, TimeoutError):
        return Outcome.TIMEOUT, "timeout"
    return Outcome.ERROR, f"{type(exc).__name__}: {exc}"


def _unexpected(exc: Exception) -> tuple[Outcome, str]:
    """An exception no job should raise: this host fails, with a hint to find the bug."""
    detail = str(exc).strip() or "no detail"
    return Outcome.ERROR, f"unexpected {type(exc).__name__}: {detail} (-v logs the traceback)"


_EXPECTED = (OSError, asyncssh.Error, TimeoutError, NetmetrixError)


async def run_fleet(
    hosts: Sequence[HostConfig],
    job: Callable[[HostConfig], Awaitable[T]],
    *,
    concurrency: int,
    on_result: Callable[[HostResult[T]], None] | None = None,
) -> list[HostResult[T]]:
    """Run ``job`` for every host, at most ``concurrency`` at once; results in host order."""
    results: list[HostResult[T] | None] = [None] * len(hosts)

    def keep(index: int, result: HostResult[T]) -> None:
        results[index] = result
        if on_result is not None:
            on_result(result)

    await _lanes(hosts, job, concurrency, keep)
    return [r for r in results if r is not None]  # every one: _lanes ends when all are in


async def fan_out(
    hosts: Sequence[HostConfig],
    job: Callable[[HostConfig], Awaitable[T]],
    *,
    concurrency: int,
    on_result: Callable[[HostResult[T]], None],
) -> None:
    """``run_fleet`` that keeps nothing: each result goes to ``on_result`` as its host finishes.

    Memory stays flat in the number of hosts: only ``concurrency`` jobs exist at once
    (not a task per host), and a result lives as long as ``on_result`` keeps it.
    """
    await _lanes(hosts, job, concurrency, lambda _index, result: on_result(result))


async def _lanes(
    hosts: Sequence[HostConfig],
    job: Callable[[HostConfig], Awaitable[T]],
    concurrency: int,
    on_result: Callable[[int, HostResult[T]], None],
) -> None:
    """``concurrency`` lanes, each taking the next host in order until none is left."""
    todo = iter(enumerate(hosts))  # shared: whichever lane is free takes the next host

    async def lane() -> None:
        for index, host in todo:
            on_result(index, await _one(host, job))

    lanes = [asyncio.ensure_future(lane()) for _ in range(min(concurrency, len(hosts)))]
    try:
        await asyncio.gather(*lanes)
    finally:  # cancelled, or a lane failed (a bug in on_result): stop the others too
        for running in lanes:
            running.cancel()


async def _one(host: HostConfig, job: Callable[[HostConfig], Awaitable[T]]) -> HostResult[T]:
    """Run ``job`` on ``host``; any Exception becomes the host's failed result."""
    started = time.monotonic()
    try:
        value = await job(host)
    except Exception as exc:  # any: one host's failure stays its own (module docstring)
        outcome, reason = classify(exc) if isinstance(exc, _EXPECTED) else _unexpected(exc)
        reason = clean(reason, REASON_LIMIT)
        log.debug("[%s] %s", host.name, reason, exc_info=True)
        return HostResult(
            host=host, outcome=outcome, error=reason, seconds=time.monotonic() - started
        )
    return HostResult(
        host=host, outcome=Outcome.OK, error=None, seconds=time.monotonic() - started, value=value
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    counts: dict[Outcome, int]
    p50: float
    p95: float
    wall: float
    failed: tuple[tuple[str, Outcome], ...]

    @property
    def all_ok(self) -> bool:
        return not self.failed

    def line(self, verb: str) -> str:
        """e.g. ``execute: 48 ok, 2 timeout in 3.10s (per host p50 0.21s, p95 0.40s)``."""
        parts = [
            f"{n} {o.value}"
            for o, n in sorted(self.counts.items(), key=lambda kv: kv[0] is not Outcome.OK)
        ]
        text = (
            f"{verb}: {', '.join(parts) or 'no hosts'} in {self.wall:.2f}s "
            f"(per host p50 {self.p50:.2f}s, p95 {self.p95:.2f}s)"
        )
        if self.failed:
            names = ", ".join(name for name, _ in self.failed[:20])
            more = f" and {len(self.failed) - 20} more" if len(self.failed) > 20 else ""
            text += f"; failed: {names}{more}"
        return text


def summarize(results: Sequence[HostResult[T]], wall: float) -> Summary:
    times = sorted(r.seconds for r in results) or [0.0]
    p95 = statistics.quantiles(times, n=20, method="inclusive")[-1] if len(times) > 1 else times[0]
    return Summary(
        counts=dict(Counter(r.outcome for r in results)),
        p50=statistics.median(times),
        p95=p95,
        wall=wall,
        failed=tuple((r.host.name, r.outcome) for r in results if not r.ok),
    )
