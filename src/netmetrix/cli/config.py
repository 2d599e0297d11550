"""``netmetrix config init|check|show``: write, validate and explain config.xml."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from netmetrix.cli._common import HelpGroup, Settings, host_option, one, select_hosts
from netmetrix.config import load_config
from netmetrix.errors import ConfigError, NetmetrixError, UsageError
from netmetrix.format import count
from netmetrix.render import format_option, render

if TYPE_CHECKING:
    from netmetrix.config import Config, HostConfig, ResolvedHost

SETTING_COLUMNS = ("setting", "value", "source")


def register(group: click.Group) -> None:
    """Add ``config`` to the ``netmetrix`` group."""
    group.add_command(config)


@click.group(cls=HelpGroup)
def config() -> None:
    """Write, check and show config.xml.

    `init` writes a commented example, `check` validates a file without
    touching any host, `show` prints the settings netmetrix will really use.

    \b
    Examples:
      netmetrix config init && netmetrix config check
      netmetrix config show -h f4
    """


@config.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
@format_option
@click.pass_obj
def init(settings: Settings, path: Path | None, force: bool, fmt: str) -> None:
    """Write a commented example config.xml to PATH.

    PATH defaults to the --config file (./config.xml).  Every element is
    there with a comment saying what it does; edit the <hosts>, then run
    `netmetrix config check`.  An existing file is kept unless --force.

    \b
    Examples:
      netmetrix config init
      netmetrix config init /etc/netmetrix/config.xml
      netmetrix config init --force
    """
    from netmetrix.example_config import EXAMPLE_CONFIG

    target = path or settings.config_path
    _write(target, EXAMPLE_CONFIG, force=force)
    written = load_config(target)
    row = {"config": str(target), "hosts": len(written.hosts)}
    row["alert_rules"] = len(written.alerts.rules)
    check = "config check" if path is None else f"--config {target} config check"
    one(row, fmt, f"{target}: written; edit its <hosts>, then run `netmetrix {check}`")


def _write(target: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to a new file ``target``, or over it with ``force``; one-line errors."""
    try:
        with target.open("w" if force else "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise UsageError(
            f"{target}: already exists; keep it, or pass --force to overwrite it"
        ) from None
    except OSError as err:
        raise NetmetrixError(f"{target}: cannot write: {err.strerror or err}") from None


@config.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), required=False)
@format_option
@click.pass_obj
def check(settings: Settings, path: Path | None, fmt: str) -> None:
    """Validate config.xml and the files it names, without touching any host.

    PATH defaults to the --config file.  Besides the file itself, every
    host's key= file must exist and be a private key netmetrix can use
    without a passphrase, and the <database> directory must be a directory
    (a missing one is noted: it is created on first use), and every webhook's
    secret_env variable must be set.  Exit status 0
    when all is well; 2 with one `file:line: problem` line per problem on
    stderr.

    \b
    Examples:
      netmetrix config check
      netmetrix config check /etc/netmetrix/config.xml
      netmetrix config check --format json
    """
    from netmetrix.config import check_local_files
    from netmetrix.receivers import environment_problems
    from netmetrix.ssh import key_file_problem

    target = path or settings.config_path
    checked = load_config(target)
    local = check_local_files(checked, str(target), key_file_problem)
    unset = environment_problems(checked.receivers, str(target), os.environ)
    if local.problems or unset:
        raise ConfigError([*local.problems, *unset])
    for note in local.notes:
        click.echo(note, err=True)
    hosts, rules = len(checked.hosts), len(checked.alerts.rules)
    row = {"config": str(target), "ok": True, "hosts": hosts, "alert_rules": rules}
    one(row, fmt, f"{target}: OK, {count(hosts, 'host')}, {count(rules, 'alert rule')}")


@config.command()
@host_option()
@format_option
@click.pass_obj
def show(settings: Settings, hosts: tuple[str, ...], fmt: str) -> None:
    """Show the settings in effect, with where each one comes from.

    Host fields missing from config.xml are resolved the way `execute`
    resolves them: from ~/.ssh/config (HostName, Port, User, IdentityFile,
    ProxyJump), then SSH defaults.  Secrets are never shown: for the SMTP and
    PostgreSQL passwords only the environment variable and whether it is set,
    and only the host of a webhook's URL (a Slack URL's path is its secret).
    Receivers, checks (the command as the hosts run it) and alert rules name
    their config.xml line.  A source "default" means config.xml does not set it
    (the built-in value applies).

    \b
    Examples:
      netmetrix config show
      netmetrix config show -h f4
      netmetrix config show --format json | jq -r '.[] | select(.source == "~/.ssh/config")'
    """
    from netmetrix.config import effective_settings, host_settings

    shown = settings.load()
    selected = select_hosts(shown, hosts).hosts
    found = effective_settings(shown, os.environ) if not hosts else []
    resolved = asyncio.run(_resolve(shown, selected))
    for host, where in zip(selected, resolved, strict=True):
        found += host_settings(shown, host, where)
    render([dataclasses.asdict(s) for s in found], SETTING_COLUMNS, fmt, sys.stdout)


async def _resolve(config: Config, hosts: Sequence[HostConfig]) -> list[ResolvedHost]:
    """What ``execute`` would make of each host's SSH settings (``ssh.resolve_host``)."""
    from netmetrix.ssh import resolve_host

    return list(await asyncio.gather(*(resolve_host(h, config.ssh) for h in hosts)))
