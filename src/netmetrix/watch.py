"""``netmetrix watch``: every host sampled every interval, on persistent sessions.

One tick: a fresh challenge to every host's streaming probe (``sessions``),
answers awaited until the tick's deadline (the interval, or the command
timeout if shorter), then one transaction for all of them: samples, `up`
(0 for a host that did not answer in time or is down), alert state and
outbox mail (``collect.record_results``, as ``execute``).  The store is
written by one recorder task, in tick order; mail goes out in a thread of
its own, so a slow SMTP server never delays a tick, and so do the samples
queued for remote-write (``<remote_write>``): sent after every stored tick,
with an exponential backoff (1 s to 5 min) while the receiver fails.

SIGHUP re-reads config.xml (hosts added and removed, rules and interval from
the next tick; an invalid file is reported and the running one kept).  With
a shard (``--shard K/N`` or <collector shard>), only its hosts are watched.
SIGTERM and SIGINT stop it: in-flight answers get up to 5 s, what arrived is
stored, every session closed (each probe ends on EOF), exit 0.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import signal
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from netmetrix import collect, envelope, notify, ssh
from netmetrix.config import Config, HostConfig, RemoteWriteConfig, load_config
from netmetrix.errors import ConfigError, StoreError, UsageError
from netmetrix.fleet import HostResult
from netmetrix.format import elapsed
from netmetrix.sessions import CLOSE_GRACE, Answer, Plan, Ramp, Sessions
from netmetrix.shard import Shard, take
from netmetrix.store import Store, admin

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

    from netmetrix.remote_write import Pushed
    from netmetrix.web.app import Health

log = logging.getLogger(__name__)

SUMMARY_EVERY = 60.0  # seconds between summary lines
RETENTION_EVERY = 3600.0  # seconds between retention passes
DELIVERY_EVERY = 60.0  # seconds between delivery passes when no new mail wakes one
PUSH_EVERY = 60.0  # seconds between remote-write passes when no stored tick wakes one
STOP_GRACE = 5.0  # seconds in-flight answers get after SIGTERM/SIGINT
BEHIND = 10  # ticks waiting for the store before new ones are dropped


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchOptions:
    patterns: tuple[str, ...] = ()  # -h: only these hosts (names or globs)
    interval: float | None = None  # --interval: overrides <watch interval>
    ticks: int | None = None  # --ticks: stop after this many
    ssh_files: ssh.ClientFiles = ssh.USER_FILES
    listen: str | None = None  # --listen HOST:PORT: serve the web side from this process
    shard: Shard | None = None  # --shard K/N: overrides <collector shard>, reloads included
    workers: int = 1  # --workers: processes that hold the sessions (1: this one)


@dataclass(slots=True, kw_only=True)
class WatchReport:
    ticks: int = 0
    answers: int = 0  # verified answers stored, summed over the hosts and ticks
    samples: int = 0
    dropped: int = 0  # ticks the store could not take


class SessionPool(Protocol):
    """Every host's session: ``sessions.Sessions`` here, or ``workers.WatchPool`` in workers."""

    async def start(self) -> None: ...
    def names(self) -> list[str]: ...
    def __len__(self) -> int: ...
    def not_set_up(self) -> int: ...
    def keys(self) -> dict[str, dict[str, bytes]]: ...
    def apply(self, plan: Plan, hosts: Sequence[HostConfig]) -> None: ...
    async def first_tries(self) -> None: ...
    async def tick(self, scheduled: float, deadline: float, answer: Answer) -> None: ...
    async def close(self) -> None: ...


@dataclass(slots=True)
class _Tick:
    """One tick's answers, as they arrive."""

    scheduled: float  # monotonic
    results: dict[str, HostResult[envelope.Message]] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)  # host -> unix seconds


@dataclass(slots=True)
class _Minute:
    """What the summary line counts, reset every minute (nothing grows per tick)."""

    answers: int = 0  # hosts that answered a tick, summed over the ticks
    samples: int = 0
    latencies: list[float] = field(default_factory=list)


class Watcher:
    """The long-running collector; ``run`` until stopped (or ``ticks`` are done)."""

    def __init__(
        self,
        config: Config,
        store: Store,
        options: WatchOptions,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.options = options
        self.clock = clock
        self.report = WatchReport()
        self._sessions: SessionPool = Sessions(
            Ramp(config.concurrency, rate=max(10.0, config.concurrency)), self._host_keys
        )
        self._stop = asyncio.Event()
        self._reload = False
        self._queue: asyncio.Queue[_Tick | None] = asyncio.Queue()
        self._minute = _Minute()
        self._last: dict[str, bool] = {}  # host -> answered the last tick
        self._warned_unmatched = False
        self._mail = _Mailer(self)
        self._push = _Pusher(self)
        self._plan: Plan | None = None
        self._collector = ""
        self.health: Health | None = None  # with --listen: what /metrics says of the ticks
        self._app: Starlette | None = None  # with --listen: the web side it serves

    # ------------------------------------------------------------ control

    def stop(self) -> None:
        self._stop.set()

    def reload(self) -> None:
        self._reload = True

    @property
    def interval(self) -> float:
        return self._interval_of(self.config)

    # ------------------------------------------------------------ the run

    async def run(self) -> WatchReport:
        self._collector = await asyncio.to_thread(self.store.collector_id)
        self.config = self.config.with_shard(self.options.shard)
        hosts = self._chosen(self.config)
        if min(self.options.workers, len(hosts)) > 1:
            from netmetrix.workers import WatchPool  # only then: one process imports nothing

            self._sessions = WatchPool(
                min(self.options.workers, len(hosts)), self.config.concurrency, self._host_keys
            )
        await self._sessions.start()
        self._apply(self.config, hosts)
        web = self._web_server()
        recorder = asyncio.create_task(self._record_loop(), name="recorder")
        background = [
            asyncio.create_task(self._mail.loop(), name="mail"),
            asyncio.create_task(self._push.loop(), name="remote-write"),
            asyncio.create_task(self._summary_loop(), name="summary"),
        ]
        serving = asyncio.create_task(web.serve(), name="web") if web else None
        log.info(
            "watch: %d host(s) every %s; SIGHUP reloads %s, SIGTERM or Ctrl-C stops",
            len(self._sessions),
            elapsed(self.interval),
            self.config.path.name,
        )
        try:
            await self._tick_loop()
        finally:
            await self._queue.put(None)
            with contextlib.suppress(asyncio.CancelledError):
                await recorder
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if web is not None and serving is not None:
                web.should_exit = True  # ends its open connections gracefully
                await asyncio.wait([serving], timeout=CLOSE_GRACE)
            await self._close_all()
            await asyncio.gather(self._mail.close(CLOSE_GRACE), self._push.close(CLOSE_GRACE))
        log.info(
            "watch: stopped after %d tick(s); %s samples stored",
            self.report.ticks,
            f"{self.report.samples:,}",
        )
        return self.report

    def _web_server(self) -> uvicorn.Server | None:
        """``--listen``: the web side (``netmetrix serve``'s app) on this loop, fed the ticks'
        health; its start-up problems (a port in use) are said by uvicorn and end the watch."""
        if self.options.listen is None:
            return None
        from netmetrix.web.app import Health, create_app
        from netmetrix.web.auth import load_auth
        from netmetrix.web.server import listen_of, make_server

        where = listen_of(self.options.listen, "--listen")
        self.health = Health()
        auth = load_auth(self.config.web, self.config.path.name)
        app = create_app(self.config, self.store, auth=auth, health=self.health)
        self._app = app
        log.info("watch: serving %s", where.url(bool(self.config.web.tls_cert)))
        return make_server(app, where, self.config.web)

    async def _first_tries(self) -> None:
        """Give the first connections up to one interval before the first tick, so that
        it samples every host that can be reached rather than none."""

        waits = [
            asyncio.create_task(self._sessions.first_tries()),
            asyncio.create_task(self._stop.wait()),
        ]
        await asyncio.wait(waits, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        await self._first_tries()
        next_at = loop.time()
        inflight: set[asyncio.Task[None]] = set()
        while not self._stop.is_set():
            if self.options.ticks is not None and self.report.ticks >= self.options.ticks:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, next_at - loop.time()))
            if self._stop.is_set():
                break
            if self._reload:
                self._reload = False
                await self._reread()
            task = asyncio.create_task(self._tick(next_at))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            self.report.ticks += 1
            next_at = _next_tick(next_at, self.interval, loop.time())
        if inflight:
            # stopped: answers get a few seconds; the last of --ticks: its whole deadline
            grace = STOP_GRACE if self._stop.is_set() else self._plan_wait() + 1
            await asyncio.wait(inflight, timeout=grace)
            for task in inflight:
                task.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)

    def _plan_wait(self) -> float:
        assert self._plan is not None
        return self._plan.wait

    async def _tick(self, scheduled: float) -> None:
        tick = _Tick(scheduled)
        plan = self._plan
        assert plan is not None

        def answer(result: HostResult[envelope.Message], latency: float | None) -> None:
            if latency is not None:
                self._minute.latencies.append(latency)
            tick.results[result.host.name] = result
            tick.finished[result.host.name] = self.clock()

        try:
            await self._sessions.tick(scheduled, scheduled + plan.wait, answer)
        finally:  # cancelled at the stop: what arrived is stored all the same
            self._enqueue(tick)

    def _enqueue(self, tick: _Tick) -> None:
        if self._queue.qsize() >= BEHIND:
            self.report.dropped += 1
            log.error(
                "watch: the store is %d ticks behind; this tick's %d answer(s) are dropped",
                self._queue.qsize(),
                len(tick.results),
            )
            return
        self._queue.put_nowait(tick)

    # ------------------------------------------------------------ the store

    async def _record_loop(self) -> None:
        retention_at = 0.0
        while (tick := await self._queue.get()) is not None:
            await self._store_tick(tick)
            if time.monotonic() >= retention_at:
                retention_at = time.monotonic() + RETENTION_EVERY
                await asyncio.to_thread(
                    admin.apply_retention, self.store, self.config.retention.days
                )

    async def _store_tick(self, tick: _Tick) -> None:
        results = list(tick.results.values())
        if not results:
            return
        stored_keys = self._sessions.keys()
        try:
            results, recorded = await collect.record_results(
                self.config, self.store, results, tick.finished, stored_keys, self.clock
            )
        except StoreError as exc:
            self.report.dropped += 1
            log.error("watch: a tick of %d host(s) not stored: %s", len(results), exc)
            return
        self._note_health(tick, results)
        self.report.samples += recorded.samples
        self._minute.samples += recorded.samples
        answered = sum(r.ok for r in results)
        self._minute.answers += answered
        self.report.answers += answered
        self._last = {r.host.name: r.ok for r in results}
        if recorded.queued:
            self._mail.wake()
        if recorded.forwarded:
            self._push.wake()
        if not self._warned_unmatched and any(r.ok for r in results):
            self._warned_unmatched = True
            collect.warn_unmatched(self.config, results)

    def _note_health(self, tick: _Tick, results: Sequence[HostResult[envelope.Message]]) -> None:
        if self.health is None:
            return
        self.health.last_run = self.clock()
        self.health.last_duration = asyncio.get_running_loop().time() - tick.scheduled
        self.health.outcomes = dict(collections.Counter(r.outcome.value for r in results))

    # ------------------------------------------------------------ hosts and reloads

    def _apply(self, config: Config, hosts: Sequence[HostConfig]) -> None:
        """Make the sessions those of ``hosts``: new ones connect, gone ones close."""
        plan = self._plan_of(config)
        self.config, self._plan = config, plan
        self._sessions.apply(plan, hosts)

    def _plan_of(self, config: Config) -> Plan:
        return Plan(
            ssh=config.ssh,
            script=config.script,
            collector=self._collector,
            interval=self._interval_of(config),
            require_encryption=config.security.encryption == "required",
            known=ssh.HostKeys(config.ssh, self.options.ssh_files),
            files=self.options.ssh_files,
        )

    def _interval_of(self, config: Config) -> float:
        return self.options.interval or config.watch.interval

    async def _reread(self) -> None:
        path = self.config.path
        try:
            config = (await asyncio.to_thread(load_config, path)).with_shard(self.options.shard)
            hosts = self._chosen(config)
        except (ConfigError, UsageError) as exc:
            log.error("reload: %s", str(exc).replace("\n", "; "))
            log.error("reload: %s has problems; the running configuration is kept", path.name)
            return
        before = set(self._sessions.names())
        if config.database != self.config.database:
            log.warning("reload: <database> changed; it applies when watch is restarted")
            config = dataclasses.replace(config, database=self.config.database)
        self._apply(config, hosts)
        if self._app is not None:  # --listen: the pages, API and /metrics follow the reload
            self._app.state.nmx = dataclasses.replace(self._app.state.nmx, config=config)
        after = set(self._sessions.names())
        added, removed = after - before, before - after
        log.info(
            "reload: %s read; %d host(s), %d added, %d removed, every %s",
            path.name,
            len(self._sessions),
            len(added),
            len(removed),
            elapsed(self.interval),
        )

    def _chosen(self, config: Config) -> tuple[HostConfig, ...]:
        """The hosts to watch: ``-h``'s in this collector's shard; UsageError for none."""
        patterns, shard = self.options.patterns, config.collector.shard
        where = config.shard_source(self.options.shard is not None)
        return take(config.select(patterns), shard, where=where, selected=bool(patterns))

    async def _host_keys(self, name: str) -> dict[str, bytes]:
        keys = await asyncio.to_thread(self.store.host_keys, [name])
        return keys.get(name, {})

    async def _close_all(self) -> None:
        await self._sessions.close()

    # ------------------------------------------------------------ the summary

    async def _summary_loop(self) -> None:
        while True:
            await asyncio.sleep(SUMMARY_EVERY)
            log.info("%s", self.summary_line())
            self._minute = _Minute()

    def summary_line(self) -> str:
        """``watch: 200 hosts, 198 up, 2 down, 1,188 answers/min, 47,520 samples/min,
        tick p50 0.080s p95 0.210s``: the last tick's hosts, the last minute's counts, and
        how long after its scheduled start each answer came."""
        hosts = len(self._sessions)
        not_set_up = self._sessions.not_set_up()
        up = sum(self._last.get(name, False) for name in self._sessions.names())
        parts = [f"watch: {hosts:,} hosts", f"{up:,} up", f"{hosts - up - not_set_up:,} down"]
        if not_set_up:
            parts.append(f"{not_set_up:,} not set up")
        parts.append(f"{self._minute.answers:,} answers/min")
        parts.append(f"{self._minute.samples:,} samples/min")
        line = ", ".join(parts)
        latencies = self._minute.latencies
        if latencies:
            p50, p95 = _percentile(latencies, 50), _percentile(latencies, 95)
            # milliseconds: a persistent session answers in a few of them
            line += f", tick p50 {p50:.3f}s p95 {p95:.3f}s"
        return line


def _next_tick(previous: float, interval: float, now: float) -> float:
    """The tick after ``previous``; ticks already missed (a stalled loop) are skipped."""
    following = previous + interval
    if following >= now:
        return following
    missed = int((now - following) // interval) + 1
    log.warning("watch: %d tick(s) skipped: the collector fell behind", missed)
    return following + missed * interval


def _percentile(values: list[float], pct: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


class _Passes:
    """Passes run one at a time in daemon threads, so that a slow receiver delays no tick.
    A stop lets the pass in flight finish for a moment (its store connection closes and its
    claims are released), then leaves what it had not sent queued for the next run."""

    def __init__(self) -> None:
        self._running: asyncio.Future[Any] | None = None

    def _start(self, name: str, target: Callable[..., None], *args: Any) -> asyncio.Future[Any]:
        """Run ``target(*args, loop, finished)`` in a thread; it settles ``finished``."""
        loop = asyncio.get_running_loop()
        self._running = finished = loop.create_future()
        thread = threading.Thread(target=target, args=(*args, loop, finished), name=name)
        thread.daemon = True
        thread.start()
        return finished

    async def close(self, grace: float) -> None:
        """Stop: the pass in flight gets ``grace`` seconds to finish."""
        running = self._running
        if running is not None and not running.done():
            await asyncio.wait([running], timeout=grace)


class _Mailer(_Passes):
    """Mail and the other receivers' deliveries, a pass at a time in a daemon thread."""

    def __init__(self, watcher: Watcher) -> None:
        super().__init__()
        self._watcher = watcher
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), DELIVERY_EVERY)
            self._wake.clear()
            # cancelled (stopping): close() waits for the pass in flight
            await asyncio.shield(self._start("netmetrix-mail", self._deliver))

    def _deliver(self, loop: asyncio.AbstractEventLoop, finished: asyncio.Future[None]) -> None:
        watcher = self._watcher
        try:
            delivery = notify.deliver_all(watcher.store, watcher.config, clock=watcher.clock)
            for line in delivery.problems("watch"):
                log.warning("%s", line)
        except Exception:  # a bug here must not end the watch: said, retried next pass
            log.exception("watch: mail delivery failed")
        finally:
            with contextlib.suppress(RuntimeError):  # the loop has closed: we are stopping
                loop.call_soon_threadsafe(_settle, finished)


class _Pusher(_Passes):
    """Remote-write passes in a daemon thread of their own, woken by every stored tick:
    a slow or down receiver delays no tick.  Failed passes back off exponentially
    (``remote_write.backoff``, or the receiver's Retry-After when longer); a stop
    lets the batch in flight finish for a moment, then leaves it queued."""

    def __init__(self, watcher: Watcher) -> None:
        super().__init__()
        self._watcher = watcher
        self._wake = asyncio.Event()
        self._stop = threading.Event()  # checked by the pass between two batches
        self._failures = 0

    def wake(self) -> None:
        self._wake.set()

    async def loop(self) -> None:
        wait = 0.0
        while True:
            if wait:  # backing off: a stored tick does not cut it short
                await asyncio.sleep(wait)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), PUSH_EVERY)
            self._wake.clear()
            config = self._watcher.config.remote_write  # SIGHUP may add or remove it
            wait = 0.0 if config is None else self._next_wait(await self._pass(config))

    def _next_wait(self, pushed: Pushed | None) -> float:
        """Seconds to wait before the next pass (0: when woken)."""
        from netmetrix.remote_write import BACKOFF_MAX, backoff

        if pushed is None or pushed.failed:
            self._failures += 1
            retry = min(pushed.retry_after or 0.0, BACKOFF_MAX) if pushed is not None else 0.0
            return max(backoff(self._failures), retry)
        if self._failures and pushed.sent:
            log.info("remote-write: %s takes samples again", pushed.where)
        self._failures = 0
        if pushed.backlog and not pushed.busy:
            self._wake.set()  # the deadline ended the pass: go on with the rest
        return 0.0

    async def _pass(self, config: RemoteWriteConfig) -> Pushed | None:
        finished = self._start("netmetrix-remote-write", self._send, config)
        result: Pushed | None = await asyncio.shield(finished)  # cancelled: close() waits
        return result

    def _send(
        self,
        config: RemoteWriteConfig,
        loop: asyncio.AbstractEventLoop,
        finished: asyncio.Future[Pushed | None],
    ) -> None:
        from netmetrix import remote_write  # protobuf is loaded only when it is configured

        watcher, pushed = self._watcher, None
        try:
            labels = {h.name: h.labels for h in watcher.config.hosts if h.labels}
            pushed = remote_write.send(
                watcher.store, config, clock=watcher.clock, stop=self._stop, host_labels=labels
            )
        except Exception:  # a bug or a store error must not end the watch: said, retried
            log.exception("watch: remote-write failed")
        finally:
            with contextlib.suppress(RuntimeError):  # the loop has closed: we are stopping
                loop.call_soon_threadsafe(_settle, finished, pushed)

    async def close(self, grace: float) -> None:
        """Stop: the batch in flight gets ``grace`` seconds to finish and release the lease."""
        self._stop.set()
        await super().close(grace)


def _settle(future: asyncio.Future[Any], result: Any = None) -> None:
    if not future.done():
        future.set_result(result)


def run_watch(config: Config, store: Store, options: WatchOptions) -> WatchReport:
    """Run ``watch`` until SIGTERM, SIGINT or ``options.ticks``; signals are ours meanwhile."""

    async def main() -> WatchReport:
        watcher = Watcher(config, store, options)
        loop = asyncio.get_running_loop()
        handled = threading.current_thread() is threading.main_thread()
        if handled:  # only the main thread may; elsewhere --ticks ends it
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, _stopping, watcher, sig)
            loop.add_signal_handler(signal.SIGHUP, watcher.reload)
        try:
            return await watcher.run()
        finally:
            if handled:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)

    return asyncio.run(main())


def _stopping(watcher: Watcher, sig: signal.Signals) -> None:
    log.info("watch: %s: stopping", sig.name)
    watcher.stop()
