"""``netmetrix watch``: continuous monitoring on persistent SSH sessions."""

from __future__ import annotations

import click

from netmetrix.cli._common import (
    DURATION,
    Settings,
    host_option,
    imports_done,
    open_store,
    select_hosts,
)
from netmetrix.config import interval_problem
from netmetrix.errors import ExitStatus, UsageError


def register(group: click.Group) -> None:
    """Add ``watch`` to the ``netmetrix`` group."""
    group.add_command(watch)


@click.command()
@host_option()
@click.option(
    "--interval",
    type=DURATION,
    default=None,
    help="Seconds between samples (10s, 1m; 1s to 1h). Default: <watch interval>, else 10s.",
)
@click.option(
    "--ticks",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Stop after N ticks. Default: run until SIGTERM or Ctrl-C.",
)
@click.pass_obj
def watch(
    settings: Settings, hosts: tuple[str, ...], interval: float | None, ticks: int | None
) -> int:
    """Sample every host every interval, on one SSH session per host.

    Keeps one connection and one streaming probe per host open (run `upload`
    first) and sends each a fresh challenge every tick; every tick's samples
    and `up` are stored in one transaction and the <alert> rules evaluated,
    mail going out in the background.  A host that does not answer in time
    gets up=0 for that tick; a lost connection is retried with backoff (1s to
    5m).  Logs say when a host connects, is lost and comes back, and sum up
    every minute (-v: every metric saved).  SIGHUP re-reads config.xml;
    SIGTERM or Ctrl-C stop it cleanly (exit 0).  `execute` can run beside it
    on the same store.

    \b
    Examples:
      netmetrix watch                      # every host, every <watch interval>
      netmetrix watch --interval 1s -h 'web*'
      netmetrix watch --ticks 3            # three samples of each host, then stop
    """
    from netmetrix.watch import WatchOptions, run_watch

    if interval is not None and (problem := interval_problem(interval)):
        raise UsageError(f"--interval: {problem}")
    config = settings.load()
    select_hosts(config, hosts)
    imports_done(settings)
    options = WatchOptions(patterns=hosts, interval=interval, ticks=ticks)
    with open_store(config) as store:
        run_watch(config, store, options)
    return ExitStatus.OK
