"""The ``netmetrix alerts`` commands: what is firing, what happened, the outbox, flush.

Thin click commands: parse, call the store or ``notify``, render the rows with
``netmetrix.render`` on stdout (``--format table|json|csv``); logs go to
stderr.  ``register`` adds the group to the main one (see cli.py); nothing
here imports cli.py, and SQLAlchemy is imported inside the commands.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from netmetrix.cli_common import HelpGroup, host_option, stored_hosts
from netmetrix.errors import ExitStatus, UsageError
from netmetrix.render import format_option, iso, raw_option, render, value_cells

if TYPE_CHECKING:
    from netmetrix.cli import Settings
    from netmetrix.config import Config
    from netmetrix.store import Store

ACTIVE_COLUMNS = ("host", "metric", "labels", "state", "value", "rule", "severity", "since", "ts")
HISTORY_COLUMNS = ("ts", "event", "host", "metric", "labels", "value", "rule", "severity", "since")
OUTBOX_COLUMNS = (
    *("id", "created", "status", "recipient", "subject"),
    *("attempts", "last_attempt", "last_error", "delivered"),
)


def register(group: click.Group) -> None:
    """Add ``alerts`` to the ``netmetrix`` group."""
    group.add_command(alerts)


@contextmanager
def _open_store(config: Config) -> Iterator[Store]:
    from netmetrix.store import Store

    with Store.open(config.database) as store:
        yield store


def _host_filter(config: Config, store: Store, patterns: tuple[str, ...]) -> tuple[str, ...]:
    """The hosts ``-h`` names or matches, configured or stored (none given: no filter)."""
    names, problems = stored_hosts(config, store, patterns)
    if problems:
        raise UsageError("\n".join(problems))
    return names


@click.group(cls=HelpGroup)
def alerts() -> None:
    """Alert state, alert history and the mail outbox; deliver waiting mail.

    `execute` evaluates the <alert> rules of config.xml on every new sample and
    queues mail in the outbox in the same transaction as the samples; it then
    delivers the outbox.  Mail the SMTP server did not take stays there until
    the next `execute` or `alerts flush`.

    \b
    Examples:
      netmetrix alerts active                  # what is firing (or pending) now
      netmetrix alerts history -h f4           # what fired and resolved on f4
      netmetrix alerts outbox                  # mail not delivered yet
      netmetrix alerts flush                   # try to deliver it now
    """


@alerts.command()
@host_option
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
    with _open_store(config) as store:
        found = store.alerts_active(_host_filter(config, store, hosts))
    rows = [
        {
            "host": a.host,
            "metric": a.metric,
            "labels": a.labels,
            "state": a.state,
            "value": a.value,
            "rule": a.rule,
            "severity": a.severity,
            "since": iso(a.since),
            "ts": iso(a.ts),
        }
        for a in found
    ]
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
@host_option
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
    with _open_store(config) as store:
        events = store.alert_history(_host_filter(config, store, hosts), limit)
    rows = [
        {
            "ts": iso(e.ts),
            "event": e.kind,
            "host": e.host,
            "metric": e.metric,
            "labels": e.labels,
            "value": e.value,
            "rule": e.rule,
            "severity": e.severity,
            "since": iso(e.since),
        }
        for e in events
    ]
    render(rows, HISTORY_COLUMNS, fmt, sys.stdout, cells=value_cells(raw))


@alerts.command()
@host_option
@click.option("--all", "show_all", is_flag=True, help="Also list delivered mail.")
@_limit_option("With --all: at most this many mails, the newest.")
@format_option
@click.pass_obj
def outbox(
    settings: Settings, hosts: tuple[str, ...], show_all: bool, limit: int, fmt: str
) -> None:
    """List mail waiting in the outbox (with --all, delivered mail too), oldest first.

    One row per mail and recipient: status (pending; sending while another
    process holds it; delivered), how many attempts failed or succeeded, the
    last error, and when the SMTP server accepted it.

    \b
    Examples:
      netmetrix alerts outbox
      netmetrix alerts outbox -h 'db*'
      netmetrix alerts outbox --all -n 20 --format json
    """
    import time

    config = settings.load()
    with _open_store(config) as store:
        items = store.outbox(
            undelivered=not show_all,
            limit=limit if show_all else None,
            hosts=_host_filter(config, store, hosts),
        )
    now = time.time()
    rows: list[dict[str, Any]] = [
        {
            "id": item.id,
            "created": iso(item.created),
            "status": (
                "delivered"
                if item.delivered is not None
                else "sending"
                if item.claimed_until is not None and item.claimed_until > now
                else "pending"
            ),
            "recipient": item.recipient,
            "subject": item.subject,
            "attempts": item.attempts,
            "last_attempt": iso(item.last_attempt),
            "last_error": item.last_error,
            "delivered": iso(item.delivered),
        }
        for item in items
    ]
    render(rows, OUTBOX_COLUMNS, fmt, sys.stdout)


@alerts.command()
@click.pass_obj
def flush(settings: Settings) -> int:
    """Deliver the mail waiting in the outbox now.

    Uses the <smtp> settings of config.xml (the password from the environment
    variable that password_env names).  More waiting mail for one address
    than <alerts digest_over> goes as one digest.  Exit status 1 when some mail
    is still undelivered.

    \b
    Examples:
      SMTP_PASSWORD=... netmetrix alerts flush
    """
    from netmetrix import notify

    config = settings.load()
    with _open_store(config) as store:
        done = notify.deliver(store, config.smtp, digest_over=config.alerts.digest_over)
    sent = sum(len(mail.ids) for mail in done.sent)
    failed = sum(f.notifications for f in done.failed)
    if not (sent or failed or done.busy):
        click.echo("flush: the outbox is empty", err=True)
        return ExitStatus.OK
    parts = [f"{sent} delivered in {len(done.sent)} mail(s)"]
    if failed:
        parts.append(f"{failed} not delivered (kept in the outbox)")
    if done.busy:
        parts.append(f"{done.busy} being delivered by another netmetrix")
    click.echo("flush: " + ", ".join(parts), err=True)
    return ExitStatus.HOST_FAILED if failed else ExitStatus.OK
