"""The ``netmetrix`` command line: parse, call the library, render.

One module per command group (``fleet``: upload and execute; ``watch``; ``web``: serve; ``hosts``,
``metrics``, ``alerts``, ``config``, ``db``, ``demo``), each registered on the
main group here; what they share is in ``_common``, and none imports this
module.  ``main`` is the only place that turns errors into exit statuses.
Heavy imports (asyncssh, SQLAlchemy) happen inside the commands so that
``netmetrix --help`` starts fast.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import click

from netmetrix.cli import (
    alerts,
    check,
    checks,
    config,
    db,
    demo,
    fleet,
    hosts,
    metrics,
    trust,
    watch,
    web,
)
from netmetrix.cli._common import HelpGroup, Settings
from netmetrix.config import CONFIG_ENV, DEFAULT_CONFIG
from netmetrix.errors import ExitStatus, NetmetrixError

__all__ = ["cli", "main"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # asyncssh logs every channel at INFO: only show it with -vv.
    chatty = logging.DEBUG if verbose > 1 else logging.WARNING
    for name in ("asyncssh", "alembic", "asyncio"):  # routine steps at INFO/DEBUG
        logging.getLogger(name).setLevel(chatty)


@click.group(
    cls=HelpGroup,  # `netmetrix` alone prints this help and exits 0
    context_settings={"help_option_names": ["--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=CONFIG_ENV,
    default=DEFAULT_CONFIG,
    show_default=True,
    help="config.xml to use (or set NETMETRIX_CONFIG).",
)
@click.option("-v", "--verbose", count=True, help="More log lines: -v per-metric, -vv SSH too.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings, errors and the summary.")
@click.option("--debug", is_flag=True, help="Show the traceback of any error.")
@click.version_option(package_name="netmetrix", prog_name="netmetrix")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, verbose: int, quiet: bool, debug: bool) -> None:
    """Collect system metrics from a fleet of machines over SSH.

    netmetrix puts one small Python probe on every host (`upload`), runs it on
    all of them at once (`execute`), verifies each host's sealed answer and
    stores the samples in SQLite or PostgreSQL.

    \b
    Examples:
      netmetrix upload                 # probe + fresh key on every host
      netmetrix execute                # collect from every host
      netmetrix execute -h f4 -h f5    # only these hosts
      netmetrix execute -h 'web*'      # hosts whose name starts with web
      netmetrix execute -h @db -h role=cache   # group db, and hosts labelled role=cache
      netmetrix --config /etc/netmetrix/config.xml -q execute
    """
    _setup_logging(verbose, quiet)
    # main() passes True when it is the process's entry (see _common.imports_done)
    ctx.obj = Settings(config_path=config_path, debug=debug, owns_process=ctx.obj is True)


for _group in (trust, check, fleet, watch, web, hosts, checks, metrics, config, db, alerts, demo):
    _group.register(cli)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map every error to a message and an exit code.

    Expected errors are one line; an unexpected one is one ``Error:`` line plus a
    hint, and its traceback only with ``--debug`` (httpie's ``main``/``program``).
    """
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # argv None: the console script, a process that runs this one command (Settings)
        result = cli.main(args=argv, prog_name="netmetrix", standalone_mode=False, obj=argv is None)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo("Aborted.", err=True)
        return ExitStatus.INTERRUPTED
    except NetmetrixError as exc:
        if debug:
            traceback.print_exc()
        for line in str(exc).splitlines():
            click.echo(line if exc.exit_code == ExitStatus.USAGE else f"Error: {line}", err=True)
        return exc.exit_code
    except Exception as exc:
        if debug:
            traceback.print_exc()
        detail = " ".join(str(exc).split())[:500]
        click.echo(f"Error: unexpected {type(exc).__name__}: {detail}".rstrip(": "), err=True)
        if not debug:
            click.echo(
                "This is a bug in netmetrix: run the command again with --debug"
                " (netmetrix --debug ...) to see the traceback, and report it.",
                err=True,
            )
        return ExitStatus.HOST_FAILED
    return int(result or 0)
