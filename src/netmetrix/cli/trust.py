"""``netmetrix trust``: show and record the host keys of hosts not in known_hosts yet."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from netmetrix.cli._common import Settings, host_option, select_hosts
from netmetrix.errors import ExitStatus
from netmetrix.format import count
from netmetrix.render import format_option, render

if TYPE_CHECKING:
    from netmetrix.trust import Seen


def register(group: click.Group) -> None:
    """Add ``trust`` to the ``netmetrix`` group."""
    group.add_command(trust)


@click.command()
@host_option()
@click.option("--yes", is_flag=True, help="Record every new key without asking (for scripts).")
@format_option
@click.pass_obj
def trust(settings: Settings, hosts: tuple[str, ...], yes: bool, fmt: str) -> int:
    """Learn the host keys of hosts that known_hosts does not list yet.

    Asks each selected host for its SSH host key (no login) and shows its type
    and SHA256 fingerprint, to compare with `ssh-keygen -lf` on the host.  New
    keys are recorded in config.xml's known_hosts (<ssh known_hosts>): all of
    them with --yes, else after a yes to each on the terminal.  Without a
    terminal and without --yes nothing is recorded.  A key that differs from a
    recorded one (changed) or is marked @revoked is listed, never written.
    Exit status 0 when every selected host's key is trusted afterwards, else 1.

    \b
    Examples:
      netmetrix trust                  # ask about each new key
      netmetrix trust --yes -h @web    # record the web group's keys
    """
    from netmetrix import trust as library
    from netmetrix.ssh import HostKeys

    config = settings.load()
    selected = select_hosts(config, hosts).hosts
    keys = HostKeys(config.ssh)
    seen = asyncio.run(library.scan(config, selected, keys))
    ask = sys.stdin.isatty() and not yes
    done = library.decide(keys, seen, lambda one: yes or _ask(one)) if yes or ask else seen
    render([one.row() for one in done], library.COLUMNS, fmt, sys.stdout)
    _summary(done, config.ssh.known_hosts, asked=ask or yes)
    return ExitStatus.OK if library.all_good(done) else ExitStatus.HOST_FAILED


def _ask(one: Seen) -> bool:
    """The question for one new key, on the terminal: no unless the answer is yes."""
    row = one.row()
    question = f"{one.host} ({row['address']}): {row['key_type']} {row['fingerprint']}: trust it?"
    return click.confirm(question, default=False, err=True)


def _summary(done: Sequence[Seen], known_hosts: Path, *, asked: bool) -> None:
    """One line on stderr: what was recorded, and what is left to do."""
    states = [one.state for one in done]
    added, new = states.count("added"), states.count("new")
    bad = len(states) - states.count("known") - added - new - states.count("declined")
    parts = [f"{count(added, 'key')} recorded in {known_hosts}"]
    if new and not asked:
        parts.append(
            f"{count(new, 'new key')} not recorded: no terminal to ask on; check the"
            " fingerprints, then run `netmetrix trust --yes`"
        )
    if bad:
        parts.append(f"{count(bad, 'host')} changed, revoked or unreachable")
    click.echo("trust: " + "; ".join(parts), err=True)
