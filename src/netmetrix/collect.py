"""The two fleet jobs: ``upload`` (probe + fresh key) and ``execute`` (run, verify, store).

``run_upload`` and ``run_execute`` run one job the way the CLI and the demo
both do: the fan-out on an event loop of its own, then (execute) the outbox's
delivery in the calling thread, where Ctrl-C can stop it; each returns a
report of what happened and says its end-of-run lines through ``say``.

Key rotation is ordered so that no crash leaves a host whose remote key the
store does not hold: the new key is stored as *pending* before it is sent, the
remote key file is replaced atomically, and only then is the key made *active*
(dropping the old one).  A crash in between leaves both keys in the store;
``execute`` accepts either and promotes the pending key the first time the
host uses it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import shlex
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from netmetrix import alerts, checks, envelope, notify, pipeline, probe, shprobe, ssh
from netmetrix.config import Config, HostConfig
from netmetrix.errors import Outcome, StoreError
from netmetrix.fleet import HostResult, Summary, fan_out, run_fleet, summarize
from netmetrix.format import count, number, series_name, some
from netmetrix.model import HostRun
from netmetrix.oneshot import ProbeSession, host_script, probe_host, remote_path
from netmetrix.sanitize import clean
from netmetrix.store import Refused, Store, admin

if TYPE_CHECKING:
    from netmetrix.remote_write import Pushed

log = logging.getLogger(__name__)

T = TypeVar("T")
Progress = Callable[[HostResult[Any]], None]
Say = Callable[[str], None]  # where a job's end-of-run lines go (stderr, in the CLI)
INTERRUPTED = "interrupted"  # a host's last_error when Ctrl-C stopped its run
_HINT_HOSTS = 10  # hosts named in the not-set-up hint


def probe_source() -> bytes:
    """The probe file exactly as it ships in the package."""
    return resources.files("netmetrix").joinpath("probe.py").read_bytes()


def _log_failure(result: HostResult[Any]) -> None:
    log.error("[%s] FAILED: %s", result.host.name, result.error)


# ---------------------------------------------------------------- reports and jobs


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetReport(Generic[T]):
    """What one fleet job did, host by host."""

    results: tuple[HostResult[T], ...]  # in the order of the hosts given
    seconds: float  # wall time of the fan-out (and, for execute, of the writes)

    @property
    def summary(self) -> Summary:
        """Counts by outcome, per-host times, the failed hosts: ``summary.line(verb)``."""
        return summarize(self.results, self.seconds)

    @property
    def ok(self) -> bool:
        """Every host succeeded."""
        return self.summary.all_ok


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadReport(FleetReport[str]):
    """What one ``upload`` did: each result's value says how (sftp, or exec without it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecuteReport(FleetReport[int]):
    """What one ``execute`` did: host by host, in the store, in the outbox, at the SMTP server.

    Each result's value is the number of samples its host's answer brought (None
    when it failed): the answers themselves are dropped once stored.  A host
    whose data the store refused is a failed result.
    """

    recorded: pipeline.Recorded  # samples stored, alert events, mails queued
    delivery: notify.Delivery | None = None  # None until delivered (``run_execute`` does)
    pushed: Pushed | None = None  # the remote-write pass; None without <remote_write>

    @property
    def queued(self) -> int:
        """Mails this run put in the outbox (one per recipient of an alert event)."""
        return self.recorded.queued

    @property
    def undelivered(self) -> bool:
        """Some mail is still in the outbox, or was refused for good, after this run's pass."""
        return self.delivery is not None and not self.delivery.ok

    @property
    def ok(self) -> bool:
        """Every host answered and verified, and the outbox pass left nothing undelivered."""
        return self.summary.all_ok and not self.undelivered


def _ignore(_line: str) -> None:
    """``say`` for a caller that does not want the end-of-run lines."""


def _say_summary(verb: str, report: FleetReport[Any], config: Config, say: Say) -> None:
    """The run's summary line, then how to set up the hosts that are not."""
    say(report.summary.line(verb))
    hint = setup_hint(report.results, config)
    if hint is not None:
        say(f"{verb}: {hint}")


def run_upload(
    config: Config,
    store: Store,
    hosts: Sequence[HostConfig],
    *,
    progress: Progress | None = None,
    ssh_files: ssh.ClientFiles = ssh.USER_FILES,
    say: Say = _ignore,
) -> UploadReport:
    """``upload`` to ``hosts``, start to end: the run summary and any setup hint go to ``say``."""
    started = time.monotonic()
    results = asyncio.run(upload(config, store, hosts, progress=progress, ssh_files=ssh_files))
    report = UploadReport(results=tuple(results), seconds=time.monotonic() - started)
    _say_summary("upload", report, config, say)
    return report


def run_execute(
    config: Config,
    store: Store,
    hosts: Sequence[HostConfig],
    *,
    progress: Progress | None = None,
    ssh_files: ssh.ClientFiles = ssh.USER_FILES,
    say: Say = _ignore,
    clock: Callable[[], float] = time.time,
    workers: int = 1,
) -> ExecuteReport:
    """``execute`` on ``hosts``, then one delivery pass over the outbox, then (with
    ``<remote_write>``) one send pass over the remote-write queue.

    The run summary goes to ``say`` as soon as the hosts are stored, before the
    mail is sent; then a line per kind of mail left undelivered, and one when
    samples stay queued for remote-write (which never changes the exit status:
    they are sent by a later run).  Both passes are blocking and run here, after
    the event loop has ended, so that Ctrl-C interrupts them (the mail or batch
    being sent stays queued).  ``workers``: processes that run the hosts
    (``config.parse_workers`` reads ``auto``); 1 is this one.
    """
    report = asyncio.run(
        execute(
            config,
            store,
            hosts,
            progress=progress,
            ssh_files=ssh_files,
            clock=clock,
            workers=workers,
        )
    )
    _say_summary("execute", report, config, say)
    delivery = notify.deliver_all(store, config, clock=clock)
    for line in delivery.problems("execute"):
        say(line)
    pushed = push_samples(config, store, clock)
    for line in pushed.problems("execute") if pushed is not None else ():
        say(line)
    return dataclasses.replace(report, delivery=delivery, pushed=pushed)


def push_samples(config: Config, store: Store, clock: Callable[[], float]) -> Pushed | None:
    """One remote-write send pass (``remote_write.send``); None without <remote_write>."""
    if config.remote_write is None:
        return None
    from netmetrix import remote_write  # protobuf is loaded only when it is configured

    labels = {host.name: host.labels for host in config.hosts if host.labels}
    pushed = remote_write.send(store, config.remote_write, clock=clock, host_labels=labels)
    if pushed.sent:
        log.info("remote-write: %s sent to %s", count(pushed.sent, "sample"), pushed.where)
    return pushed


Job = Callable[..., FleetReport[Any]]
# The jobs by the verb that names them, as the CLI and the demo run them.
JOBS: Mapping[str, Job] = {"upload": run_upload, "execute": run_execute}


# ---------------------------------------------------------------- upload


async def upload(
    config: Config,
    store: Store,
    hosts: Sequence[HostConfig],
    *,
    progress: Progress | None = None,
    ssh_files: ssh.ClientFiles = ssh.USER_FILES,
) -> list[HostResult[str]]:
    """Put the probe and a fresh per-host key on every host.

    One upload per store at a time (``Store.upload_lock``; UploadRunning
    otherwise): two at once would each store keys that the other then
    overwrites on the hosts.  The key file is named after the store's
    collector id, so other collectors' keys on the same host stay untouched.
    ``ssh_files``: the OpenSSH client files to honour (the user's by default).
    """
    with store.upload_lock():
        return await _upload(config, store, hosts, progress, ssh_files)


async def _upload(
    config: Config,
    store: Store,
    hosts: Sequence[HostConfig],
    progress: Progress | None,
    ssh_files: ssh.ClientFiles,
) -> list[HostResult[str]]:
    new_keys = {h.name: envelope.new_key() for h in hosts}
    collector = store.collector_id()
    # Pending first: see the module docstring.
    store.add_pending_keys([(name, envelope.key_id(k), k) for name, k in new_keys.items()])
    known = ssh.HostKeys(config.ssh, ssh_files)
    sources = {"python": probe_source(), "sh": shprobe.source()}

    async def job(host: HostConfig) -> str:
        files = _probe_files(config, host, new_keys[host.name], collector, sources[host.probe])
        async with ssh.connect(host, config.ssh, known, ssh_files) as conn:
            return await ssh.upload(conn, host.directory, files, seconds=config.ssh.command_timeout)

    def done(result: HostResult[str]) -> None:
        if result.ok:
            path = remote_path(result.host, config.script)
            log.info(
                "[%s] SUCCESS! Script `%s` uploaded (%s)", result.host.name, path, result.value
            )
        else:
            _log_failure(result)
        if progress is not None:
            progress(result)

    results = await run_fleet(hosts, job, concurrency=config.concurrency, on_result=done)
    activated = store.activate_keys(
        [(r.host.name, envelope.key_id(new_keys[r.host.name])) for r in results if r.ok]
    )
    return [
        _key_vanished(r, probe.file_names(host_script(r.host, config.script), collector)[0])
        if r.host.name in activated.missing
        else r
        for r in results
    ]


def _probe_files(
    config: Config, host: HostConfig, key: bytes, collector: str, source: bytes
) -> list[ssh.RemoteFile]:
    """What upload puts in ``host``'s directory: its probe, its key, for python its checks."""
    script = host_script(host, config.script)
    key_name = probe.file_names(script, collector)[0]
    if host.probe == "sh":  # probe.sh reads a key file of its own, and runs no custom checks
        plan = checks.plan_for(config.checks, host.name)
        if plan["checks"] or plan["textfiles"]:
            log.warning('[%s] custom checks and textfiles need probe="python"', host.name)
        key_text = shprobe.key_file_text(host.name, key)
        return [
            ssh.RemoteFile(name=script, data=source, mode=0o700),
            ssh.RemoteFile(name=key_name, data=key_text.encode("ascii"), mode=0o600),
        ]
    key_text = probe.key_file_text(host.name, key)
    # The signed checks file after the key that verifies it: an upload cut short in
    # between leaves the old file, which the new key refuses (no check runs, a warning
    # says "run upload"), never an unsigned one (#17).
    checks_text = checks.checks_file(config.checks, host.name, key)
    return [
        ssh.RemoteFile(name=script, data=source, mode=0o700),
        ssh.RemoteFile(name=key_name, data=key_text.encode("ascii"), mode=0o600),
        ssh.RemoteFile(name=probe.checks_path(script, collector), data=checks_text, mode=0o600),
    ]


def _key_vanished(result: HostResult[str], key_name: str) -> HostResult[str]:
    """An uploaded host whose new key left the store before it was activated fails alone."""
    failed = dataclasses.replace(
        result,
        outcome=Outcome.ERROR,
        value=None,
        error=f"its new key {key_name} was uploaded but is no longer in the store"
        " (the host was forgotten meanwhile?) — run upload again",
    )
    _log_failure(failed)
    return failed


# ---------------------------------------------------------------- execute


async def execute(
    config: Config,
    store: Store,
    hosts: Sequence[HostConfig],
    *,
    progress: Progress | None = None,
    ssh_files: ssh.ClientFiles = ssh.USER_FILES,
    clock: Callable[[], float] = time.time,
    workers: int = 1,
) -> ExecuteReport:
    """Run the probe on every host, verify each message, store samples and `up`.

    Results are stored in batches as hosts finish (``_Writer``), so a run
    that stops half-way keeps what it collected, and memory stays flat in the
    number of hosts.  Alert rules are evaluated and their mail queued in the
    transaction that stores a batch's samples; ``notify.deliver`` sends it,
    after this returns (``run_execute`` does, in the calling thread, where
    Ctrl-C can interrupt it), so the report has no ``delivery`` yet.
    Cancelled (Ctrl-C), it stores the hosts that finished, marks the others
    interrupted and re-raises.  A store failure stops the run (StoreError).
    ``workers`` > 1 runs the hosts in that many processes (``workers``).
    """
    started = time.monotonic()
    stored_keys = store.host_keys([h.name for h in hosts])
    collector = store.collector_id()
    writer = _Writer(config, store, stored_keys, clock)

    def done(result: HostResult[envelope.Message]) -> None:
        writer.put(result)
        _log_result(result, config.script)
        if progress is not None:
            progress(result)

    fan = _fan_out(config, hosts, stored_keys, collector, ssh_files, done, workers, writer.room)
    await _write_as_they_finish(fan, writer, hosts)
    warn_unmatched(config, writer.answers)
    # <retention days>: old samples go in small batches; a failure is only logged (#4)
    await asyncio.to_thread(admin.apply_retention, store, config.retention.days)
    return ExecuteReport(
        results=writer.results(hosts),
        recorded=writer.recorded,
        seconds=time.monotonic() - started,
    )


async def _write_as_they_finish(
    fan_out: Coroutine[Any, Any, None], writer: _Writer, hosts: Sequence[HostConfig]
) -> None:
    """Run ``fan_out`` with ``writer`` storing its results; a store failure stops it.

    Ctrl-C: what finished is stored, the other hosts are marked interrupted,
    and the cancellation goes on; a store failure then is said, not raised.
    """
    fan = asyncio.ensure_future(fan_out)
    writer.start(on_failure=fan.cancel)  # the store failed: stop collecting
    interrupted = False
    try:
        await fan
    except asyncio.CancelledError:
        if not writer.failed:  # Ctrl-C (when the store failed, close() says so below)
            interrupted = True
            writer.interrupt(hosts)
            raise
    finally:
        try:
            await writer.close()  # store what is queued (and the interrupted marks)
        except StoreError as exc:
            if not interrupted:
                raise
            log.error("%s", exc)  # said, but the run still ends as interrupted


class _Writer:
    """The one writer of an ``execute``: results to the store in batches as hosts finish.

    ``put`` queues a finished host's result; a task takes up to ``BATCH``
    results, or what came within ``LINGER`` seconds of the first, and stores
    them with ``record_results`` (its transaction runs in a thread), then keeps
    only a slim result per host and what ``alerts.unmatched`` needs.  At most
    ``concurrency + QUEUED`` results are between a host's start and the store:
    ``room`` makes a host wait for one before it starts.
    """

    BATCH = 500  # results per transaction, at most
    LINGER = 1.0  # seconds a batch waits for more results after its first
    QUEUED = 2 * BATCH  # finished results waiting for the store, at most

    def __init__(
        self,
        config: Config,
        store: Store,
        stored_keys: dict[str, dict[str, bytes]],
        clock: Callable[[], float],
    ) -> None:
        self._config, self._store, self._keys, self._clock = config, store, stored_keys, clock
        # unbounded, but `_room` lets no more than concurrency + QUEUED results in
        self._queue: asyncio.Queue[tuple[HostResult[envelope.Message], float] | None] = (
            asyncio.Queue()
        )
        self._room = asyncio.Semaphore(config.concurrency + self.QUEUED)
        self._finished: set[str] = set()  # hosts whose result was put
        self._done: dict[str, HostResult[int]] = {}  # hosts stored, slim
        self._marks: list[HostRun] = []  # interrupted hosts, stored last
        self._task: asyncio.Future[None] | None = None
        self._closing = False
        self.answers = alerts.Answers(config.alerts.rules)
        self.recorded = pipeline.Recorded(samples=0, events=0, queued=0)

    async def room(self) -> None:
        """Wait until the store has room for one more host's result."""
        await self._room.acquire()

    def put(self, result: HostResult[envelope.Message]) -> None:
        """Queue a finished host's result (with the time it finished) for the store."""
        self._finished.add(result.host.name)
        self._queue.put_nowait((result, self._clock()))

    def start(self, *, on_failure: Callable[[], object]) -> None:
        """Start the writer task; ``on_failure`` is called if the store fails."""

        def ended(_task: asyncio.Future[None]) -> None:
            if self.failed:
                on_failure()

        self._task = asyncio.ensure_future(self._run())
        self._task.add_done_callback(ended)

    @property
    def failed(self) -> bool:
        """Whether the writer stopped on an error (``close`` raises it)."""
        task = self._task
        return task is not None and task.done() and not task.cancelled() and bool(task.exception())

    async def close(self) -> None:
        """Store what is queued and end the writer; raise its StoreError, if it had one.

        A second Ctrl-C does not cut the batch being stored: its transaction
        runs in a thread, which asyncio waits for before the process ends.
        """
        if self._task is None:
            return
        if not self._closing:
            self._closing = True
            self._queue.put_nowait(None)  # the last result is in: store what is left, end
        await asyncio.shield(self._task)

    def interrupt(self, hosts: Sequence[HostConfig]) -> None:
        """Ctrl-C: the hosts of ``hosts`` that did not finish are marked interrupted at the end.

        An interrupted host gets its row's last_error only: no `up` = 0 (a
        Ctrl-C is not an outage, and it would page someone) and no alert
        evaluation.
        """
        cut = [h for h in hosts if h.name not in self._finished]
        log.warning(
            "execute interrupted: storing the %d host(s) that finished; interrupted: %s",
            len(self._finished),
            some([h.name for h in cut], 20) or "none",
        )
        now, by = self._clock(), self._config.collector.label
        self._marks = [
            HostRun(
                host=h.name, address=h.target, ts=now, ok=False, error=INTERRUPTED, collector=by
            )
            for h in cut
        ]

    def results(self, hosts: Sequence[HostConfig]) -> tuple[HostResult[int], ...]:
        """Every stored host's slim result, in the order of ``hosts``."""
        return tuple(self._done[h.name] for h in hosts if h.name in self._done)

    async def _run(self) -> None:
        while batch := await self._take():
            await self._write(batch)
            for _ in batch:
                self._room.release()
        if self._marks:
            await self._write([], self._marks)

    async def _write(
        self,
        batch: Sequence[tuple[HostResult[envelope.Message], float]],
        marks: Sequence[HostRun] = (),
    ) -> None:
        """Store ``batch``; keep of each result only its slim one and its series' names."""
        finished = {result.host.name: ts for result, ts in batch}
        results, recorded = await record_results(
            self._config,
            self._store,
            [result for result, _ in batch],
            finished,
            self._keys,
            self._clock,
            interrupted=marks,
        )
        self.recorded = _sum(self.recorded, recorded)
        for result in results:
            message = result.value
            if result.ok and message is not None:
                self.answers.add(result.host.name, [(s.metric, s.labels) for s in message.samples])
            self._done[result.host.name] = HostResult(
                host=result.host,
                outcome=result.outcome,
                error=result.error,
                seconds=result.seconds,
                value=None if message is None else len(message.samples),
            )

    async def _take(self) -> list[tuple[HostResult[envelope.Message], float]]:
        """The next batch: up to BATCH results, waiting LINGER after the first; [] at the end."""
        first = await self._queue.get()
        if first is None:
            return []
        batch = [first]
        deadline = asyncio.get_running_loop().time() + self.LINGER
        while len(batch) < self.BATCH:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    async with asyncio.timeout(left):
                        item = await self._queue.get()
                except TimeoutError:
                    break
            if item is None:
                self._queue.put_nowait(None)  # seen again by the next _take: the end
                break
            batch.append(item)
        return batch


async def _fan_out(
    config: Config,
    hosts: Sequence[HostConfig],
    stored_keys: dict[str, dict[str, bytes]],
    collector: str,
    ssh_files: ssh.ClientFiles,
    done: Callable[[HostResult[envelope.Message]], None],
    workers: int,
    room: Callable[[], Awaitable[None]],
) -> None:
    """Every host's probe run, ``done`` called for each as it ends (and nothing kept).

    In this process and its event loop (one worker: more is no use for one
    host), or in worker processes, ``done`` being called here all the same.
    In this process a host starts only when ``room`` says the store has room
    for its result; worker processes are not held back (their results are
    small by then, and the writer keeps up at ~1 ms a host).
    """
    if min(workers, len(hosts)) > 1:
        from netmetrix import workers as pool  # only then: the in-process path imports nothing

        log.info("execute: %d host(s) in %d worker processes", len(hosts), min(workers, len(hosts)))
        await pool.execute(
            config,
            hosts,
            workers=workers,
            stored_keys=stored_keys,
            collector=collector,
            ssh_files=ssh_files,
            on_result=done,
        )
        return
    session = ProbeSession(ssh.HostKeys(config.ssh, ssh_files), ssh_files, collector)

    async def job(host: HostConfig) -> envelope.Message:
        await room()  # backpressure: a store that falls behind slows the fan-out
        return await probe_host(host, config, stored_keys, session)

    await fan_out(hosts, job, concurrency=config.concurrency, on_result=done)


def _log_result(result: HostResult[envelope.Message], script: str) -> None:
    """The seed's SUCCESS line and what the probe could not read, or the failure."""
    if not result.ok:
        _log_failure(result)
        return
    log.info(
        "[%s] SUCCESS! Script `%s` executed", result.host.name, remote_path(result.host, script)
    )
    for problem in result.value.errors if result.value else ():
        log.warning("[%s] probe could not read %s", result.host.name, problem)


async def record_results(
    config: Config,
    store: Store,
    results: Sequence[HostResult[envelope.Message]],
    finished: dict[str, float],
    stored_keys: dict[str, dict[str, bytes]],
    clock: Callable[[], float],
    interrupted: Sequence[HostRun] = (),
) -> tuple[list[HostResult[envelope.Message]], pipeline.Recorded]:
    """Store the results: samples, `up`, alert state and outbox mail in one transaction (#7).

    A host not set up (no key stored) or ``interrupted`` (Ctrl-C) gets only its
    row's last_error: no `up` sample, and so no `up == 0` alert (#11).
    Alerts whose rule or host left config.xml are resolved in the same
    transaction (with a shard, only those of its hosts: ``pipeline.record``).
    Returns the results, with every host the store refused (#10) turned into a
    failure, and what was recorded.
    """
    not_set_up = [r for r in results if r.outcome is Outcome.NOT_SET_UP]
    by = config.collector.label  # each host row says which collector (and shard) ran it
    runs = [
        _host_run(r, finished[r.host.name], by)
        for r in results
        if r.outcome is not Outcome.NOT_SET_UP
    ]
    recorded = await asyncio.to_thread(
        functools.partial(
            pipeline.record,
            store,
            runs,
            config.alerts.rules,
            now=clock(),
            hosts=[h.name for h in config.hosts],
            marks=[*(_host_run(r, finished[r.host.name], by) for r in not_set_up), *interrupted],
            shard=config.collector.shard,
            remote_write=config.remote_write is not None,
            routing=pipeline.routing(config),
            read_at=config.read_at,
        )
    )
    if recorded.retired:
        log.info(
            "%d firing alert(s) resolved: their rule or host is no longer in %s",
            recorded.retired,
            config.path.name,
        )
    results = _fail_refused(results, recorded.refused)
    _log_saved(runs, {r.host for r in recorded.refused})
    await _settle_keys(store, results, stored_keys)
    return results, recorded


async def _settle_keys(
    store: Store,
    results: Sequence[HostResult[envelope.Message]],
    stored_keys: Mapping[str, Mapping[str, bytes]],
) -> None:
    """A host that answered with a pending key settles on it (an upload crashed before
    activating it, or is activating it right now); answering with its active key
    changes nothing, as a running upload may be about to activate a pending one."""
    settled = [
        (r.host.name, r.value.kid)
        for r in results
        if r.value is not None and len(stored_keys.get(r.host.name, {})) > 1
    ]
    if settled:  # no write transaction for nothing: watch records every tick
        await asyncio.to_thread(store.activate_keys, settled, pending_only=True)


def warn_unmatched(
    config: Config, answered: Sequence[HostResult[envelope.Message]] | alerts.Answers
) -> None:
    """One WARNING naming the alert rules that matched no series (``alerts.unmatched``).

    ``answered``: a run's results, or what ``alerts.Answers`` gathered of them.
    """
    if isinstance(answered, alerts.Answers):
        answers = answered
    else:
        answers = alerts.Answers(config.alerts.rules)
        for r in answered:
            if r.ok and r.value is not None:
                answers.add(r.host.name, [(s.metric, s.labels) for s in r.value.samples])
    found = answers.unmatched([h.name for h in config.hosts])
    if found:
        log.warning("%s", alerts.unmatched_text(found))


def _sum(total: pipeline.Recorded, more: pipeline.Recorded) -> pipeline.Recorded:
    """What two ``record`` calls wrote together: every count (and tuple) added up."""
    return dataclasses.replace(
        total,
        **{
            f.name: getattr(total, f.name) + getattr(more, f.name)
            for f in dataclasses.fields(total)
        },
    )


def setup_hint(results: Sequence[HostResult[Any]], config: Config) -> str | None:
    """The fix for hosts that are not set up: ``run `netmetrix upload -h f5 -h f6```."""
    names = [r.host.name for r in results if r.outcome is Outcome.NOT_SET_UP]
    if not names:
        return None
    shard = config.collector.shard
    if len(names) == len(config.hosts):
        command = "netmetrix upload"
    elif shard is not None and len(names) == len(results) and len(names) > _HINT_HOSTS:
        command = f"netmetrix upload --shard {shard}"
    elif len(names) <= _HINT_HOSTS:
        command = "netmetrix upload " + " ".join(f"-h {shlex.quote(n)}" for n in names)
    else:
        command = "netmetrix upload -h NAME"
    shown = some(names, _HINT_HOSTS)
    return f"not set up (no key stored yet, so never collected): {shown} — run `{command}`"


def _host_run(result: HostResult[envelope.Message], ts: float, collector: str) -> HostRun:
    message = result.value
    return HostRun(
        host=result.host.name,
        address=result.host.target,
        ts=ts,
        ok=result.ok,
        error=None if result.ok else _stored_error(result),
        probe_version=message.probe_version if message else None,
        samples=message.samples if message else (),
        collector=collector,
        checks=tuple((c.name, c.status, c.text, c.at, c.duration) for c in message.checks)
        if message
        else (),
    )


def _stored_error(result: HostResult[Any]) -> str:
    """``outcome: reason`` for the host's row, once (an EnvelopeError already says
    "bad message: ..."), cleaned again so a HostRun is safe whoever built the result."""
    reason = result.error or "failed"
    prefix = f"{result.outcome.value}: "
    return clean(reason if reason.startswith(prefix) else prefix + reason, 400)


def _fail_refused(
    results: Sequence[HostResult[envelope.Message]], refused: Sequence[Refused]
) -> list[HostResult[envelope.Message]]:
    """Hosts whose data the store refused (it stored them as failed) fail here too."""
    reasons = {r.host: r.reason for r in refused}
    changed = []
    for result in results:
        reason = reasons.get(result.host.name)
        if reason is not None and result.ok:
            result = dataclasses.replace(
                result, outcome=Outcome.BAD_MESSAGE, error=reason, value=None
            )
            _log_failure(result)
        changed.append(result)
    return changed


def _log_saved(runs: Sequence[HostRun], refused: set[str]) -> None:
    if not log.isEnabledFor(logging.DEBUG):
        return
    for run in runs:
        if run.host in refused:
            continue
        for sample in run.samples:
            name = series_name(sample.metric, sample.labels)
            log.debug("[%s] Metric `%s`->`%s` saved", run.host, name, number(sample.value))
