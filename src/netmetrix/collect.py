"""The two fleet jobs: ``upload`` (probe + fresh key) and ``execute`` (run, verify, store).

Key rotation is ordered so that no crash leaves a host whose remote key the
store does not hold: the new key is stored as *pending* before it is sent, the
remote key file is replaced atomically, and only then is the key made *active*
(dropping the old one).  A crash in between leaves both keys in the store;
``execute`` accepts either and promotes the pending key the first time the
host uses it.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from netmetrix import dbadmin, envelope, probe, ssh
from netmetrix.config import Config, HostConfig
from netmetrix.errors import HostError, Outcome
from netmetrix.fleet import HostResult, run_fleet
from netmetrix.render import number
from netmetrix.store import HostRun, Store

log = logging.getLogger(__name__)

Progress = Callable[[HostResult[Any]], None]


def probe_source() -> bytes:
    """The probe file exactly as it ships in the package."""
    return resources.files("netmetrix").joinpath("probe.py").read_bytes()


def remote_path(host: HostConfig, script: str) -> str:
    return f"{host.directory.rstrip('/')}/{script}"


def probe_command(host: HostConfig, script: str, challenge: str) -> str:
    # `exec` so that killing the channel's process kills the probe, not just a shell.
    return f"exec {shlex.quote(host.python)} {shlex.quote(remote_path(host, script))} {challenge}"


def _log_failure(result: HostResult[Any]) -> None:
    log.error("[%s] FAILED: %s", result.host.name, result.error)


# ---------------------------------------------------------------- upload


async def upload(
    config: Config,
    store: Store,
    hosts: Sequence[HostConfig],
    *,
    progress: Progress | None = None,
) -> list[HostResult[str]]:
    """Put the probe and a fresh per-host key on every host."""
    new_keys = {h.name: envelope.new_key() for h in hosts}
    # Pending first: see the module docstring.
    store.add_pending_keys([(name, envelope.key_id(k), k) for name, k in new_keys.items()])
    known = ssh.HostKeys(config.ssh)
    source = probe_source()
    key_name = f"{config.script}.key"

    async def job(host: HostConfig) -> str:
        key_text = probe.key_file_text(host.name, new_keys[host.name]).encode("ascii")
        files = [
            ssh.RemoteFile(name=config.script, data=source, mode=0o700),
            ssh.RemoteFile(name=key_name, data=key_text, mode=0o600),
        ]
        async with ssh.connect(host, config.ssh, known) as conn:
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
    store.activate_keys(
        [(r.host.name, envelope.key_id(new_keys[r.host.name])) for r in results if r.ok]
    )
    return results


# ---------------------------------------------------------------- execute


async def execute(
    config: Config,
    store: Store,
    hosts: Sequence[HostConfig],
    *,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
) -> list[HostResult[envelope.Message]]:
    """Run the probe on every host, verify each message, store samples and `up`.

    Alert rules are evaluated and their mail queued in the transaction that
    stores the samples; ``notify.deliver`` sends it, after this returns (the
    caller runs it in the main thread, where Ctrl-C can interrupt it).
    """
    stored_keys = store.host_keys([h.name for h in hosts])
    known = ssh.HostKeys(config.ssh)
    required = config.security.encryption == "required"
    finished: dict[str, float] = {}

    async def job(host: HostConfig) -> envelope.Message:
        keys = stored_keys.get(host.name)
        if not keys:
            raise HostError(Outcome.PROBE_MISSING, "no key stored for this host — run upload")
        challenge = envelope.new_challenge()
        async with ssh.connect(host, config.ssh, known) as conn:
            done = await ssh.run(
                conn,
                probe_command(host, config.script, challenge),
                seconds=config.ssh.command_timeout,
            )
        _check_exit(host, config.script, done)
        line = envelope.find_envelope(done.stdout)
        return envelope.open_envelope(
            line, keys=keys, host=host.name, challenge=challenge, require_encryption=required
        )

    def done(result: HostResult[envelope.Message]) -> None:
        finished[result.host.name] = clock()
        if result.ok:
            path = remote_path(result.host, config.script)
            log.info("[%s] SUCCESS! Script `%s` executed", result.host.name, path)
            for problem in result.value.errors if result.value else ():
                log.warning("[%s] probe could not read %s", result.host.name, problem)
        else:
            _log_failure(result)
        if progress is not None:
            progress(result)

    results = await run_fleet(hosts, job, concurrency=config.concurrency, on_result=done)
    runs = [_host_run(r, finished[r.host.name]) for r in results]
    await asyncio.to_thread(
        store.record_runs_with_alerts, runs, config.alerts.rules, now=clock()
    )  # samples, alert state and outbox mail in one transaction (#7)
    _log_saved(runs)
    # A host that answered while holding several keys settles on the one it used
    # (an upload crashed before activating it, or activation is simply pending).
    store.activate_keys(
        [
            (r.host.name, r.value.kid)
            for r in results
            if r.value is not None and len(stored_keys.get(r.host.name, {})) > 1
        ]
    )
    # <retention days>: old samples go in small batches; a failure is only logged (#4)
    await asyncio.to_thread(dbadmin.apply_retention, store, config.retention.days)
    return results


def _check_exit(host: HostConfig, script: str, done: ssh.Completed) -> None:
    if done.exit_status == 0:
        return
    tail = (done.stderr.strip().splitlines() or [""])[-1][:200]
    path = remote_path(host, script)
    if done.exit_status == probe.EXIT_KEY:
        raise HostError(Outcome.PROBE_MISSING, f"probe key {path}.key missing — run upload")
    if done.exit_status == 127:
        raise HostError(Outcome.ERROR, f"`{host.python}` not found on the host: {tail}")
    if done.exit_status == 2 and "can't open file" in done.stderr:
        raise HostError(Outcome.PROBE_MISSING, f"probe {path} missing — run upload")
    raise HostError(Outcome.BAD_MESSAGE, f"probe exited with status {done.exit_status}: {tail}")


def _host_run(result: HostResult[envelope.Message], ts: float) -> HostRun:
    message = result.value
    return HostRun(
        host=result.host.name,
        address=result.host.target,
        ts=ts,
        ok=result.ok,
        error=None if result.ok else f"{result.outcome.value}: {result.error}",
        probe_version=message.probe_version if message else None,
        samples=message.samples if message else (),
    )


def _log_saved(runs: Sequence[HostRun]) -> None:
    if not log.isEnabledFor(logging.DEBUG):
        return
    for run in runs:
        for sample in run.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sample.labels)
            name = f"{sample.metric}{{{labels}}}" if labels else sample.metric
            log.debug("[%s] Metric `%s`->`%s` saved", run.host, name, number(sample.value))
