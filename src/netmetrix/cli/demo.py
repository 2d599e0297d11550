"""``netmetrix demo``: the whole job on a local fleet inside this process (``netmetrix.demo``)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from netmetrix.cli._common import Settings, imports_begin, imports_done
from netmetrix.errors import require_extra


def register(group: click.Group) -> None:
    """Add ``demo`` to the ``netmetrix`` group."""
    group.add_command(demo)


@click.command()
@click.option(
    "--hosts",
    "count",
    type=click.IntRange(1, 100),
    default=5,
    show_default=True,
    help="How many SSH servers (demo hosts) to start.",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Write config.xml, known_hosts, the key and the database to DIR (new or empty) "
    "and keep them.  Default: a temporary directory, removed at exit.",
)
@click.option(
    "--serve",
    is_flag=True,
    help="At the end, keep the dashboard up (and watch collecting) until Ctrl-C, "
    "instead of for a few seconds.",
)
@click.pass_obj
def demo(settings: Settings, count: int, keep: Path | None, serve: bool) -> int:
    """Run the whole job on an embedded local fleet.

    Starts N SSH servers on 127.0.0.1 (each with its own host key, accepting
    only a key the demo makes) and an SMTP server that keeps what it
    receives, writes a config.xml for them with an alert rule that always
    fires, then runs the real `upload` and `execute` twice and shows the log
    lines, the stored metrics and the mail.  It ends with the dashboard of
    `netmetrix serve` on http://127.0.0.1:8470/ (another port when that one
    is taken) for a few seconds, or with --serve until Ctrl-C while `watch`
    keeps collecting.  Needs no root, no sshd and no network; everything it
    starts is stopped when it ends, also on Ctrl-C.  Exit status 1 when some
    demo host failed.

    \b
    Examples:
      netmetrix demo
      netmetrix demo --serve                   # then open http://127.0.0.1:8470/
      netmetrix demo --hosts 3 --keep ./demo
    """
    require_extra("netmetrix demo", "aiosmtpd", "demo")
    imports_begin(settings)
    from netmetrix import demo as demo_module

    imports_done(settings)

    # aiosmtpd logs every SMTP session at INFO: as chatty as asyncssh, so shown with -vv.
    chatty = logging.getLogger("asyncssh").getEffectiveLevel()
    logging.getLogger("mail.log").setLevel(chatty)
    return demo_module.run(hosts=count, keep=keep, serve=serve, out=sys.stdout, err=sys.stderr)
