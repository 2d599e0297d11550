"""``netmetrix check``: whether each host is ready for ``execute``, and what it needs if not."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from netmetrix.cli._common import Settings, host_option, open_store, select_hosts
from netmetrix.errors import ExitStatus
from netmetrix.render import format_option, render


def register(group: click.Group) -> None:
    """Add ``check`` to the ``netmetrix`` group."""
    group.add_command(check)


@click.command()
@host_option()
@format_option
@click.pass_obj
def check(settings: Settings, hosts: tuple[str, ...], fmt: str) -> int:
    """Check that every host is ready for execute, like `ansible -m ping`.

    Per host: reachable, host key trusted (see `trust`), login, the python
    that runs the probe (version; "not needed" for probe="sh" hosts, whose
    openssl is checked instead), the probe file (present and the one this
    netmetrix uploads), the key (a probe run with a fresh challenge whose
    sealed answer must verify) and the clock offset to this machine (seconds,
    a problem past 60).  Nothing is stored.  JSON: one object per host with
    `host`, `ready`, `problems` (plain-language strings) and one field per
    aspect (null when not reached).  Exit status 0 only when every selected
    host is ready, else 1.

    \b
    Examples:
      netmetrix check
      netmetrix check -h @web --format json | jq -r '.[] | select(.ready | not) | .host'
    """
    from netmetrix import check as library
    from netmetrix import oneshot, ssh
    from netmetrix.collect import probe_source

    config = settings.load()
    selected = select_hosts(config, hosts).hosts
    with open_store(config) as store:
        stored, collector = store.host_keys([h.name for h in selected]), store.collector_id()
    session = oneshot.ProbeSession(ssh.HostKeys(config.ssh), ssh.USER_FILES, collector)
    found = asyncio.run(library.check_hosts(config, selected, stored, session, probe_source()))
    render([one.row() for one in found], library.COLUMNS, fmt, sys.stdout, cells=_CELLS)
    return ExitStatus.OK if all(one.ready for one in found) else ExitStatus.HOST_FAILED


def _flag(name: str) -> Any:
    return lambda row: "-" if row[name] is None else ("yes" if row[name] else "no")


_CELLS = {
    **{name: _flag(name) for name in ("ready", "reachable", "host_key", "login", "key")},
    "python": lambda row: "-" if row["python"] is None else row["python"] or "none",
    "probe": lambda row: row["probe"] or "-",
    "clock_offset": lambda row: (
        "-" if row["clock_offset"] is None else f"{row['clock_offset']:+.2f}s"
    ),
    "problems": lambda row: "; ".join(row["problems"]),
}
