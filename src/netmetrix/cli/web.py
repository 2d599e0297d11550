"""``netmetrix serve`` (the dashboard, /metrics, the JSON API) and ``netmetrix hash-password``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from netmetrix.cli._common import Settings, imports_begin, imports_done, open_store
from netmetrix.config import DEFAULT_LISTEN
from netmetrix.errors import ExitStatus, UsageError


def register(group: click.Group) -> None:
    """Add ``serve`` and ``hash-password`` to the ``netmetrix`` group."""
    group.add_command(serve)
    group.add_command(hash_password)


@click.command()
@click.option(
    "--listen",
    metavar="HOST:PORT",
    default=None,
    help=f"Where to listen. Default: <web listen>, else {DEFAULT_LISTEN} (this machine only).",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve off loopback without authentication (a WARNING says so). Not for the internet.",
)
@click.pass_obj
def serve(settings: Settings, listen: str | None, no_auth: bool) -> int:
    """Serve the dashboard, Prometheus /metrics and the JSON API over the store.

    Read-only: nothing served changes the store, config.xml or a host.  Pages
    show the fleet (/), each host's charts (/hosts/NAME) and alerts (/alerts);
    /metrics is Prometheus text; /api/v1/ answers with the same JSON as
    --format json; /healthz says the server is up.  It listens on this
    machine only unless --listen or <web listen> says otherwise, and then
    needs <web> credentials (or --no-auth).  SIGTERM or Ctrl-C stop it.

    \b
    Examples:
      netmetrix serve                          # http://127.0.0.1:8470/
      netmetrix serve --listen 0.0.0.0:8470    # with <web user=... password_file=...>
    """
    imports_begin(settings)
    from netmetrix.web.server import run_serve

    config = settings.load()
    imports_done(settings)
    with open_store(config) as store:
        run_serve(config, store, listen=listen, no_auth=no_auth)
    return ExitStatus.OK


@click.command("hash-password")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the hash to this file (mode 0600) instead of stdout.",
)
def hash_password(output: Path | None) -> int:
    """Make the password hash for <web user= password_file=>.

    Asks for the password twice on a terminal, or reads one line from stdin;
    never from the command line (it would show in ps and shell history).

    \b
    Examples:
      netmetrix hash-password --output /etc/netmetrix/web.hash
      netmetrix hash-password < password.txt > web.hash
    """
    from netmetrix.web.auth import hash_password as make_hash

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise UsageError("hash-password: the password is empty")
    line = make_hash(password) + "\n"
    if output is None:
        click.echo(line, nl=False)
    else:
        _write_private(output, line.encode("ascii"))
        click.echo(f"hash-password: wrote {output} (mode 0600)", err=True)
    return ExitStatus.OK


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, readable by its owner only, whatever the umask."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
    except OSError as exc:
        raise UsageError(f"hash-password: cannot write {path}: {exc.strerror}") from exc
