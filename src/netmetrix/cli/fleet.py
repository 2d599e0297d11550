"""``netmetrix upload`` and ``netmetrix execute``: the fleet jobs of ``collect``, with a
progress bar on a terminal and the job's end-of-run lines on stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from netmetrix.cli._common import (
    Settings,
    host_option,
    imports_begin,
    imports_done,
    open_store,
    select_hosts,
)
from netmetrix.errors import ExitStatus

if TYPE_CHECKING:
    from netmetrix.fleet import HostResult


def register(group: click.Group) -> None:
    """Add ``upload`` and ``execute`` to the ``netmetrix`` group."""
    group.add_command(upload)
    group.add_command(execute)


@click.command()
@host_option()
@click.pass_obj
def upload(settings: Settings, hosts: tuple[str, ...]) -> int:
    """Put the probe and a fresh random key on every host.

    Writes <directory>/<script> (mode 0700) and <script>.<collector_id>.key
    (mode 0600; the id is this store's, see `db info`) atomically over SFTP,
    or over an exec channel when the host has no SFTP.  Other collectors'
    keys on the same host are left alone.  Run it once before `execute`, and
    again to rotate the keys.  One upload per store at a time: a second one
    stops at once, naming the running one (exit 1).

    \b
    Examples:
      netmetrix upload
      netmetrix upload -h f4
    """
    return _run(settings, hosts, "upload")


@click.command()
@host_option()
@click.pass_obj
def execute(settings: Settings, hosts: tuple[str, ...]) -> int:
    """Run the probe on every host and store the verified metrics.

    Every run sends a fresh challenge; a host whose answer does not verify is
    reported and nothing of it is stored.  Each host also gets an `up` sample
    (1 answered and verified, 0 not).  Then the <alert> rules are evaluated
    and their mail sent, for at most <smtp deadline> (see `netmetrix alerts
    --help`).  Exit status 1 when any host failed, some mail stayed
    undelivered (it is kept and retried) or was refused for good (a dead
    letter, counted by this run only).

    \b
    Examples:
      netmetrix execute
      netmetrix -v execute -h f4      # also log every metric saved
    """
    return _run(settings, hosts, "execute")


def _run(settings: Settings, patterns: tuple[str, ...], verb: str) -> int:
    """Run the ``verb`` job of ``collect`` over the selected hosts; its exit status."""
    imports_begin(settings)
    from netmetrix import collect

    job = collect.JOBS[verb]
    config = settings.load()
    selected = select_hosts(config, patterns).hosts
    imports_done(settings)
    with open_store(config) as store, _progress(verb, len(selected)) as advance:
        report = job(config, store, selected, progress=advance, say=_say)
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
