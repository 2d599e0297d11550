"""``netmetrix upload`` and ``netmetrix execute``: the fleet jobs of ``collect``, with a
progress bar on a terminal and the job's end-of-run lines on stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from netmetrix.cli._common import (
    WORKERS,
    Settings,
    collected_hosts,
    host_option,
    imports_begin,
    imports_done,
    open_store,
    shard_option,
)
from netmetrix.errors import ExitStatus

if TYPE_CHECKING:
    from netmetrix.fleet import HostResult
    from netmetrix.shard import Shard


def register(group: click.Group) -> None:
    """Add ``upload`` and ``execute`` to the ``netmetrix`` group."""
    group.add_command(upload)
    group.add_command(execute)


@click.command()
@host_option()
@shard_option()
@click.pass_obj
def upload(settings: Settings, hosts: tuple[str, ...], shard: Shard | None) -> int:
    """Put the probe and a fresh random key on every host.

    Writes <directory>/<script> (mode 0700) and <script>.<collector_id>.key
    (mode 0600; the id is this store's, see `db info`) atomically over SFTP,
    or over an exec channel when the host has no SFTP.  Other collectors'
    keys on the same host are left alone.  Run it once before `execute`, and
    again to rotate the keys.  One upload per store at a time, --shard or not:
    a second one stops at once, naming the running one (exit 1).

    \b
    Examples:
      netmetrix upload
      netmetrix upload -h f4
      netmetrix upload --shard 2/3    # the hosts of collector 2 of 3
    """
    return _run(settings, hosts, shard, "upload")


@click.command()
@host_option()
@shard_option()
@click.option(
    "--workers",
    type=WORKERS,
    default=None,
    help="Processes that run the hosts: a number, or auto (one per CPU)."
    ' Default: <collector workers="..."> in config.xml, else 1 (this process alone).',
)
@click.pass_obj
def execute(
    settings: Settings, hosts: tuple[str, ...], shard: Shard | None, workers: int | None
) -> int:
    """Run the probe on every host and store the verified metrics.

    Every run sends a fresh challenge; a host whose answer does not verify is
    reported and nothing of it is stored.  Each host also gets an `up` sample
    (1 answered and verified, 0 not).  Then the <alert> rules are evaluated
    and their mail sent, for at most <smtp deadline> (see `netmetrix alerts
    --help`).  With <remote_write>, the stored samples are then pushed to
    that Prometheus remote-write receiver for at most <remote_write deadline>;
    what it does not take stays queued for the next run (one line says so)
    and never changes the exit status.  Exit status 1 when any host failed,
    some mail stayed undelivered (it is kept and retried) or was refused for
    good (a dead letter, counted by this run only).

    With --shard K/N, N collectors sharing one config.xml and one database
    split the hosts between them, each host collected by exactly one; every
    collector sends whatever mail is queued, never a mail twice.  With
    --workers, the hosts are dealt over that many processes, each with its
    share of <concurrency>; this process alone logs, stores and reports, as
    with one.

    \b
    Examples:
      netmetrix execute
      netmetrix -v execute -h f4      # also log every metric saved
      netmetrix execute --shard 1/3   # on the first of three collectors
      netmetrix execute --workers auto   # every CPU of this machine
    """
    return _run(settings, hosts, shard, "execute", workers=workers)


def _run(
    settings: Settings,
    patterns: tuple[str, ...],
    shard: Shard | None,
    verb: str,
    workers: int | None = None,
) -> int:
    """Run the ``verb`` job of ``collect`` over the selected hosts; its exit status.

    ``workers`` (execute only): --workers, None for <collector workers>."""
    imports_begin(settings)
    from netmetrix import collect

    job = collect.JOBS[verb]
    config, selected = collected_hosts(settings.load(), patterns, shard)
    options = {} if verb == "upload" else {"workers": workers or config.collector.workers}
    imports_done(settings)
    with open_store(config) as store, _progress(verb, len(selected)) as advance:
        report = job(config, store, selected, progress=advance, say=_say, **options)
    if verb == "upload" and not report.summary.all_ok:
        _say("upload: `netmetrix check` tells, host by host, what a failed host needs")
    return ExitStatus.OK if report.ok else ExitStatus.HOST_FAILED


def _say(line: str) -> None:
    click.echo(line, err=True)


@contextmanager
def _progress(verb: str, total: int) -> Iterator[Callable[[HostResult[Any]], None] | None]:
    """A progress bar on stderr when it is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(verb, total=total)
        yield lambda _result: bar.advance(task)
