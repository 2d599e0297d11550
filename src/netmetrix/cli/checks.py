"""``netmetrix checks``: every custom check's state per host, like Nagios' service overview."""

from __future__ import annotations

import sys

import click

from netmetrix.cli._common import Settings, host_option, open_store, select_hosts
from netmetrix.render import format_option, render
from netmetrix.rows import CHECK_COLUMNS, check_row


def register(group: click.Group) -> None:
    """Add ``checks`` to the ``netmetrix`` group."""
    group.add_command(checks)


@click.command()
@host_option()
@format_option
@click.pass_obj
def checks(settings: Settings, hosts: tuple[str, ...], fmt: str) -> None:
    """List every custom check of every host with its state, as last reported.

    One row per (host, check) that `execute` or `watch` stored, by host then
    check: status (OK, WARNING, CRITICAL or UNKNOWN), since when the check has
    been in that status (ISO 8601 UTC), how long its last run took (seconds),
    when it last ran on the host (earlier than the last execute for an
    every= check), and the first line of the plugin's output.  Checks are
    configured in <checks> of config.xml (README, "Custom checks").

    \b
    Examples:
      netmetrix checks
      netmetrix checks -h 'web*'
      netmetrix checks --format json | jq -r '.[] | select(.status != "OK") | .host'
      netmetrix checks --format csv > checks.csv
    """
    config = settings.load()
    with open_store(config) as store:
        names = select_hosts(config, hosts, store).names if hosts else ()
        found = store.checks(names)
    render([check_row(c) for c in found], CHECK_COLUMNS, fmt, sys.stdout)
