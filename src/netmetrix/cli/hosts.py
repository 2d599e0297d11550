"""``netmetrix hosts``: every configured host and its last run; ``hosts forget``."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import click

from netmetrix.cli._common import Settings, explicit_format, host_option, open_store, select_hosts
from netmetrix.errors import ExitStatus, UsageError
from netmetrix.format import count, some
from netmetrix.render import format_option, render
from netmetrix.rows import HOST_COLUMNS, host_row

if TYPE_CHECKING:
    from netmetrix.config import Config
    from netmetrix.pipeline import Forgotten

FORGET_COLUMNS = ("host", "series", "samples", "keys", "alerts", "resolved", "mails")


def register(group: click.Group) -> None:
    """Add ``hosts`` to the ``netmetrix`` group."""
    group.add_command(hosts)


@click.group(invoke_without_command=True, subcommand_metavar="[COMMAND [ARGS]...]")
@host_option()
@format_option
@click.pass_context
def hosts(ctx: click.Context, hosts: tuple[str, ...], fmt: str) -> None:
    """List every configured host with the outcome of its last run.

    One row per host of config.xml, in its order, collected or not: the
    address, the SSH port (config.xml's, else ~/.ssh/config's, else 22),
    when it last answered (last_seen, ISO 8601 UTC), the error of its last
    run if that failed, the probe version, up (1 answered and verified on
    its last run, 0 not, empty before its first run or while the host is not
    set up), and the collector of its last run (<collector name>, with its
    --shard: "db1 (2/3)").  `hosts forget` deletes what the store holds of hosts removed
    from config.xml.

    \b
    Examples:
      netmetrix hosts
      netmetrix hosts -h 'db*'
      netmetrix hosts --format json | jq -r '.[] | select(.up == 0) | .host'
      netmetrix hosts --format csv > hosts.csv
      netmetrix hosts forget old-web1
    """
    if ctx.invoked_subcommand is not None:
        _options_before(ctx, hosts)
        return
    from netmetrix import ssh

    settings: Settings = ctx.obj
    config = settings.load()
    selected = select_hosts(config, hosts).hosts
    with open_store(config) as store:
        stored = {row.name: row for row in store.hosts()}
    ports = asyncio.run(ssh.resolve_ports(selected, config.ssh))
    rows = [host_row(h, stored.get(h.name), ports[h.name]) for h in selected]
    render(rows, HOST_COLUMNS, fmt, sys.stdout)


def _options_before(ctx: click.Context, hosts: tuple[str, ...]) -> None:
    """``hosts -h f4 forget``: the listing's options do not apply to a subcommand."""
    if hosts or explicit_format(ctx):
        raise click.UsageError(
            f"-h and --format go after the command: netmetrix hosts {ctx.invoked_subcommand}"
            " ... --format FORMAT"
        )


@hosts.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option(
    "--force",
    is_flag=True,
    help="Also forget hosts still in config.xml (they start afresh: run upload for them).",
)
@format_option
@click.pass_obj
def forget(settings: Settings, names: tuple[str, ...], yes: bool, force: bool, fmt: str) -> int:
    """Delete everything the store holds of hosts removed from config.xml.

    NAME is a host name or a shell glob ('old-*', quoted), matched against
    config.xml's hosts and the hosts the store knows.  Deletes their series
    and samples (`metrics`), keys, alert state (`alerts active`) and host row,
    in one transaction, and says what went; the alert history and the mail
    outbox are kept.  A firing alert of such a host is resolved first: a
    RESOLVED mail "(host removed)" is queued for the next `execute` or
    `alerts flush`.  A host still in config.xml is refused unless --force,
    which resets it: it needs `netmetrix upload -h NAME` before `execute`
    collects from it again.  Asks before deleting unless --yes; without a
    terminal to ask on, --yes is required.  Exit status 1 when the answer is no.

    \b
    Examples:
      netmetrix hosts forget old-web1
      netmetrix hosts forget 'old-*' --yes --format json
    """
    from netmetrix import pipeline

    config = settings.load()
    configured = {h.name for h in config.hosts}
    with open_store(config) as store:
        selected = select_hosts(config, names, store).names
        _refuse_configured(config, [n for n in selected if n in configured], force)
        if not yes and not _confirm(selected):
            click.echo("hosts forget: nothing forgotten", err=True)
            return ExitStatus.HOST_FAILED
        done = pipeline.forget_hosts(store, selected, config, now=time.time())
    _show_forgotten(done, fmt)
    return ExitStatus.OK


def _refuse_configured(config: Config, kept: Sequence[str], force: bool) -> None:
    """UsageError for hosts still in config.xml, unless ``force``."""
    if kept and not force:
        raise UsageError(
            f"hosts forget: {some(kept)} still in {config.path.name}: remove"
            f" {'it' if len(kept) == 1 else 'them'} there first, or add --force to reset"
            " (then run `netmetrix upload` for them)"
        )


def _confirm(names: Sequence[str]) -> bool:
    """Ask on the terminal; UsageError when there is none (cron, a pipe): say --yes."""
    if not sys.stdin.isatty():
        raise UsageError(
            "hosts forget: stdin is not a terminal to ask on: add --yes to forget without asking"
        )
    question = (
        f"Forget {count(len(names), 'host')} ({some(names)}): every sample, key and alert"
        " state stored for them?"
    )
    return click.confirm(question, default=False, err=True)


def _show_forgotten(done: Collection[Forgotten], fmt: str) -> None:
    """One line per host on stdout (the table), or its record (JSON, CSV); the mail queued."""
    if fmt != "table":
        rows = [{column: getattr(f, column) for column in FORGET_COLUMNS} for f in done]
        render(rows, FORGET_COLUMNS, fmt, sys.stdout)
        return
    for f in done:
        click.echo(_forgot_line(f))
    mails = sum(f.mails for f in done)
    if mails:
        click.echo(
            f"{count(mails, 'RESOLVED mail')} queued for the next `netmetrix execute`"
            " or `netmetrix alerts flush`",
            err=True,
        )


def _forgot_line(f: Forgotten) -> str:
    """``forgot f4: 23 series, 1,234 samples, 1 key, 2 alerts (1 resolved), host row``."""
    if not (f.series or f.keys or f.alerts or f.row):
        return f"forgot {f.host}: nothing was stored for it"
    parts = [
        f"{f.series} series",
        count(f.samples, "sample"),
        count(f.keys, "key"),
        count(f.alerts, "alert") + (f" ({f.resolved} firing, resolved)" if f.resolved else ""),
    ]
    if f.row:
        parts.append("host row")
    return f"forgot {f.host}: {', '.join(parts)}"
