"""Every core of one collector: a job's hosts in worker processes (``--workers N|auto``, #15).

``execute`` with N workers deals its hosts over N processes, each with its own
event loop and its share of ``<concurrency>``, where the CPU-heavy part of a
host runs: the SSH handshake and cipher, the probe's run, opening and checking
its envelope.  Everything a run says or writes stays in the calling process
(the parent): each worker streams its hosts' results back and the parent
calls the ``on_result`` that the in-process path calls (log lines, progress
bar, the store), so there is one writer for the store (for PostgreSQL too, for
now) and one report, summary line and exit status, as with one process.

How, and why:

- **Start**: a fresh interpreter (``python -c``, started by asyncio's
  subprocess support), never ``fork``: the parent runs an event loop and
  threads (``to_thread``, asyncio's child watcher), whose state a forked child
  would inherit mid-flight.  Not ``multiprocessing``'s spawn or forkserver
  either: both re-import the parent's ``__main__`` (the whole CLI, or
  pytest's), and spawn adds a resource-tracker process.  A worker imports
  only this module, ``oneshot``, ``ssh`` and ``envelope`` (no store): about
  0.45 s of CPU, measured; then it reads its plan, pickled, from its stdin:
  the config (without its host list), its hosts, their stored keys, the
  collector id, the OpenSSH client files to honour, its concurrency share and
  the parent's log levels.
- **Results** travel back as length-prefixed pickle frames on the worker's
  stdout (whose descriptor is moved aside at start, so that a stray ``print``
  lands on stderr rather than in the stream), read by the parent's event loop.
  A worker batches them: up to ``BATCH`` a frame, or what ``FLUSH_AFTER``
  gathered; a verified message travels as plain tuples (unpickling the
  dataclasses costs ~100 µs a message in the parent, tuples and rebuilding
  ~35 µs: the parent is the part that does not scale).
- **Partitioning**: round-robin in config order, so that neighbours in the file
  (one slow site, the hosts behind one jump host) spread over the workers.
- **Stopping**: workers run in a session of their own and ignore SIGINT, so
  Ctrl-C reaches the parent only, which stops them by closing their stdin; a
  worker also ends when its stdin closes because the parent died, even by
  SIGKILL, so none outlives it.  The parent gives them ``STOP_GRACE`` seconds,
  then kills the rest by PID and reaps them.
- **Death**: a worker that dies fails its unfinished hosts (``collector
  worker 2 died: exit -9``) while the others go on.
- **Logs** of a worker (a host key recorded, asyncssh with ``-vv``) travel as
  records and are logged by the parent, at the levels the parent set.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import pickle
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from netmetrix import envelope, ssh
from netmetrix.config import Config, HostConfig
from netmetrix.errors import Outcome
from netmetrix.fleet import HostResult, run_fleet
from netmetrix.model import Sample
from netmetrix.oneshot import ProbeSession, probe_host

log = logging.getLogger(__name__)

BATCH = 64  # results in one frame at most
FLUSH_AFTER = 0.02  # seconds a result waits for others to share its frame
STOP_GRACE = 5.0  # seconds a worker gets to end once told, before SIGKILL
MARK = "netmetrix-worker"  # on every worker's command line, before its number (ps shows it)
# SIGINT ignored first: a worker stops when the parent says so, never with a traceback.
_BOOT = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "from netmetrix.workers import child_main; raise SystemExit(child_main())"
)
_HEADER = struct.Struct("!I")  # a frame: its length, then a pickle

OnResult = Callable[[HostResult[envelope.Message]], None]


# ---------------------------------------------------------------- who does what


def deal(total: int, workers: int) -> list[list[int]]:
    """Round-robin: the positions of ``total`` hosts for each of at most ``workers`` workers."""
    count = max(1, min(workers, total))
    return [list(range(start, total, count)) for start in range(count)]


def share(concurrency: int, workers: int, number: int) -> int:
    """Worker ``number``'s (1-based) part of ``concurrency``: the parts add up to it, each >= 1."""
    return max(1, concurrency // workers + (number <= concurrency % workers))


# ---------------------------------------------------------------- the plan and the wire


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    """What a worker needs to run its hosts: everything a pickle can carry."""

    number: int  # 1-based, as messages name it
    config: Config  # without its hosts: a worker gets its own
    hosts: tuple[HostConfig, ...]
    keys: dict[str, dict[str, bytes]]  # host -> {kid: key}, its hosts only
    collector: str
    files: ssh.ClientFiles
    concurrency: int
    levels: dict[str, int]  # logger name ("" the root) -> level, as the parent set them


def _frame(item: Any) -> bytes:
    data = pickle.dumps(item, pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


async def _read_frame(reader: asyncio.StreamReader) -> Any | None:
    """The next item, or None at the end of the stream (or in the middle of a frame)."""
    try:
        size = _HEADER.unpack(await reader.readexactly(_HEADER.size))[0]
        data = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        return None
    return pickle.loads(data)  # noqa: S301 - only the parent and its own workers write here


Packed = tuple[str, bool, str, tuple[tuple[str, Any, float], ...], tuple[str, ...]]


def _pack(message: envelope.Message | None) -> Packed | None:
    if message is None:
        return None
    samples = tuple((s.metric, s.labels, s.value) for s in message.samples)
    return (message.kid, message.encrypted, message.probe_version, samples, message.errors)


def _unpack(packed: Packed | None) -> envelope.Message | None:
    if packed is None:
        return None
    kid, encrypted, version, samples, errors = packed
    return envelope.Message(
        kid=kid,
        encrypted=encrypted,
        probe_version=version,
        samples=tuple([Sample(metric=m, labels=labels, value=v) for m, labels, v in samples]),
        errors=errors,
    )


def _levels() -> dict[str, int]:
    """The levels set on loggers in this process, for a worker to set the same."""
    found = {"": logging.getLogger().level}
    for name, logger in logging.Logger.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            found[name] = logger.level
    return found


def _relog(item: tuple[Any, ...], number: int) -> None:
    """A worker's log record, logged here as if it had happened here."""
    _, name, level, message, created, exc_text = item
    logger = logging.getLogger(name)
    if not logger.isEnabledFor(level):
        return
    record = logging.makeLogRecord(
        {
            "name": name,
            "levelno": level,
            "levelname": logging.getLevelName(level),
            "msg": message,
            "created": created,
            "msecs": (created % 1) * 1000,
            "exc_text": exc_text,
            "processName": f"{MARK}-{number}",
        }
    )
    logger.handle(record)


# ---------------------------------------------------------------- the parent's side


class _Worker:
    """One worker process, seen from the parent."""

    def __init__(self, number: int, process: asyncio.subprocess.Process) -> None:
        self.number = number
        self.process = process
        self.started = time.monotonic()

    @classmethod
    async def start(cls, number: int) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _BOOT,
            MARK,
            str(number),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C is for the parent to handle
        )
        return cls(number, process)

    async def send(self, item: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(_frame(item))
        await self.process.stdin.drain()

    async def items(self) -> AsyncIterator[Any]:
        """What the worker sends, item by item, until its output ends."""
        assert self.process.stdout is not None
        while (batch := await _read_frame(self.process.stdout)) is not None:
            for item in batch:
                yield item

    def died(self, code: int | None) -> str:
        return f"collector worker {self.number} died: exit {code}"

    async def stop(self) -> None:
        """Tell it to end (its stdin closes), SIGKILL it after STOP_GRACE, reap it."""
        process = self.process
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()  # this PID only: it is our child and not yet reaped
            await process.wait()
        if process.stdout is not None:  # to its end, so that asyncio closes the pipe
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.stdout.read(), STOP_GRACE)


async def execute(
    config: Config,
    hosts: Sequence[HostConfig],
    *,
    workers: int,
    stored_keys: dict[str, dict[str, bytes]],
    collector: str,
    ssh_files: ssh.ClientFiles,
    on_result: OnResult,
) -> list[HostResult[envelope.Message]]:
    """``execute``'s job for every host, in ``workers`` processes; results in host order.

    ``on_result`` is called here, in the caller's loop, for every host as its
    result arrives (in any order), including the failed result of each host a
    dead worker left unfinished.  Cancelled, it stops the workers and re-raises.
    """
    positions = deal(len(hosts), workers)
    results: list[HostResult[envelope.Message] | None] = [None] * len(hosts)
    started: list[_Worker] = []
    bare = dataclasses.replace(config, hosts=())
    levels = _levels()
    tasks: list[asyncio.Task[None]] = []
    try:
        for number in range(1, len(positions) + 1):
            started.append(await _Worker.start(number))
        for worker, mine in zip(started, positions, strict=True):
            names = [hosts[i].name for i in mine]
            plan = _Plan(
                number=worker.number,
                config=bare,
                hosts=tuple(hosts[i] for i in mine),
                keys={name: stored_keys[name] for name in names if name in stored_keys},
                collector=collector,
                files=ssh_files,
                concurrency=share(config.concurrency, len(positions), worker.number),
                levels=levels,
            )
            tasks.append(asyncio.create_task(_run(worker, plan, mine, hosts, results, on_result)))
        # gather, not a TaskGroup: an error of on_result (the store's) leaves as itself
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(worker.stop() for worker in started))
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


async def _run(
    worker: _Worker,
    plan: _Plan,
    mine: Sequence[int],
    hosts: Sequence[HostConfig],
    results: list[HostResult[envelope.Message] | None],
    on_result: OnResult,
) -> None:
    """Send the plan, take the worker's results; when it ends early, fail what it left."""
    left = dict(enumerate(mine))  # position in the worker's share -> position in hosts
    with contextlib.suppress(OSError):  # it died before reading: said below
        await worker.send(plan)
    async for item in worker.items():
        if item[0] == "l":
            _relog(item, worker.number)
            continue
        _, position, outcome, error, seconds, packed = item
        index = left.pop(position)
        result: HostResult[envelope.Message] = HostResult(
            host=hosts[index],
            outcome=Outcome(outcome),
            error=error,
            seconds=seconds,
            value=_unpack(packed),
        )
        results[index] = result
        on_result(result)
    code = await worker.process.wait()
    if not left:
        return
    reason = worker.died(code)
    log.error("%s; its %d unfinished host(s) fail", reason, len(left))
    seconds = time.monotonic() - worker.started
    for index in left.values():
        result = HostResult(host=hosts[index], outcome=Outcome.ERROR, error=reason, seconds=seconds)
        results[index] = result
        on_result(result)


# ---------------------------------------------------------------- the worker's side


def child_main() -> int:
    """A worker process (``python -c``): read its plan, run it, stream the results back."""
    results = os.dup(1)
    os.dup2(2, 1)  # print() in a library goes to stderr, never into the result stream
    gc.freeze()  # the imports live as long as the process (cli._common.imports_done)
    return asyncio.run(_child(results))


class _Outbox:
    """Items for the parent, batched into frames (BATCH items, or FLUSH_AFTER seconds)."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport
        self._items: list[Any] = []
        self._timer: asyncio.TimerHandle | None = None

    def put(self, item: Any) -> None:
        self._items.append(item)
        if len(self._items) >= BATCH:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_AFTER, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._items and not self._transport.is_closing():
            self._transport.write(_frame(self._items))
        self._items = []


class _Forward(logging.Handler):
    """Every log record of the worker, sent to the parent (from any thread)."""

    def __init__(self, outbox: _Outbox, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._outbox = outbox
        self._loop = loop
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            trace = self.formatter or logging.Formatter()
            exc_text = trace.formatException(record.exc_info) if record.exc_info else None
            item = ("l", record.name, record.levelno, record.getMessage(), record.created, exc_text)
        except Exception:  # logging's rule: a broken record never breaks the program
            self.handleError(record)
            return
        if threading.get_ident() == self._thread:
            self._outbox.put(item)
        else:
            self._loop.call_soon_threadsafe(self._outbox.put, item)


class _Closed(asyncio.Protocol):
    """The result pipe's protocol: it only says when the pipe has closed."""

    def __init__(self) -> None:
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, _exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _child(results_fd: int) -> int:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(commands), os.fdopen(0, "rb", buffering=0)
    )
    transport, pipe = await loop.connect_write_pipe(
        _Closed, os.fdopen(results_fd, "wb", buffering=0)
    )
    outbox = _Outbox(transport)
    plan = await _read_frame(commands)
    if plan is None:  # the parent is gone, or stopped before sending anything
        return 0
    _log_to(outbox, loop, plan.levels)
    work = asyncio.create_task(_execute(plan, outbox))
    told = asyncio.create_task(_read_frame(commands))  # nothing more comes: only the end
    await asyncio.wait({work, told}, return_when=asyncio.FIRST_COMPLETED)
    if not work.done():  # stdin closed: the parent stops us (Ctrl-C) or has died
        work.cancel()
        await asyncio.wait({work}, timeout=STOP_GRACE / 2)
        return 0
    told.cancel()
    try:
        work.result()  # an unexpected error: its traceback on stderr, exit 1, the parent says so
    finally:
        outbox.flush()  # what finished is the parent's all the same
        transport.close()  # once what is buffered has been written
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pipe.closed, STOP_GRACE)
    return 0


def _log_to(outbox: _Outbox, loop: asyncio.AbstractEventLoop, levels: dict[str, int]) -> None:
    root = logging.getLogger()
    root.handlers[:] = [_Forward(outbox, loop)]
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)


async def _execute(plan: _Plan, outbox: _Outbox) -> None:
    """The worker's share of ``execute``: ``probe_host`` for each host, results to the parent."""
    session = ProbeSession(ssh.HostKeys(plan.config.ssh, plan.files), plan.files, plan.collector)
    positions = {host.name: position for position, host in enumerate(plan.hosts)}

    async def job(host: HostConfig) -> envelope.Message:
        return await probe_host(host, plan.config, plan.keys, session)

    def done(result: HostResult[envelope.Message]) -> None:
        position = positions[result.host.name]
        outcome = result.outcome.value
        outbox.put(("r", position, outcome, result.error, result.seconds, _pack(result.value)))

    await run_fleet(plan.hosts, job, concurrency=plan.concurrency, on_result=done)
