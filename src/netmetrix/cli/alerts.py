"""``netmetrix alerts``: what is firing, what happened, the outbox; flush, retry, drop.

Thin click commands: parse, call the store or ``notify``, render the rows with
``netmetrix.render`` on stdout (``--format table|json|csv``); logs go to
stderr.  SQLAlchemy is imported inside the commands.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from netmetrix.cli._common import HelpGroup, Settings, host_option, open_store, select_hosts
from netmetrix.errors import ExitStatus, UsageError
from netmetrix.format import iso
from netmetrix.render import format_option, raw_option, render, value_cells
from netmetrix.rows import (
    ACTIVE_COLUMNS,
    HISTORY_COLUMNS,
    OUTBOX_COLUMNS,
    SILENCE_COLUMNS,
    active_row,
    history_row,
    outbox_row,
    silence_row,
)

if TYPE_CHECKING:
    from netmetrix.notify import Delivery
    from netmetrix.silences import NewSilence


def register(group: click.Group) -> None:
    """Add ``alerts`` to the ``netmetrix`` group."""
    group.add_command(alerts)


@click.group(cls=HelpGroup)
def alerts() -> None:
    """Alert state, alert history and the mail outbox; deliver waiting mail.

    `execute` evaluates the <alert> rules of config.xml on every new sample and
    queues mail in the outbox in the same transaction as the samples; it then
    delivers the outbox.  Mail the SMTP server did not take stays there until
    the next `execute` or `alerts flush`; mail it refused for good (a 5xx reply)
    becomes a dead letter, kept until `alerts retry` or `alerts drop`.

    \b
    Examples:
      netmetrix alerts active                  # what is firing (or pending) now
      netmetrix alerts history -h f4           # what fired and resolved on f4
      netmetrix alerts outbox                  # mail not delivered yet
      netmetrix alerts flush                   # try to deliver it now
      netmetrix alerts outbox --failed         # mail refused for good (5xx)
      netmetrix alerts retry 17                # ... back in the queue, or:
      netmetrix alerts drop 17                 # ... deleted
      netmetrix alerts silence -h db1 --for 2h --comment "disk swap"
    """


@alerts.command()
@host_option()
@format_option
@raw_option
@click.pass_obj
def active(settings: Settings, hosts: tuple[str, ...], fmt: str, raw: bool) -> None:
    """List every alert that is firing or pending, firing first.

    One row per rule and series: its state (pending: past the limit for fewer
    samples than the rule's `for`), the latest value, the rule, its severity,
    since (the first sample past the limit) and ts (the latest sample), both
    ISO 8601 UTC.

    \b
    Examples:
      netmetrix alerts active
      netmetrix alerts active -h 'web*'
      netmetrix alerts active --format json | jq -r '.[] | select(.state == "firing") | .host'
    """
    config = settings.load()
    with open_store(config) as store:
        found = store.alerts_active(select_hosts(config, hosts, store).names)
    rows = [active_row(a) for a in found]
    render(rows, ACTIVE_COLUMNS, fmt, sys.stdout, cells=value_cells(raw))


def _limit_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-n/--limit N`` (default 100), with the command's own help text."""
    return click.option(
        "-n",
        "--limit",
        type=click.IntRange(min=1),
        default=100,
        show_default=True,
        help=help_text,
    )


@alerts.command()
@host_option()
@_limit_option("Show at most this many events, the newest.")
@format_option
@raw_option
@click.pass_obj
def history(settings: Settings, hosts: tuple[str, ...], limit: int, fmt: str, raw: bool) -> None:
    """List alert events, newest first: fired, repeated (reminder) and resolved.

    Each event is recorded once, however many addresses were mailed about it,
    and also when no mail was sent (a rule with resolved="false").

    \b
    Examples:
      netmetrix alerts history
      netmetrix alerts history -h f4 -n 20 --format csv
    """
    config = settings.load()
    with open_store(config) as store:
        events = store.alert_history(select_hosts(config, hosts, store).names, limit)
    rows = [history_row(e) for e in events]
    render(rows, HISTORY_COLUMNS, fmt, sys.stdout, cells=value_cells(raw))


@alerts.command()
@host_option()
@click.option("--all", "show_all", is_flag=True, help="Also list delivered mail.")
@click.option(
    "--failed",
    "only_failed",
    is_flag=True,
    help="Only dead letters: mail the SMTP server refused for good.",
)
@_limit_option("With --all: at most this many mails, the newest.")
@format_option
@click.pass_obj
def outbox(
    settings: Settings,
    hosts: tuple[str, ...],
    show_all: bool,
    only_failed: bool,
    limit: int,
    fmt: str,
) -> None:
    """List mail not delivered yet (with --all, delivered mail too), oldest first.

    One row per mail and recipient: status (pending; sending while a netmetrix
    holds it; failed: a dead letter the SMTP server refused for good, e.g. 550
    unknown recipient, never retried until `alerts retry`; delivered), how
    many attempts failed or succeeded, the last error, and when the SMTP
    server accepted it.

    \b
    Examples:
      netmetrix alerts outbox
      netmetrix alerts outbox -h 'db*'
      netmetrix alerts outbox --failed        # dead letters: then alerts retry or drop
      netmetrix alerts outbox --all -n 20 --format json
    """
    if show_all and only_failed:
        raise click.UsageError("--all and --failed cannot be combined")
    config = settings.load()
    with open_store(config) as store:
        items = store.outbox(
            undelivered=not show_all,
            failed=True if only_failed else None,
            limit=limit if show_all else None,
            hosts=select_hosts(config, hosts, store).names,
        )
    rows = [outbox_row(item, time.time()) for item in items]
    render(rows, OUTBOX_COLUMNS, fmt, sys.stdout)


@alerts.command()
@click.pass_obj
def flush(settings: Settings) -> int:
    """Deliver the mail, webhooks and Alertmanager alerts waiting in the outbox now.

    Uses the <smtp> settings of config.xml (the password from the environment
    variable that password_env names), for at most <smtp deadline> (30s by
    default); what is left then waits for the next flush or execute.  More
    waiting mail for one address than <alerts digest_over> goes as one digest.
    Webhooks and Alertmanagers (<receivers>) are tried at the same time, each
    on its own, at once even when backing off after a failure; firing alerts
    are posted to Alertmanager again.  Dead letters are not retried (see
    `alerts retry`).  Exit status 1 when something is still undelivered or
    was refused for good.

    \b
    Examples:
      SMTP_PASSWORD=... netmetrix alerts flush
    """
    from netmetrix import notify

    config = settings.load()
    with open_store(config) as store:
        done = notify.deliver_all(store, config, force=True)
    click.echo(_flush_line(done), err=True)
    return ExitStatus.OK if done.ok else ExitStatus.HOST_FAILED


def _flush_line(done: Delivery) -> str:
    """What a delivery pass did, in one line: ``flush: 3 delivered in 1 mail(s), ...``."""
    sent = sum(len(mail.ids) for mail in done.sent)
    retrying = sum(f.notifications for f in done.retrying)
    dead = sum(f.notifications for f in done.dead)
    http = _http_parts(done)
    if not (sent or done.failed or done.busy or done.deferred or done.lost or http):
        kept = done.dead_letters
        if kept:
            return (
                f"flush: nothing to send; {kept} dead letter(s) kept"
                " (`netmetrix alerts outbox --failed`)"
            )
        return "flush: the outbox is empty"
    parts = [f"{sent} delivered in {len(done.sent)} mail(s)"] if sent or not http else []
    parts += http
    if retrying:
        parts.append(f"{retrying} not delivered (kept in the outbox)")
    if dead:
        parts.append(f"{dead} refused for good (dead letters: `netmetrix alerts outbox --failed`)")
    if done.deferred:
        parts.append(
            f"{done.deferred} not tried (the delivery deadline of {done.deadline:g}s came first;"
            " kept in the outbox)"
        )
    if done.busy:
        parts.append(f"{done.busy} being delivered by another netmetrix")
    if done.lost:
        parts.append(f"{done.lost} sent after another netmetrix took them over")
    return "flush: " + ", ".join(parts)


def _http_parts(done: Delivery) -> list[str]:
    """What the webhook and Alertmanager pass did (#16), for ``_flush_line``."""
    hooks = done.hooks
    if hooks is None:
        return []
    parts = [f"{hooks.sent} posted in {hooks.requests} request(s)"]
    retrying = sum(f.notifications for f in hooks.failed if not f.permanent)
    dead = sum(f.notifications for f in hooks.failed if f.permanent)
    if retrying:
        parts.append(f"{retrying} not posted (kept in the outbox)")
    if dead:
        parts.append(f"{dead} refused for good (dead letters: `netmetrix alerts outbox --failed`)")
    if hooks.deferred:
        parts.append(f"{hooks.deferred} not tried (their receiver failed; kept in the outbox)")
    if hooks.busy:
        parts.append(f"{hooks.busy} being posted by another netmetrix")
    return parts


_ids_argument = click.argument("ids", nargs=-1, required=True, type=click.IntRange(min=1))


@alerts.command()
@_ids_argument
@click.pass_obj
def drop(settings: Settings, ids: tuple[int, ...]) -> None:
    """Delete undelivered mail from the outbox, for good: it is never sent.

    IDS are outbox ids, as `alerts outbox` lists them: dead letters (status
    failed) or any mail not delivered yet.  Nothing is deleted when one of them
    names no undelivered mail (exit status 2).  The alert history keeps the
    events.

    \b
    Examples:
      netmetrix alerts outbox --failed
      netmetrix alerts drop 17 18
    """
    with open_store(settings.load()) as store:
        done = store.drop_mail(ids)
    _check_ids("drop", done.unknown, "nothing dropped")
    click.echo(f"drop: deleted {_ids(done.changed)} from the outbox", err=True)


@alerts.command()
@_ids_argument
@click.pass_obj
def retry(settings: Settings, ids: tuple[int, ...]) -> None:
    """Put dead letters back in the queue, for the next execute or `alerts flush`.

    IDS are outbox ids, as `alerts outbox --failed` lists them: mail the SMTP
    server refused for good (fix the address or the server first).  Mail that
    is still pending is left as it is.  Nothing changes when one of them names
    no undelivered mail (exit status 2).

    \b
    Examples:
      netmetrix alerts retry 17 && netmetrix alerts flush
    """
    with open_store(settings.load()) as store:
        done = store.retry_mail(ids)
    _check_ids("retry", done.unknown, "nothing changed")
    parts = []
    if done.changed:
        parts.append(f"{_ids(done.changed)} pending again")
    if done.unchanged:
        parts.append(f"{_ids(done.unchanged)} already pending")
    click.echo(f"retry: {', '.join(parts)}; `netmetrix alerts flush` sends it now", err=True)


def _check_ids(verb: str, unknown: tuple[int, ...], consequence: str) -> None:
    """Exit 2 naming ``unknown`` outbox ids, if any."""
    if not unknown:
        return
    raise UsageError(
        f"alerts {verb}: no undelivered mail with {_ids(unknown, 'id')} in the outbox;"
        f" {consequence} (see `netmetrix alerts outbox`)"
    )


def _ids(ids: tuple[int, ...], noun: str = "mail") -> str:
    """``mail 3`` / ``mail 3, 4``; ``id 7``."""
    return f"{noun} {', '.join(str(i) for i in ids)}"


# -- silences (#16) -------------------------------------------------------------------


@alerts.command()
@click.option(
    "-h",
    "--host",
    "hosts",
    multiple=True,
    metavar="NAME",
    help="Only alerts of this host: a name or a shell glob ('web*', quoted); repeatable."
    " Default: every host.",
)
@click.option("--metric", default="", metavar="M", help="Only alerts on this metric.")
@click.option(
    "--labels", default="", metavar="K=V[,K=V]", help="Only alerts of series with these labels."
)
@click.option("--for", "duration", metavar="DURATION", help="How long: 30m, 2h, 1d.")
@click.option("--until", metavar="TIME", help="Until when: ISO 8601 (UTC unless a zone is given).")
@click.option("--comment", required=True, metavar="TEXT", help="Why (shown with the silence).")
@click.pass_obj
def silence(
    settings: Settings,
    hosts: tuple[str, ...],
    metric: str,
    labels: str,
    duration: str | None,
    until: str | None,
    comment: str,
) -> None:
    """Silence alerts for a while: they notify no receiver.

    Silenced alerts are still evaluated and recorded (`alerts history` shows
    them as silenced), but no mail, webhook or Alertmanager hears of them.
    When the silence ends (or `alerts unsilence`) on an alert still firing,
    it notifies then.  Silences are kept in the store, so every collector
    sharing it honours them.  Prints the silence's id on stdout.

    \b
    Examples:
      netmetrix alerts silence -h db1 --for 2h --comment "disk swap, ticket 4711"
      netmetrix alerts silence -h 'web*' --metric cpu_percent --until 2026-12-01T08:00 --comment ok
      netmetrix alerts silence --metric disk_percent --labels mount=/backup --for 1d --comment ok
    """
    config = settings.load()
    now = time.time()
    new = _new_silence(hosts, metric, labels, duration, until, comment, now)
    with open_store(config) as store:
        silence_id = store.add_silence(new, now)
    click.echo(silence_id)
    what = ", ".join(hosts) if hosts else "every host"
    click.echo(f"silence: {silence_id} on {what} until {iso(new.ends)}", err=True)


def _new_silence(
    hosts: tuple[str, ...],
    metric: str,
    labels: str,
    duration: str | None,
    until: str | None,
    comment: str,
    now: float,
) -> NewSilence:
    """The silence asked for, checked: UsageError (exit 2) naming what is wrong."""
    import getpass

    from netmetrix.silences import new_silence

    try:
        return new_silence(
            hosts=hosts,
            metric=metric,
            labels=labels,
            duration=duration,
            until=until,
            comment=comment,
            author=getpass.getuser(),
            now=now,
        )
    except ValueError as err:
        raise UsageError(f"alerts silence: {err}") from None


@alerts.command()
@click.option("--all", "show_all", is_flag=True, help="Ended silences too.")
@format_option
@click.pass_obj
def silences(settings: Settings, show_all: bool, fmt: str) -> None:
    """List the silences in force (with --all, the ended ones too), oldest first.

    \b
    Examples:
      netmetrix alerts silences
      netmetrix alerts silences --all --format json
    """
    with open_store(settings.load()) as store:
        found = store.silences(time.time(), ended=show_all)
    rows = [silence_row(s) for s in found]
    render(rows, SILENCE_COLUMNS, fmt, sys.stdout)


@alerts.command()
@click.argument("silence_id", metavar="ID", type=click.IntRange(min=1))
@click.pass_obj
def unsilence(settings: Settings, silence_id: int) -> None:
    """End a silence now: alerts it kept quiet that still fire notify on the next run.

    \b
    Examples:
      netmetrix alerts silences
      netmetrix alerts unsilence 3
    """
    with open_store(settings.load()) as store:
        ended = store.end_silence(silence_id, time.time())
    if not ended:
        raise UsageError(
            f"alerts unsilence: no silence {silence_id} in force (see `netmetrix alerts silences`)"
        )
    click.echo(f"unsilence: silence {silence_id} ended", err=True)
