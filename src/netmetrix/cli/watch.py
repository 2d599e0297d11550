"""``netmetrix watch``: continuous monitoring on persistent SSH sessions."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import click

from netmetrix.cli._common import (
    DURATION,
    WORKERS,
    Settings,
    collected_hosts,
    host_option,
    imports_begin,
    imports_done,
    open_store,
    shard_option,
)
from netmetrix.config import Config, interval_problem
from netmetrix.errors import ExitStatus, UsageError

if TYPE_CHECKING:
    from netmetrix.shard import Shard
    from netmetrix.watch import WatchOptions


def register(group: click.Group) -> None:
    """Add ``watch`` to the ``netmetrix`` group."""
    group.add_command(watch)


@click.command()
@host_option()
@shard_option()
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
@click.option(
    "--listen",
    metavar="HOST:PORT",
    default=None,
    help="Also serve the dashboard, /metrics and the API here (as `serve` does).",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="With --listen off loopback: serve without authentication (a WARNING says so).",
)
@click.option(
    "--workers",
    type=WORKERS,
    default=None,
    help="Processes that hold the sessions: a number, or auto (one per CPU)."
    ' Default: <collector workers="..."> in config.xml, else 1 (this process alone).',
)
@click.pass_obj
def watch(
    settings: Settings,
    hosts: tuple[str, ...],
    shard: Shard | None,
    interval: float | None,
    ticks: int | None,
    listen: str | None,
    no_auth: bool,
    workers: int | None,
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
    on the same store, and N watches with --shard 1/N ... N/N share the fleet.
    With --workers, the sessions are dealt over that many processes; ticks,
    storing, alerts, mail and --listen stay in this one.

    \b
    Examples:
      netmetrix watch                      # every host, every <watch interval>
      netmetrix watch --interval 1s -h 'web*'
      netmetrix watch --ticks 3            # three samples of each host, then stop
      netmetrix watch --listen 127.0.0.1:8470   # and the dashboard, as `serve` has it
      netmetrix watch --shard 2/3          # the hosts of collector 2 of 3
      netmetrix watch --workers auto       # sessions on every CPU of this machine
    """
    imports_begin(settings)
    from netmetrix.watch import run_watch

    config = settings.load()
    options = _options(config, hosts, shard, interval, ticks, listen, no_auth)
    options = dataclasses.replace(options, workers=workers or config.collector.workers)
    imports_done(settings)
    with open_store(config) as store:
        run_watch(config, store, options)
    return ExitStatus.OK


def _options(
    config: Config,
    hosts: tuple[str, ...],
    shard: Shard | None,
    interval: float | None,
    ticks: int | None,
    listen: str | None,
    no_auth: bool,
) -> WatchOptions:
    """The run's options, every one checked before anything starts."""
    from netmetrix.watch import WatchOptions

    if interval is not None and (problem := interval_problem(interval)):
        raise UsageError(f"--interval: {problem}")
    collected_hosts(config, hosts, shard)
    if listen is not None:
        from netmetrix.web.server import check_exposure, listen_of

        check_exposure(listen_of(listen, "--listen"), config.web, no_auth)
    return WatchOptions(patterns=hosts, interval=interval, ticks=ticks, listen=listen, shard=shard)
