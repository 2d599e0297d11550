"""watch's persistent sessions: one SSH connection and one streaming probe per host.

A ``Session`` keeps its host connected for the whole watch: it connects
(ramped, so thousands of hosts starting at once never trip sshd's
MaxStartups), starts the streaming probe, and when either fails, reconnects
after a jittered exponential backoff.  The tick scheduler (``watch``) only
calls ``ask``: one fresh challenge in, one verified message out, or a
HostError saying why not; a host that is down answers at once with its reason.

State changes are logged once each (``[f4] connected``, ``[f4] lost: ...;
retrying in 4s``, ``[f4] back after 2m13s``), never per tick.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from netmetrix import envelope, oneshot, probe, ssh
from netmetrix.config import HostConfig, SSHConfig
from netmetrix.errors import EnvelopeError, HostError, Outcome
from netmetrix.fleet import REASON_LIMIT, HostResult, classify
from netmetrix.format import elapsed
from netmetrix.sanitize import clean
from netmetrix.ssh import ClientFiles, HostKeys

log = logging.getLogger(__name__)

FIRST_BACKOFF = 1.0  # seconds before the first reconnect
MAX_BACKOFF = 300.0  # and never more than this between tries
MIN_IDLE = 10.0  # seconds the probe waits for a request at least (3 intervals otherwise)
LATE_ANSWERS = 8  # challenges remembered, so that a late answer to one is dropped quietly
KEY_RECHECK = 60.0  # seconds between looks in the store for a host that has no key yet
CLOSE_GRACE = 3.0  # seconds to close every session at the end


def backoff(failures: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds before try ``failures`` + 1: doubling from 1 s to 5 min, each drawn
    from the upper half of its step so that hosts that failed together spread out."""
    step = min(MAX_BACKOFF, FIRST_BACKOFF * 2.0 ** min(max(0, failures - 1), 30))
    return max(FIRST_BACKOFF, step * (0.5 + rng() / 2))


class Ramp:
    """At most ``concurrency`` handshakes in flight, started at most ``rate`` a second."""

    def __init__(self, concurrency: int, rate: float) -> None:
        self._gate = asyncio.Semaphore(concurrency)
        self._gap = 1.0 / rate
        self._next = 0.0  # monotonic time of the next free start

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._gate:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._gap
            if start > now:
                await asyncio.sleep(start - now)
            yield


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What every session of one watch shares; a reload makes a new one."""

    ssh: SSHConfig
    script: str
    collector: str
    interval: float
    require_encryption: bool
    known: HostKeys
    files: ClientFiles

    @property
    def wait(self) -> float:
        """Seconds a tick waits for an answer: the interval, or the command timeout if less."""
        return min(self.interval, self.ssh.command_timeout)

    def request(self, challenge: str) -> bytes:
        """The probe's request line: the challenge, how long to wait for the next line
        (3 intervals, at least 10 s), its own deadline for this tick (as execute's)."""
        idle = max(MIN_IDLE, 3 * self.interval)
        deadline = oneshot.host_deadlines(self.ssh.command_timeout).probe
        return f"{challenge} {idle:g} {deadline:g}\n".encode("ascii")


KeyLoader = Callable[[str], Awaitable[dict[str, bytes]]]  # host name -> {kid: key}


class NotYet(Exception):
    """The host's first connection is still being made: it has no answer, nor a failure."""


class Session:
    """One host's connection and streaming probe, kept up by ``run`` until ``close``."""

    def __init__(self, host: HostConfig, plan: Plan, ramp: Ramp, load_keys: KeyLoader) -> None:
        self.host = host
        self.plan = plan
        self._ramp = ramp
        self._load_keys = load_keys
        self.keys: dict[str, bytes] = {}
        self.outcome = Outcome.ERROR
        self.reason = "connecting"
        self._stream: ssh.Stream | None = None
        self._failures = 0
        self._down_since: float | None = None  # monotonic; None while up or before the first try
        self._said: str | None = None  # the last failure logged, so that it is said once
        self._connected_once = False
        self._answered = False  # the current session has answered (the host is up)
        self._silenced: str | None = None  # why we closed a silent session
        self.tried = asyncio.Event()  # a first connection has succeeded or failed
        self._last_answer = 0.0
        self._task: asyncio.Task[None] | None = None
        self._asking = asyncio.Lock()  # one request on the stream at a time
        self._asked: collections.deque[str] = collections.deque(maxlen=LATE_ANSWERS)
        self.said_errors: tuple[str, ...] = ()  # what the probe could not read, as last logged

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def not_set_up(self) -> bool:
        return self.outcome is Outcome.NOT_SET_UP

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"session {self.name}")

    async def close(self) -> None:
        """Close the probe's stdin (it ends at once) and the connection; stop reconnecting."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    # ------------------------------------------------------------ one tick

    async def ask(self, challenge: str, seconds: float) -> envelope.Message:
        """This tick's verified message within ``seconds``, or a HostError (at once, with
        the host's reason, when it is down)."""
        stream = self._stream
        if stream is None and not self.tried.is_set():
            raise NotYet(self.name)
        if stream is None:
            # never OK without a stream: a session between tries is down
            outcome = Outcome.ERROR if self.outcome is Outcome.OK else self.outcome
            raise HostError(outcome, self.reason)
        if seconds <= 0:
            # A tick handed over after its deadline (a starved worker process): a request
            # now would be answered too late, and such requests pile up in the probe until
            # no answer is recent enough to be told from a replay.
            raise HostError(Outcome.TIMEOUT, f"no answer within {self.plan.wait:g}s")
        if self._asking.locked():  # the previous tick's ask is ending at this moment
            log.debug("[%s] waiting for the previous tick's answer to end", self.name)
        started = time.monotonic()
        async with self._asking:
            left = seconds - (time.monotonic() - started)
            return await self._ask(stream, challenge, max(0.001, left))

    async def _ask(self, stream: ssh.Stream, challenge: str, seconds: float) -> envelope.Message:
        deadline = time.monotonic() + seconds
        self._asked.append(challenge)
        try:
            stream.send(self.plan.request(challenge))
            while True:
                line = await stream.read_line(max(0.001, deadline - time.monotonic()))
                self._last_answer = time.monotonic()
                message = await self._open(line, challenge)
                if message is not None:
                    break
        except ssh.StreamEnded as exc:
            raise HostError(Outcome.ERROR, f"lost: {exc}") from exc
        except HostError as exc:
            self._check_silence(stream)
            if exc.outcome is Outcome.TIMEOUT:  # the tick's wait, not what was left of it
                raise HostError(exc.outcome, f"no answer within {self.plan.wait:g}s") from exc
            raise
        if not self._answered:
            self._answering()
        return message

    async def _open(self, line: str, challenge: str) -> envelope.Message | None:
        """The verified message; None for a late answer to an earlier tick's challenge
        (checked only when the line fails: a tick's own answer costs one opening)."""
        for attempt in range(2):
            try:
                return envelope.open_envelope(
                    line,
                    keys=self.keys,
                    host=self.name,
                    challenge=challenge,
                    require_encryption=self.plan.require_encryption,
                )
            except EnvelopeError as exc:
                claimed = envelope.challenge_of(line)
                if claimed != challenge and claimed in self._asked:
                    log.debug("[%s] dropped a late answer to an earlier tick", self.name)
                    return None
                if attempt or "unknown key" not in str(exc):
                    raise
                self.keys = await self._load_keys(self.name)  # an upload rotated it
        raise AssertionError("unreachable")

    def _check_silence(self, stream: ssh.Stream) -> None:
        """A probe silent for longer than the command timeout is lost: the connection
        is dead without saying so (a cable, a firewall), or the probe is stuck."""
        silent = time.monotonic() - self._last_answer
        if silent > max(self.plan.ssh.command_timeout, 3 * self.plan.interval):
            log.debug("[%s] silent for %.0fs: reconnecting", self.name, silent)
            self._silenced = f"no answer for {elapsed(silent)}"
            stream.close()

    # ------------------------------------------------------------ the connection's life

    async def _run(self) -> None:
        while True:
            try:
                self.keys = await self._load_keys(self.name)
                if not self.keys:
                    self._fail(HostError(Outcome.NOT_SET_UP, oneshot.NO_KEY), retry=KEY_RECHECK)
                    await asyncio.sleep(KEY_RECHECK)
                    continue
                async with contextlib.AsyncExitStack() as stack:
                    stream = await self._connect(stack)
                    self._connected(stream)
                    try:
                        done = await stream.ended()
                    finally:
                        self._stream = None
                        self.outcome, self.reason = Outcome.ERROR, "connection lost"
                        stream.close()
                    failure: Exception = self._ended(done)
            except Exception as exc:  # any: one host's failure stays its own, and is retried
                failure = exc
            delay = backoff(self._failures + 1)
            self._fail(failure, retry=delay)
            await asyncio.sleep(delay)

    async def _connect(self, stack: contextlib.AsyncExitStack) -> ssh.Stream:
        async with self._ramp.slot():
            conn = await stack.enter_async_context(
                ssh.connect(self.host, self.plan.ssh, self.plan.known, self.plan.files)
            )
        command = oneshot.watch_command(self.host, self.plan.script, collector=self.plan.collector)
        return await ssh.open_stream(conn, command)

    def _connected(self, stream: ssh.Stream) -> None:
        self._stream = stream
        self.tried.set()
        self._last_answer = time.monotonic()
        self._answered = False
        self._silenced = None

    def _answering(self) -> None:
        """The session's first verified answer: only now is the host up (a probe that
        cannot run, or answers what does not verify, is not)."""
        self._answered = True
        if self._down_since is not None and self._connected_once:
            log.info("[%s] back after %s", self.name, elapsed(time.monotonic() - self._down_since))
        else:
            log.info("[%s] connected", self.name)
        self._connected_once = True
        self._failures = 0
        self._down_since = None
        self._said = None
        self.outcome, self.reason = Outcome.OK, "connected"

    def _ended(self, done: ssh.Completed) -> HostError:
        """Why the streaming probe ended (it never ends by itself while we ask)."""
        if self._silenced is not None:
            return HostError(Outcome.TIMEOUT, self._silenced)
        if done.exit_status is None and done.exit_signal is None:
            return HostError(Outcome.ERROR, "connection lost")
        if done.exit_status == probe.EXIT_USAGE and "--watch" not in done.stderr:
            path = oneshot.remote_path(self.host, self.plan.script)
            return HostError(
                Outcome.PROBE_MISSING,
                f"probe {path} is from an older netmetrix (no streaming mode) — run upload",
            )
        try:
            oneshot.check_exit(self.host, self.plan.script, self.plan.collector, done)
        except HostError as exc:
            return exc
        tail = clean((done.stderr.strip().splitlines() or ["connection closed"])[-1], 200)
        return HostError(Outcome.ERROR, f"probe ended: {tail}")

    def _fail(self, failure: BaseException, *, retry: float) -> None:
        self.tried.set()
        was_up = self._answered
        self._answered = False
        outcome, reason = classify(failure)
        reason = clean(reason, 500)
        self.outcome, self.reason = outcome, reason
        self._failures += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
        said = f"{outcome}: {reason}"
        if said == self._said:
            log.debug("[%s] %s; retrying in %s", self.name, reason, elapsed(retry))
            return
        self._said = said
        if was_up:
            log.warning("[%s] lost: %s; retrying in %s", self.name, reason, elapsed(retry))
        elif outcome is Outcome.NOT_SET_UP:
            log.error(
                "[%s] not set up: %s — run netmetrix upload -h %s", self.name, reason, self.name
            )
        else:
            log.error("[%s] FAILED: %s; retrying in %s", self.name, reason, elapsed(retry))


# ---------------------------------------------------------------- every host's session

Answer = Callable[[HostResult[envelope.Message], float | None], None]  # result, latency if ok


class Sessions:
    """The sessions of one watch (of its process, or of one worker process: ``workers``).

    ``apply`` makes them those of a list of hosts; ``tick`` asks every one for
    this tick's answer and hands each to ``answer`` as it comes.
    """

    def __init__(self, ramp: Ramp, load_keys: KeyLoader) -> None:
        self._ramp = ramp
        self._load_keys = load_keys
        self._sessions: dict[str, Session] = {}
        self._closing: set[asyncio.Task[None]] = set()  # sessions a reload let go
        self._plan: Plan | None = None

    async def start(self) -> None:
        """Nothing to start: sessions start as ``apply`` makes them."""

    def names(self) -> list[str]:
        return list(self._sessions)

    def __len__(self) -> int:
        return len(self._sessions)

    def not_set_up(self) -> int:
        """Hosts that have no key in the store (never uploaded to)."""
        return sum(s.not_set_up for s in self._sessions.values())

    def keys(self) -> dict[str, dict[str, bytes]]:
        """Each host's keys as its session last loaded them: {kid: key}."""
        return {s.name: s.keys for s in self._sessions.values()}

    def apply(self, plan: Plan, hosts: Sequence[HostConfig]) -> None:
        """Make the sessions those of ``hosts``: new ones connect, gone ones close."""
        restart = self._plan is None or _connection_changed(self._plan, plan)
        self._plan = plan
        wanted = {h.name: h for h in hosts}
        for name, session in list(self._sessions.items()):
            if restart or not _same_host(wanted.get(name), session.host):
                closing = asyncio.create_task(session.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
                del self._sessions[name]
            else:
                session.plan = plan
        for name, host in wanted.items():
            if name not in self._sessions:
                session = Session(host, plan, self._ramp, self._load_keys)
                self._sessions[name] = session
                session.start()

    async def first_tries(self) -> None:
        """Return once every session has made its first try to connect."""
        for session in list(self._sessions.values()):
            await session.tried.wait()

    async def tick(self, scheduled: float, deadline: float, answer: Answer) -> None:
        """Ask every session for this tick's answer by ``deadline`` (monotonic)."""
        sessions = list(self._sessions.values())
        await asyncio.gather(*(self._one(s, scheduled, deadline, answer) for s in sessions))

    async def _one(
        self, session: Session, scheduled: float, deadline: float, answer: Answer
    ) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            message = await session.ask(envelope.new_challenge(), deadline - started)
        except NotYet:  # still making its first connection: no sample yet, not a failure
            return
        except Exception as exc:  # any: one host's failure stays its own
            outcome, reason = classify(exc)
            failed: HostResult[envelope.Message] = HostResult(
                host=session.host,
                outcome=outcome,
                error=clean(reason, REASON_LIMIT),
                seconds=loop.time() - started,
            )
            answer(failed, None)
            return
        _log_probe_errors(session, message)
        ok = HostResult(
            host=session.host,
            outcome=Outcome.OK,
            error=None,
            seconds=loop.time() - started,
            value=message,
        )
        answer(ok, loop.time() - scheduled)

    async def close(self) -> None:
        """Close every session (each probe ends on EOF), within ``CLOSE_GRACE``."""
        closing = [*(s.close() for s in self._sessions.values()), *self._closing]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*closing), CLOSE_GRACE)


def _same_host(new: HostConfig | None, old: HostConfig) -> bool:
    """Whether ``new`` reaches the host as ``old`` did (a moved line is no change)."""
    return new is not None and dataclasses.replace(new, line=old.line) == old


def _connection_changed(old: Plan, new: Plan) -> bool:
    """Whether open sessions must be reopened to follow ``new``."""
    return (old.ssh, old.script) != (new.ssh, new.script)


def _log_probe_errors(session: Session, message: envelope.Message) -> None:
    """What the probe could not read, logged when it changes rather than every tick."""
    if message.errors == session.said_errors:
        return
    session.said_errors = message.errors
    for problem in message.errors:
        log.warning("[%s] probe could not read %s", session.name, problem)
