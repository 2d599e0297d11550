"""What every command module shares: the ``-h`` option, host selection, groups' no-args help.

Imported by cli.py, cli_query.py and cli_alerts.py; it imports none of them.
Which hosts a pattern names is decided in one place, ``config.select_names``
(names and shell globs); this module adds the click side and the hosts the
store knows of.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from netmetrix.config import select_names

if TYPE_CHECKING:
    from netmetrix.config import Config
    from netmetrix.store import Store

_HOST_HELP = "Only this host: a name or a shell glob ('web*', quoted); repeatable."


def host_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``-h/--host NAME`` (repeatable, globs allowed) as ``hosts``; none given: every host."""
    return click.option(
        "-h",
        "--host",
        "hosts",
        multiple=True,
        metavar="NAME",
        help=f"{_HOST_HELP} Default: every host.",
    )(func)


def required_host_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``host_option`` where at least one ``-h`` is needed (``-h '*'`` for all)."""
    return click.option(
        "-h",
        "--host",
        "hosts",
        multiple=True,
        required=True,
        metavar="NAME",
        help=f"{_HOST_HELP} -h '*' for every host.",
    )(func)


def stored_hosts(
    config: Config, store: Store, patterns: Sequence[str]
) -> tuple[tuple[str, ...], list[str]]:
    """(names, problems) for ``patterns`` over the configured hosts and those the store knows.

    A host removed from config.xml keeps its samples and alerts: it can still be asked for.
    No patterns: no names (no filter) and no problems.
    """
    if not patterns:
        return (), []
    configured = [h.name for h in config.hosts]
    known = configured + sorted(store.host_names().difference(configured))
    return select_names(patterns, known)


class HelpGroup(click.Group):
    """A group that, given no arguments at all, prints its help on stdout and exits 0."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(0)
        return super().parse_args(ctx, args)
