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
  only this module, ``oneshot``, ``ssh`` and ``envelope`` (no store): its
  start costs 0.47-0.57 s of CPU on the 2-core test machine (``import
  netmetrix.workers``, against 0.9 s for ``collect``), so workers pay off
  from a few hundred hosts; then it reads its plan, pickled, from its stdin:
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

``watch`` with N workers (``WatchPool``): each worker holds the
``sessions.Sessions`` of its hosts.  The parent sends it ``apply`` (the plan
and its hosts: at the start and on every reload) and every tick (its scheduled
time and deadline, both monotonic: one clock for every process of the
machine); the worker streams back each host's answer, then that it is done
with the tick.  The sessions' key lookups go to the parent, which reads the
store.  New hosts go to the worker with the fewest, so that a reload moves no
open session; a worker that dies is started again after a backoff
(``sessions.backoff``), its hosts failing every tick until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import itertools
import logging
import os
import pickle
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from netmetrix import envelope, ssh
from netmetrix.checks import CheckReport
from netmetrix.config import Config, HostConfig, SSHConfig
from netmetrix.errors import Outcome
from netmetrix.fleet import HostResult, run_fleet
from netmetrix.format import elapsed
from netmetrix.model import Sample
from netmetrix.oneshot import ProbeSession, probe_host
from netmetrix.sessions import Answer, KeyLoader, Plan, Ramp, Sessions, backoff
from netmetrix.ssh import ClientFiles, HostKeys

log = logging.getLogger(__name__)

BATCH = 64  # results in one frame at most
FLUSH_AFTER = 0.02  # seconds a result waits for others to share its frame
STOP_GRACE = 5.0  # seconds a worker gets to end once told, before SIGKILL
MARK = "netmetrix-worker"  # on every worker's command line, before its number (ps shows it)
# SIGINT ignored first: a worker stops when the parent says so, never with a traceback.
# SIGTTOU too: in a session of its own, a worker writing to the terminal (a traceback)
# would otherwise be stopped under `stty tostop`, and the run would wait for it.
_BOOT = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "signal.signal(signal.SIGTTOU, signal.SIG_IGN); "
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
    """Worker ``number``'s (1-based) part of ``concurrency``: the parts add up to it, but
    none is less than 1."""
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
    files: ClientFiles
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


Packed = tuple[
    str, bool, str, tuple[tuple[str, Any, float], ...], tuple[str, ...], tuple[CheckReport, ...]
]


def _pack(message: envelope.Message | None) -> Packed | None:
    if message is None:
        return None
    samples = tuple((s.metric, s.labels, s.value) for s in message.samples)
    return (
        message.kid,
        message.encrypted,
        message.probe_version,
        samples,
        message.errors,
        message.checks,
    )


def _unpack(packed: Packed | None) -> envelope.Message | None:
    if packed is None:
        return None
    kid, encrypted, version, samples, errors, checks = packed
    return envelope.Message(
        kid=kid,
        encrypted=encrypted,
        probe_version=version,
        samples=tuple([Sample(metric=m, labels=labels, value=v) for m, labels, v in samples]),
        errors=errors,
        checks=checks,
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
        self.ended = False  # its output has ended: it has died or is ending

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

    @property
    def alive(self) -> bool:
        return self.process.returncode is None and not self.ended

    async def send(self, item: Any) -> None:
        self.write(item)
        assert self.process.stdin is not None
        await self.process.stdin.drain()

    def write(self, item: Any) -> None:
        """Send ``item`` without waiting for the pipe (nothing, once it has ended)."""
        if self.alive and self.process.stdin is not None:
            self.process.stdin.write(_frame(item))

    async def items(self) -> AsyncIterator[Any]:
        """What the worker sends, item by item, until its output ends."""
        assert self.process.stdout is not None
        while (batch := await _read_frame(self.process.stdout)) is not None:
            for item in batch:
                yield item
        self.ended = True

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
        await worker.send(("execute", plan))
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
    first = await _read_frame(commands)
    if first is None:  # the parent is gone, or stopped before sending anything
        return 0
    kind, plan = first
    _log_to(outbox, loop, plan.levels)
    try:
        if kind == "watch":
            await _watch(plan, commands, outbox)  # until its stdin closes
        else:
            await _execute_until_told(plan, commands, outbox)
    finally:  # an unexpected error: its traceback on stderr, exit 1, the parent says so
        outbox.flush()  # what finished is the parent's all the same
        transport.close()  # once what is buffered has been written
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pipe.closed, STOP_GRACE)
    return 0


async def _execute_until_told(plan: _Plan, commands: asyncio.StreamReader, outbox: _Outbox) -> None:
    """``_execute``, unless the parent stops it first by closing our stdin."""
    work = asyncio.create_task(_execute(plan, outbox))
    told = asyncio.create_task(_read_frame(commands))  # nothing more comes: only the end
    await asyncio.wait({work, told}, return_when=asyncio.FIRST_COMPLETED)
    if not work.done():  # the parent stops us (Ctrl-C) or has died
        work.cancel()
        await asyncio.wait({work}, timeout=STOP_GRACE / 2)
        return
    told.cancel()
    work.result()


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


# ---------------------------------------------------------------- watch


TICK_SLACK = 5.0  # seconds past a tick's deadline the parent waits for a worker's last answers


@dataclass(frozen=True, slots=True, kw_only=True)
class _WatchSetup:
    """What a watch worker is started with; its hosts come with each ``apply``."""

    number: int
    concurrency: int  # its share of <concurrency>: handshakes in flight
    rate: float  # handshakes it starts a second, at most
    levels: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Spec:
    """A ``sessions.Plan`` without its known host keys, which a worker reads itself."""

    ssh: SSHConfig
    script: str
    collector: str
    interval: float
    require_encryption: bool
    files: ClientFiles

    @classmethod
    def of(cls, plan: Plan) -> _Spec:
        return cls(
            ssh=plan.ssh,
            script=plan.script,
            collector=plan.collector,
            interval=plan.interval,
            require_encryption=plan.require_encryption,
            files=plan.files,
        )

    def plan(self) -> Plan:
        return Plan(
            ssh=self.ssh,
            script=self.script,
            collector=self.collector,
            interval=self.interval,
            require_encryption=self.require_encryption,
            known=HostKeys(self.ssh, self.files),
            files=self.files,
        )


@dataclass(slots=True)
class _Asked:
    """One tick, from the parent's side: who has yet to say it is done."""

    answer: Answer
    waiting: set[int]  # workers
    answered: set[str] = field(default_factory=set)  # hosts
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def finished(self, number: int) -> None:
        self.waiting.discard(number)
        if not self.waiting:
            self.done.set()


class WatchPool:
    """watch's sessions in ``count`` worker processes (a ``watch.SessionPool``).

    The parent deals the hosts (each new one to the worker with the fewest, so
    that a reload moves no session), sends every ``apply`` and tick to every
    worker, hands each answer to the tick's ``answer`` and serves the workers'
    key lookups from the store (``load_keys``).  A worker that dies fails its
    hosts every tick until it is started again, after a backoff.
    """

    def __init__(self, count: int, concurrency: int, load_keys: KeyLoader) -> None:
        self._count = count
        self._concurrency = concurrency
        self._load_keys = load_keys
        self._workers: dict[int, _Worker] = {}
        self._owner: dict[str, int] = {}  # host -> the number of the worker that holds it
        self._hosts: dict[str, HostConfig] = {}
        self._keys: dict[str, dict[str, bytes]] = {}  # as last sent to the workers
        self._not_set_up: dict[int, int] = {}  # worker -> its hosts without a key, last tick
        self._ready: dict[int, asyncio.Event] = {}
        self._asked: dict[int, _Asked] = {}  # tick id -> what it waits for
        self._tick_ids = itertools.count(1)
        self._spec: _Spec | None = None
        self._died: dict[int, str] = {}  # worker -> why its hosts fail
        self._deaths: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    async def start(self) -> None:
        for number in range(1, self._count + 1):
            await self._spawn(number)

    async def _spawn(self, number: int) -> None:
        worker = await _Worker.start(number)
        rate = max(10.0, self._concurrency) / self._count
        setup = _WatchSetup(
            number=number,
            concurrency=share(self._concurrency, self._count, number),
            rate=rate,
            levels=_levels(),
        )
        self._workers[number] = worker
        self._ready[number] = asyncio.Event()
        worker.write(("watch", setup))
        if self._spec is not None:  # started again: it takes up its hosts
            worker.write(("apply", self._spec, self._share(number)))
        self._background(self._listen(worker))

    def _background(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def names(self) -> list[str]:
        return list(self._owner)

    def __len__(self) -> int:
        return len(self._owner)

    def not_set_up(self) -> int:
        return sum(self._not_set_up.values())

    def keys(self) -> dict[str, dict[str, bytes]]:
        return {name: self._keys[name] for name in self._owner if name in self._keys}

    def _share(self, number: int) -> list[HostConfig]:
        return [self._hosts[name] for name, owner in self._owner.items() if owner == number]

    def apply(self, plan: Plan, hosts: Sequence[HostConfig]) -> None:
        """Deal new hosts, drop gone ones; every worker gets its list and the plan."""
        wanted = {h.name: h for h in hosts}
        for name in [n for n in self._owner if n not in wanted]:
            del self._owner[name]
            self._keys.pop(name, None)
        load = {number: 0 for number in self._workers}
        for owner in self._owner.values():
            load[owner] += 1
        for name in wanted:
            if name not in self._owner:
                number = min(load, key=lambda n: (load[n], n))
                self._owner[name] = number
                load[number] += 1
        self._hosts = wanted
        self._spec = _Spec.of(plan)
        for number, worker in self._workers.items():
            worker.write(("apply", self._spec, self._share(number)))

    async def first_tries(self) -> None:
        for event in list(self._ready.values()):
            await event.wait()

    async def tick(self, scheduled: float, deadline: float, answer: Answer) -> None:
        tick_id = next(self._tick_ids)
        asked = _Asked(answer, waiting=set(self._workers))
        self._asked[tick_id] = asked
        try:
            for number, worker in list(self._workers.items()):
                if worker.alive:
                    worker.write(("tick", tick_id, scheduled, deadline))
                else:
                    self._fail(asked, number)
            left = deadline - asyncio.get_running_loop().time() + TICK_SLACK
            with contextlib.suppress(TimeoutError):  # a stuck worker: its hosts go without
                await asyncio.wait_for(asked.done.wait(), max(0.0, left))
        finally:
            del self._asked[tick_id]

    def _fail(self, asked: _Asked, number: int) -> None:
        """A dead worker's hosts, that have not answered this tick, fail it."""
        reason = self._died.get(number, f"collector worker {number} is not running")
        for name, owner in self._owner.items():
            if owner == number and name not in asked.answered:
                failed: HostResult[envelope.Message] = HostResult(
                    host=self._hosts[name], outcome=Outcome.ERROR, error=reason, seconds=0.0
                )
                asked.answer(failed, None)
        asked.finished(number)

    async def _listen(self, worker: _Worker) -> None:
        """Take what ``worker`` sends until it ends; then, unless we stop, start it again."""
        async for item in worker.items():
            self._take(worker, item)
        code = await worker.process.wait()
        if self._closing:
            return
        number = worker.number
        self._died[number] = worker.died(code)
        self._deaths[number] = self._deaths.get(number, 0) + 1
        delay = backoff(self._deaths[number])
        log.error(
            "%s; its hosts fail until it starts again in %s", worker.died(code), elapsed(delay)
        )
        self._ready[number].set()  # the first tick waits for it no longer
        self._not_set_up.pop(number, None)
        for asked in list(self._asked.values()):
            if number in asked.waiting:
                self._fail(asked, number)
        await asyncio.sleep(delay)
        if not self._closing:
            await self._spawn(number)

    def _take(self, worker: _Worker, item: tuple[Any, ...]) -> None:
        """One item from a worker: an answer, a tick done, a key lookup, ready, a log record."""
        kind, number = item[0], worker.number
        if kind == "a":
            self._answered(item)
        elif kind == "t":
            _, tick_id, not_set_up = item
            self._not_set_up[number] = not_set_up
            if tick_id in self._asked:
                self._asked[tick_id].finished(number)
        elif kind == "k":
            self._background(self._send_keys(worker, item[1]))
        elif kind == "ready":
            self._ready[number].set()
        elif kind == "l":
            _relog(item, number)

    def _answered(self, item: tuple[Any, ...]) -> None:
        _, tick_id, name, outcome, error, seconds, packed, latency = item
        asked = self._asked.get(tick_id)
        host = self._hosts.get(name)
        if asked is None or host is None:  # a tick given up on, a host a reload removed
            return
        asked.answered.add(name)
        result: HostResult[envelope.Message] = HostResult(
            host=host, outcome=Outcome(outcome), error=error, seconds=seconds, value=_unpack(packed)
        )
        asked.answer(result, latency)

    async def _send_keys(self, worker: _Worker, name: str) -> None:
        keys = await self._load_keys(name)
        if name in self._owner:
            self._keys[name] = keys
        worker.write(("keys", name, keys))

    async def close(self) -> None:
        """Stop every worker: each closes its sessions (each probe ends on EOF)."""
        self._closing = True
        await asyncio.gather(*(worker.stop() for worker in self._workers.values()))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _watch(setup: _WatchSetup, commands: asyncio.StreamReader, outbox: _Outbox) -> None:
    """A watch worker: its hosts' sessions, ticks as the parent asks, until its stdin closes."""
    worker = _WatchWorker(setup, outbox)
    try:
        while (item := await _read_frame(commands)) is not None:
            worker.take(item)
    finally:  # the parent stops us (or has died): close every session
        await worker.close()


class _WatchWorker:
    """A watch worker's sessions, and what it does with each command of the parent's."""

    def __init__(self, setup: _WatchSetup, outbox: _Outbox) -> None:
        self._outbox = outbox
        self._waiting: dict[str, list[asyncio.Future[dict[str, bytes]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sessions = Sessions(Ramp(setup.concurrency, rate=setup.rate), self._load_keys)
        self._applied = False

    def take(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "apply":
            _, spec, hosts = item
            self._sessions.apply(spec.plan(), hosts)
            if not self._applied:
                self._applied = True
                self._background(self._ready())
        elif kind == "tick":
            self._background(self._tick(*item[1:]))
        elif kind == "keys":
            _, name, keys = item
            for future in self._waiting.pop(name, []):
                if not future.done():
                    future.set_result(keys)

    def _background(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load_keys(self, name: str) -> dict[str, bytes]:
        """The host's keys, as the parent reads them from the store."""
        future: asyncio.Future[dict[str, bytes]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(name, []).append(future)
        self._outbox.put(("k", name))  # in the next frame: a watch's start asks for every host
        return await future

    async def _ready(self) -> None:
        await self._sessions.first_tries()
        self._outbox.put(("ready",))
        self._outbox.flush()

    async def _tick(self, tick_id: int, scheduled: float, deadline: float) -> None:
        outbox = self._outbox

        def answer(result: HostResult[envelope.Message], latency: float | None) -> None:
            name, outcome = result.host.name, result.outcome.value
            packed = _pack(result.value)
            outbox.put(("a", tick_id, name, outcome, result.error, result.seconds, packed, latency))

        try:
            await self._sessions.tick(scheduled, deadline, answer)
        finally:
            outbox.put(("t", tick_id, self._sessions.not_set_up()))
            outbox.flush()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._sessions.close()
