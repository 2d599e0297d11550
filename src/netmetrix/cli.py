"""The ``netmetrix`` command line: parse, call the library, render.

Heavy imports (asyncssh, SQLAlchemy) happen inside the commands so that
``netmetrix --help`` starts fast.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from netmetrix.cli_common import HelpGroup, host_option
from netmetrix.errors import ExitStatus, NetmetrixError

if TYPE_CHECKING:
    from netmetrix.config import Config
    from netmetrix.fleet import HostResult
    from netmetrix.store import Store

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


@dataclass(frozen=True, slots=True)
class Settings:
    config_path: Path
    debug: bool

    def load(self) -> Config:
        from netmetrix.config import load_config

        return load_config(self.config_path)


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
    envvar="NETMETRIX_CONFIG",
    default="config.xml",
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
      netmetrix --config /etc/netmetrix/config.xml -q execute
    """
    _setup_logging(verbose, quiet)
    ctx.obj = Settings(config_path=config_path, debug=debug)


@cli.command()
@host_option
@click.pass_obj
def upload(settings: Settings, hosts: tuple[str, ...]) -> int:
    """Put the probe and a fresh random key on every host.

    Writes <directory>/<script> (mode 0700) and <script>.<collector_id>.key
    (mode 0600; the id is this store's, see `db info`) atomically over SFTP,
    or over an exec channel when the host has no SFTP.  Other collectors'
    keys on the same host are left alone.  Run it once before `execute`, and
    again to rotate the keys.  One upload per store at a time: a second one
    stops at once, naming the running one (exit 1).

    \b
    Examples:
      netmetrix upload
      netmetrix upload -h f4
    """
    from netmetrix import collect

    return _fleet_command(settings, hosts, "upload", collect.upload)


@cli.command()
@host_option
@click.pass_obj
def execute(settings: Settings, hosts: tuple[str, ...]) -> int:
    """Run the probe on every host and store the verified metrics.

    Every run sends a fresh challenge; a host whose answer does not verify is
    reported and nothing of it is stored.  Each host also gets an `up` sample
    (1 answered and verified, 0 not).  Then the <alert> rules are evaluated
    and their mail sent, for at most <smtp deadline> (see `netmetrix alerts
    --help`).  Exit status 1 when any host failed, some mail stayed
    undelivered (it is kept and retried) or was refused for good (a dead
    letter, counted by this run only).

    \b
    Examples:
      netmetrix execute
      netmetrix -v execute -h f4      # also log every metric saved
    """
    from netmetrix import collect

    return _fleet_command(settings, hosts, "execute", collect.execute, then=_deliver)


def _deliver(config: Config, store: Store) -> int:
    """Send the mail the run queued: here in the main thread, where Ctrl-C can stop it."""
    from netmetrix import notify

    done = notify.deliver(store, config.smtp, digest_over=config.alerts.digest_over)
    for line in done.problems("execute"):
        click.echo(line, err=True)
    return ExitStatus.OK if done.ok else ExitStatus.HOST_FAILED


def _fleet_command(
    settings: Settings,
    names: tuple[str, ...],
    verb: str,
    job: Callable[..., Any],
    *,
    then: Callable[[Config, Store], int] | None = None,
) -> int:
    """Run ``job`` over the selected hosts, then ``then`` (after the fan-out) if given."""
    from netmetrix import collect
    from netmetrix.fleet import summarize
    from netmetrix.store import Store

    config = settings.load()
    selected = config.select(names)
    # The imports' objects live as long as the process: keep the cyclic GC from
    # rescanning them while a fleet churns through short-lived ones (bench/RESULTS.md).
    gc.freeze()
    started = time.monotonic()
    with Store.open(config.database) as store:
        with _progress(verb, len(selected)) as advance:
            results = asyncio.run(job(config, store, selected, progress=advance))
        summary = summarize(results, time.monotonic() - started)
        click.echo(summary.line(verb), err=True)
        hint = collect.setup_hint(results, config)
        if hint is not None:
            click.echo(f"{verb}: {hint}", err=True)
        status: int = ExitStatus.OK if summary.all_ok else ExitStatus.HOST_FAILED
        if then is not None:
            status = max(status, then(config, store))
    return status


@contextmanager
def _progress(verb: str, total: int) -> Iterator[Callable[[HostResult[Any]], None] | None]:
    """A progress bar on stderr when it is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(verb, total=total)
        yield lambda _result: bar.advance(task)


# Command groups live in their own modules (cli_<topic>.py), which import
# nothing from here, and register on `cli` defined above.
from netmetrix import cli_alerts, cli_query  # noqa: E402
from netmetrix.cli_demo import demo  # noqa: E402

cli_query.register(cli)  # hosts, metrics, config, db
cli_alerts.register(cli)  # alerts active|history|outbox|flush|retry|drop
cli.add_command(demo)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map every error to a message and an exit code.

    Expected errors are one line; an unexpected one is one ``Error:`` line plus a
    hint, and its traceback only with ``--debug`` (httpie's ``main``/``program``).
    """
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        result = cli.main(args=argv, prog_name="netmetrix", standalone_mode=False)
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


if __name__ == "__main__":
    sys.exit(main())
