"""Query and housekeeping commands: ``hosts``, ``metrics``, ``config``, ``db``.

Thin click commands: parse, call the store or ``dbadmin``, render the rows
with ``netmetrix.render`` on stdout (``--format table|json|csv``).  Commands
that report one action (``config check``, ``db prune``...) print one line for
people as their table and one flat object as JSON/CSV.  ``register`` adds the
commands to the main group (see cli.py); nothing here imports cli.py, and the
heavy imports (SQLAlchemy, asyncssh, plotext) happen inside the commands.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from netmetrix.cli_common import HelpGroup, host_option, required_host_option, stored_hosts
from netmetrix.config import Config, HostConfig, load_config, parse_duration, unknown_name
from netmetrix.errors import ConfigError, NetmetrixError, UsageError
from netmetrix.render import (
    format_option,
    iso,
    labels_text,
    number,
    raw_option,
    render,
    value_cells,
)

if TYPE_CHECKING:
    import asyncssh

    from netmetrix.cli import Settings
    from netmetrix.pipeline import Forgotten
    from netmetrix.store import Store, StoredSample

SAMPLE_COLUMNS = ("host", "metric", "labels", "ts", "value")
HOST_COLUMNS = ("host", "address", "port", "last_seen", "last_error", "probe_version", "up")
SETTING_COLUMNS = ("setting", "value", "source")
DB_INFO_COLUMNS = (
    *("url", "backend", "collector_id", "schema_version", "schema_head"),
    *("series", "samples", "size_bytes", "oldest", "newest"),
)
SSH_CONFIG = "~/.ssh/config"
SSH_PORT = 22  # when neither config.xml nor ~/.ssh/config gives one


def register(group: click.Group) -> None:
    """Add this module's commands to the ``netmetrix`` group."""
    for command in (hosts, metrics, config, db):
        group.add_command(command)


# ---------------------------------------------------------------- parameters


class _When(click.ParamType[float]):
    """A point in time: a duration ago (``30m``, ``1h``, ``2d``) or ISO 8601 (UTC if no zone)."""

    name = "WHEN"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        try:
            return time.time() - parse_duration(text)
        except ValueError:
            pass
        try:
            stamp = dt.datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is neither a duration ago (30m, 1h, 2d) nor an ISO 8601 time"
                " (2026-11-24T10:00Z)",
                param,
                ctx,
            )
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        return stamp.timestamp()


class _Duration(click.ParamType[float]):
    """Seconds: a number with s, m, h or d (``config.parse_duration``)."""

    name = "DURATION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


class _Labels(click.ParamType[dict[str, str]]):
    """``k=v[,k=v]`` -> dict; an empty string is the series without labels."""

    name = "K=V[,K=V]"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dict[str, str]:
        if isinstance(value, dict):
            return value
        labels: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in str(value).split(","))):
            key, sep, val = (part.strip() for part in item.partition("="))
            if not sep or not key or key in labels:
                self.fail(f"{value!r}: give name=value pairs, e.g. mount=/ or mount=/,dev=sda")
            labels[key] = val
        return labels


WHEN, DURATION, LABELS = _When(), _Duration(), _Labels()


# ---------------------------------------------------------------- helpers


@contextmanager
def _open_store(config: Config, *, upgrade: bool = True) -> Iterator[Store]:
    from netmetrix.store import Store

    with Store.open(config.database, upgrade=upgrade) as store:
        yield store


def _explicit_format(ctx: click.Context) -> bool:
    source = ctx.get_parameter_source("fmt")
    return source is not None and source != click.core.ParameterSource.DEFAULT


def _one(row: Mapping[str, Any], columns: Sequence[str], fmt: str, line: str) -> None:
    """A one-record result: ``line`` as the table, the record as JSON/CSV."""
    if fmt == "table":
        click.echo(line)
    else:
        render([row], columns, fmt, sys.stdout)


def _select(
    store: Store, cfg: Config, host_patterns: Sequence[str], metric_names: Sequence[str]
) -> tuple[str, ...]:
    """The hosts ``-h`` selects (none: no filter); UsageError naming every unknown host/metric.

    Hosts are those of config.xml and those the store knows (removed from the
    config, still stored); metrics those of the catalogue, ``up`` and the stored ones.
    """
    hosts, problems = stored_hosts(cfg, store, host_patterns)
    if metric_names:
        from netmetrix.model import UP
        from netmetrix.probe import METRICS

        known = {name for name, *_ in METRICS} | {UP} | store.metric_names()
        asked = dict.fromkeys(metric_names)
        problems += [unknown_name("metric", m, known) for m in asked if m not in known]
    if problems:
        raise UsageError("\n".join(problems))
    return hosts


def sample_row(sample: StoredSample) -> dict[str, Any]:
    """The JSON shape of a sample: host, metric, labels (an object), ts (ISO 8601 UTC), value."""
    return {
        "host": sample.host,
        "metric": sample.metric,
        "labels": sample.labels,
        "ts": iso(sample.ts),
        "value": sample.value,
    }


def _size(n: int | None) -> str:
    if n is None:
        return "unknown size"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    """``14400.0`` -> ``4h``: the largest unit that divides it, as config.xml writes it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{number(seconds)}s"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ---------------------------------------------------------------- hosts


@click.group(invoke_without_command=True, subcommand_metavar="[COMMAND [ARGS]...]")
@host_option
@format_option
@click.pass_context
def hosts(ctx: click.Context, hosts: tuple[str, ...], fmt: str) -> None:
    """List every configured host with the outcome of its last run.

    One row per host of config.xml, in its order, collected or not: the
    address, the SSH port (config.xml's, else ~/.ssh/config's, else 22),
    when it last answered (last_seen, ISO 8601 UTC), the error of its last
    run if that failed, the probe version, and up (1 answered and verified
    on its last run, 0 not, empty before its first run or while the host is
    not set up).  `hosts forget` deletes what the store holds of hosts removed
    from config.xml.

    \b
    Examples:
      netmetrix hosts
      netmetrix hosts -h 'db*'
      netmetrix hosts --format json | jq -r '.[] | select(.up == 0) | .host'
      netmetrix hosts --format csv > hosts.csv
      netmetrix hosts forget old-web1
    """
    if ctx.invoked_subcommand is not None:
        if hosts or _explicit_format(ctx):
            raise click.UsageError(
                f"-h and --format go after the command: netmetrix hosts {ctx.invoked_subcommand}"
                " ... --format FORMAT"
            )
        return
    settings: Settings = ctx.obj
    cfg = settings.load()
    selected = cfg.select(hosts)
    with _open_store(cfg) as store:
        stored = {row.name: row for row in store.hosts()}
    ports = _ports(selected)
    rows = []
    for host in selected:
        row = stored.get(host.name)
        rows.append(
            {
                "host": host.name,
                "address": host.target,
                "port": ports[host.name],
                "last_seen": iso(row.last_seen) if row else None,
                "last_error": row.last_error if row else None,
                "probe_version": row.probe_version if row else None,
                "up": None if row is None or row.up is None else int(row.up),
            }
        )
    render(rows, HOST_COLUMNS, fmt, sys.stdout)


FORGET_COLUMNS = ("host", "series", "samples", "keys", "alerts", "resolved", "mails")


@hosts.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option(
    "--force",
    is_flag=True,
    help="Also forget hosts still in config.xml (they start afresh: run upload for them).",
)
@format_option
@click.pass_obj
def forget(settings: Settings, names: tuple[str, ...], yes: bool, force: bool, fmt: str) -> int:
    """Delete everything the store holds of hosts removed from config.xml.

    NAME is a host name or a shell glob ('old-*', quoted), matched against
    config.xml's hosts and the hosts the store knows.  Deletes their series
    and samples (`metrics`), keys, alert state (`alerts active`) and host row,
    in one transaction, and says what went; the alert history and the mail
    outbox are kept.  A firing alert of such a host is resolved first: a
    RESOLVED mail "(host removed)" is queued for the next `execute` or
    `alerts flush`.  A host still in config.xml is refused unless --force,
    which resets it: it needs `netmetrix upload -h NAME` before `execute`
    collects from it again.  Asks before deleting unless --yes; without a
    terminal to ask on, --yes is required.  Exit status 1 when the answer is no.

    \b
    Examples:
      netmetrix hosts forget old-web1
      netmetrix hosts forget 'old-*' --yes --format json
    """
    from netmetrix import pipeline

    cfg = settings.load()
    with _open_store(cfg) as store:
        selected, problems = stored_hosts(cfg, store, names)
        if problems:
            raise UsageError("\n".join(problems))
        configured = {h.name for h in cfg.hosts}
        kept = [n for n in selected if n in configured]
        if kept and not force:
            raise UsageError(
                f"hosts forget: {_names(kept)} still in {cfg.path.name}: remove"
                f" {'it' if len(kept) == 1 else 'them'} there first, or add --force to reset"
                " (then run `netmetrix upload` for them)"
            )
        if not yes and not _confirm(selected):
            click.echo("hosts forget: nothing forgotten", err=True)
            return 1
        done = pipeline.forget(
            store, selected, cfg.alerts.rules, configured=configured, now=time.time()
        )
    rows = [{column: getattr(f, column) for column in FORGET_COLUMNS} for f in done]
    if fmt != "table":
        render(rows, FORGET_COLUMNS, fmt, sys.stdout)
        return 0
    for f in done:
        click.echo(_forgot_line(f))
    mails = sum(f.mails for f in done)
    if mails:
        click.echo(
            f"{_plural(mails, 'RESOLVED mail')} queued for the next `netmetrix execute`"
            " or `netmetrix alerts flush`",
            err=True,
        )
    return 0


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:10])
    return f"{shown} and {len(names) - 10} more" if len(names) > 10 else shown


def _confirm(names: Sequence[str]) -> bool:
    """Ask on the terminal; UsageError when there is none (cron, a pipe): say --yes."""
    if not sys.stdin.isatty():
        raise UsageError(
            "hosts forget: stdin is not a terminal to ask on: add --yes to forget without asking"
        )
    question = (
        f"Forget {_plural(len(names), 'host')} ({_names(names)}): every sample, key and alert"
        " state stored for them?"
    )
    return click.confirm(question, default=False, err=True)


def _forgot_line(f: Forgotten) -> str:
    """``forgot f4: 23 series, 1,234 samples, 1 key, 2 alerts (1 resolved), host row``."""
    if not (f.series or f.keys or f.alerts or f.row):
        return f"forgot {f.host}: nothing was stored for it"
    parts = [
        f"{f.series} series",
        _plural(f.samples, "sample"),
        _plural(f.keys, "key"),
        _plural(f.alerts, "alert") + (f" ({f.resolved} firing, resolved)" if f.resolved else ""),
    ]
    if f.row:
        parts.append("host row")
    return f"forgot {f.host}: {', '.join(parts)}"


def _ports(selected: Sequence[HostConfig]) -> dict[str, int | None]:
    """The port execute connects each host on; None when ~/.ssh/config cannot be read."""
    ports: dict[str, int | None] = {h.name: h.port for h in selected}
    ask = [h for h in selected if h.port is None]
    # asyncssh reads only ~/.ssh/config; without one, skip building options per host
    if not ask or not os.access(Path(SSH_CONFIG).expanduser(), os.R_OK):
        return {name: port or SSH_PORT for name, port in ports.items()}

    async def resolve() -> list[asyncssh.SSHClientConnectionOptions | None]:
        return await asyncio.gather(*(_options_without_keys(h) for h in ask))

    for host, options in zip(ask, asyncio.run(resolve()), strict=True):
        ports[host.name] = None if options is None else options.port
    return ports


# ---------------------------------------------------------------- metrics


@click.group(cls=HelpGroup)
def metrics() -> None:
    """Read stored samples: the latest of every series, or one metric's history.

    A series is a host, a metric and a label set (disk_percent has one per
    mount).  Rows are host, metric, labels, ts (ISO 8601 UTC) and value.

    \b
    Examples:
      netmetrix metrics latest -h f4
      netmetrix metrics history -h f4 -m disk_percent --labels mount=/ --since 1d
    """


@metrics.command()
@host_option
@click.option(
    "-m",
    "--metric",
    "metric_names",
    multiple=True,
    metavar="NAME",
    help="Only this metric (repeatable), e.g. disk_percent or up. Default: every metric.",
)
@format_option
@raw_option
@click.pass_obj
def latest(
    settings: Settings,
    hosts: tuple[str, ...],
    metric_names: tuple[str, ...],
    fmt: str,
    raw: bool,
) -> None:
    """Show the newest sample of every matching series.

    One row per series, sorted by host, metric and labels.  A host or metric
    name that netmetrix does not know is an error (exit status 2); a known
    one without samples gives no rows.

    \b
    Examples:
      netmetrix metrics latest
      netmetrix metrics latest -h f4 -h f5 -m disk_percent
      netmetrix metrics latest -h 'web*' -m load1
      netmetrix metrics latest -m up --format csv
      netmetrix metrics latest -m cpu_percent --format json | jq 'max_by(.value)'
    """
    cfg = settings.load()
    with _open_store(cfg) as store:
        samples = store.latest(_select(store, cfg, hosts, metric_names), metric_names)
    rows = [sample_row(s) for s in samples]
    render(rows, SAMPLE_COLUMNS, fmt, sys.stdout, cells=value_cells(raw))


@metrics.command()
@required_host_option
@click.option("-m", "--metric", "metric_name", required=True, metavar="NAME", help="The metric.")
@click.option(
    "--labels",
    type=LABELS,
    default=None,
    help="Only the series with exactly these labels (mount=/). Default: every series.",
)
@click.option(
    "--since",
    type=WHEN,
    default=None,
    help="From this time on (inclusive): a duration ago (1h, 2d) or ISO 8601 (UTC if no zone).",
)
@click.option("--until", type=WHEN, default=None, help="Up to this time (inclusive). Default: now.")
@click.option("--plot", is_flag=True, help="Draw a chart in the terminal instead of the table.")
@format_option
@raw_option
@click.pass_context
def history(
    ctx: click.Context,
    hosts: tuple[str, ...],
    metric_name: str,
    labels: dict[str, str] | None,
    since: float | None,
    until: float | None,
    plot: bool,
    fmt: str,
    raw: bool,
) -> None:
    """Show the samples of one metric of some hosts, oldest first.

    Every series of the metric (each label set) of every host that -h
    names or matches, or with --labels one per host; the rows of several
    hosts are interleaved by time.  --since and --until take a duration ago
    (30m, 1h, 2d) or an ISO 8601 time (2026-11-24T10:00Z; UTC when no zone
    is given); both are inclusive.  --plot draws the samples as a chart in
    the terminal, one line per host and label set.

    \b
    Examples:
      netmetrix metrics history -h f4 -m disk_percent --labels mount=/ --since 1d
      netmetrix metrics history -h f4 -m cpu_percent --since 2026-11-24T10:00Z --until 2h
      netmetrix metrics history -h f4 -m load1 --since 6h --plot
      netmetrix metrics history -h f4 -h f5 -m load1 --since 1h
      netmetrix metrics history -h 'web*' -m cpu_percent --since 30m --plot
      netmetrix metrics history -h f4 -m up --format csv > f4-up.csv
    """
    settings: Settings = ctx.obj
    if plot and _explicit_format(ctx) and fmt != "table":
        raise UsageError(f"--plot draws a chart: it cannot be combined with --format {fmt}")
    if since is not None and until is not None and since > until:
        raise UsageError(f"--since {iso(since)} is after --until {iso(until)}")
    cfg = settings.load()
    with _open_store(cfg) as store:
        names = _select(store, cfg, hosts, [metric_name])
        samples: list[StoredSample] = []
        for name in names:
            found = store.history(name, metric_name, labels, since, until)
            if not found and labels is not None:
                _hint_label_sets(store, name, metric_name, labels)
            samples += found
    samples.sort(key=lambda s: (s.ts, s.host, labels_text(s.labels)))
    if plot:
        shown = ",".join(names) if len(names) <= 3 else f"{len(names)} hosts"
        title = f"{shown} {metric_name}" + (f"{{{labels_text(labels)}}}" if labels else "")
        _plot(samples, title, sys.stdout, by_host=len(names) > 1)
    else:
        rows = [sample_row(s) for s in samples]
        render(rows, SAMPLE_COLUMNS, fmt, sys.stdout, cells=value_cells(raw))


def _hint_label_sets(store: Store, host: str, metric: str, labels: Mapping[str, str]) -> None:
    """On stderr: which label sets the metric has, when the one asked for has no samples."""
    existing = sorted(labels_text(s.labels) or "(none)" for s in store.latest([host], [metric]))
    if existing and labels_text(labels) not in existing:
        wanted = labels_text(labels) or "(none)"
        click.echo(
            f'note: host "{host}" has no {metric} series with labels {wanted}; '
            f"its label sets: {'; '.join(existing)}",
            err=True,
        )


def _plot(samples: Sequence[StoredSample], title: str, out: IO[str], *, by_host: bool) -> None:
    """Draw ``samples`` with plotext, one line per (host and) label set; no colour off a tty."""
    if not samples:
        click.echo("no samples in that range: nothing to plot", err=True)
        return
    import plotext  # type: ignore[import-untyped]  # no type hints shipped

    tty = out.isatty()
    width, height = 100, 24  # when not on a terminal
    if tty:
        columns, lines = shutil.get_terminal_size()
        width, height = min(columns, 200), max(12, min(lines - 2, 40))
    series: dict[str, tuple[list[dt.datetime], list[float]]] = {}
    for s in samples:
        name = f"{s.host} {labels_text(s.labels)}".strip() if by_host else labels_text(s.labels)
        xs, ys = series.setdefault(name, ([], []))
        # datetimes, not text: samples seconds apart (or closer) never share one x
        xs.append(dt.datetime.fromtimestamp(s.ts, tz=dt.UTC))
        ys.append(s.value)
    first, last = samples[0].ts, samples[-1].ts
    day = _day(first) if _day(first) == _day(last) else None
    form = "%H:%M:%S" if day else "%Y-%m-%d %H:%M:%S"  # the date goes in the title
    plotext.terminal.limit(False, False)  # the size is ours: see above
    fig = plotext.figure
    fig.clear()
    fig.plot_size(width, height)
    fig.date().activate(form=form, origin=dt.datetime(1970, 1, 1, tzinfo=dt.UTC), zone=0)
    for name, (xs, ys) in series.items():
        signal = fig.signal(xs, ys).lines()
        if name and len(series) > 1:
            signal.label(name)
        fig.draw(signal)
    fig.ruler("x").ticks(*_time_ticks(first, last, form, width))
    fig.title(f"{title} (UTC, {day})" if day else f"{title} (UTC)")
    chart = str(fig.build())
    fig.clear()
    out.write((chart if tty else plotext.uncolorize(chart)).rstrip("\n") + "\n")


def _day(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d")


def _time_ticks(
    first: float, last: float, form: str, width: int
) -> tuple[list[dt.datetime], list[str]]:
    """Evenly spaced x ticks from the first sample to the last, as many as their labels fit."""
    size = len(dt.datetime.fromtimestamp(first, tz=dt.UTC).strftime(form)) + 4
    count = 1 if last <= first else max(2, min(8, (width - 10) // size))
    step = (last - first) / max(1, count - 1)
    stamps = [dt.datetime.fromtimestamp(first + i * step, tz=dt.UTC) for i in range(count)]
    return stamps, [stamp.strftime(form) for stamp in stamps]


# ---------------------------------------------------------------- config


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
    try:
        with target.open("w" if force else "x", encoding="utf-8") as handle:
            handle.write(EXAMPLE_CONFIG)
    except FileExistsError:
        raise UsageError(
            f"{target}: already exists; keep it, or pass --force to overwrite it"
        ) from None
    except OSError as err:
        raise NetmetrixError(f"{target}: cannot write: {err.strerror or err}") from None
    cfg = load_config(target)
    row = {"config": str(target), "hosts": len(cfg.hosts), "alert_rules": len(cfg.alerts.rules)}
    check = "config check" if path is None else f"--config {target} config check"
    _one(row, list(row), fmt, f"{target}: written; edit its <hosts>, then run `netmetrix {check}`")


@config.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), required=False)
@format_option
@click.pass_obj
def check(settings: Settings, path: Path | None, fmt: str) -> None:
    """Validate config.xml and the files it names, without touching any host.

    PATH defaults to the --config file.  Besides the file itself, every
    host's key= file must exist and be a private key netmetrix can use
    without a passphrase, and the <database> directory must be a directory
    (a missing one is noted: it is created on first use).  Exit status 0
    when all is well; 2 with one `file:line: problem` line per problem on
    stderr.

    \b
    Examples:
      netmetrix config check
      netmetrix config check /etc/netmetrix/config.xml
      netmetrix config check --format json
    """
    from netmetrix.config import check_local_files
    from netmetrix.ssh import key_file_problem

    target = path or settings.config_path
    cfg = load_config(target)
    local = check_local_files(cfg, str(target), key_file_problem)
    if local.problems:
        raise ConfigError(local.problems)
    for note in local.notes:
        click.echo(note, err=True)
    rules = len(cfg.alerts.rules)
    row = {"config": str(target), "ok": True, "hosts": len(cfg.hosts), "alert_rules": rules}
    line = f"{target}: OK, {_plural(len(cfg.hosts), 'host')}, {_plural(rules, 'alert rule')}"
    _one(row, list(row), fmt, line)


@config.command()
@host_option
@format_option
@click.pass_obj
def show(settings: Settings, hosts: tuple[str, ...], fmt: str) -> None:
    """Show the settings in effect, with where each one comes from.

    Host fields missing from config.xml are resolved the way `execute`
    resolves them: from ~/.ssh/config (HostName, Port, User, IdentityFile,
    ProxyJump), then SSH defaults.  Secrets are never shown: for the SMTP and
    PostgreSQL passwords only the environment variable and whether it is set.
    A source "default" means config.xml does not set it (the built-in value applies).

    \b
    Examples:
      netmetrix config show
      netmetrix config show -h f4
      netmetrix config show --format json | jq -r '.[] | select(.source == "~/.ssh/config")'
    """
    cfg = settings.load()
    selected = cfg.select(hosts)
    rows = [] if hosts else _global_settings(cfg)
    rows += asyncio.run(_host_settings(cfg, selected))
    render(rows, SETTING_COLUMNS, fmt, sys.stdout)


def _setting(setting: str, value: object, source: str) -> dict[str, str]:
    shown = number(value) if isinstance(value, float) else "" if value is None else str(value)
    return {"setting": setting, "value": shown, "source": source}


def _global_settings(cfg: Config) -> list[dict[str, str]]:
    """Every setting but the hosts', in config.xml's order."""
    from sqlalchemy import make_url

    file = cfg.path.name
    rows: list[dict[str, str]] = [_setting("config", cfg.path, "--config")]

    def add(setting: str, value: object, shown: object = None) -> None:
        source = file if setting in cfg.given else "default"  # written, even if equal to it
        rows.append(_setting(setting, value if shown is None else shown, source))

    add("script", cfg.script)
    add("concurrency", cfg.concurrency)
    url = make_url(cfg.database)
    add("database", cfg.database, url.render_as_string(hide_password=True))
    if url.get_backend_name() == "postgresql":
        state = "set" if "PGPASSWORD" in os.environ else "not set: ~/.pgpass or no password"
        rows.append(_setting("database.password", f"$PGPASSWORD ({state})", "environment"))
    add("ssh.known_hosts", cfg.ssh.known_hosts)
    add("ssh.host_key_policy", cfg.ssh.host_key_policy)
    add("ssh.connect_timeout", cfg.ssh.connect_timeout, _duration(cfg.ssh.connect_timeout))
    add("ssh.command_timeout", cfg.ssh.command_timeout, _duration(cfg.ssh.command_timeout))
    smtp = cfg.smtp
    for name in ("host", "port", "security", "sender", "user"):
        add(f"smtp.{name}", getattr(smtp, name))
    state = "set" if smtp.password_env in os.environ else "not set"
    rows.append(_setting("smtp.password", f"${smtp.password_env} ({state})", "environment"))
    add("smtp.timeout", smtp.timeout, _duration(smtp.timeout))
    add("smtp.deadline", smtp.deadline, _duration(smtp.deadline))
    add("security.encryption", cfg.security.encryption)
    add("retention.days", cfg.retention.days)
    add("alerts.digest_over", cfg.alerts.digest_over)
    for index, rule in enumerate(cfg.alerts.rules, 1):
        labels = f"{{{labels_text(dict(rule.labels))}}}" if rule.labels else ""
        parts = [f"{rule.metric}{labels} {rule.op} {number(rule.limit)}"]
        if rule.for_count != 1:
            parts.append(f"for {rule.for_count}")
        if rule.clear is not None:
            parts.append(f"clear {number(rule.clear)}")
        if rule.repeat is not None:
            parts.append(f"repeat {_duration(rule.repeat)}")
        if rule.hosts:
            parts.append(f"hosts {','.join(rule.hosts)}")
        if not rule.resolved:
            parts.append("resolved no")
        parts.append(f"{rule.severity} -> {','.join(rule.email)}")
        rows.append(_setting(f"alert.{index}", ", ".join(parts), f"{file}:{rule.line}"))
    return rows


async def _options_without_keys(host: HostConfig) -> asyncssh.SSHClientConnectionOptions | None:
    """~/.ssh/config applied as ``ssh._options`` does, but loading no key (one failed to load)."""
    import asyncssh

    try:
        options: asyncssh.SSHClientConnectionOptions
        options = await asyncssh.SSHClientConnectionOptions.construct(
            config=(),
            host=host.target,
            port=host.port or (),
            username=host.user or (),
            client_keys=None,
        )
    except (OSError, ValueError, asyncssh.Error):
        return None
    return options


async def _host_settings(cfg: Config, selected: Sequence[HostConfig]) -> list[dict[str, str]]:
    from netmetrix import ssh
    from netmetrix.errors import HostError

    async def one(host: HostConfig) -> list[dict[str, str]]:
        where = f"{cfg.path.name}:{host.line}"
        prefix = f"host.{host.name}"
        rows: list[dict[str, str]] = []
        options: asyncssh.SSHClientConnectionOptions | None
        try:
            options = await ssh._options(host, cfg.ssh)  # exactly what execute resolves
        except HostError as err:
            rows.append(_setting(f"{prefix}.error", str(err), "ssh"))
            options = await _options_without_keys(host)
        found = options.config.get if options is not None else (lambda _name: None)

        def pick(setting: str, given: object, option: str, resolved: object) -> None:
            """The value execute will use: config.xml's unless ~/.ssh/config rewrites it."""
            if options is None or (given is not None and resolved == given):
                if given is not None:
                    rows.append(_setting(f"{prefix}.{setting}", given, where))
                return
            source = SSH_CONFIG if found(option) is not None else "default"
            rows.append(_setting(f"{prefix}.{setting}", resolved, source))

        pick("address", host.address, "Hostname", options.host if options else None)
        pick("port", host.port, "Port", options.port if options else None)
        pick("user", host.user, "User", options.username if options else None)
        identity = found("IdentityFile")
        keys = " ".join(str(k) for k in identity) if isinstance(identity, Sequence) else identity
        pick("key", host.key, "IdentityFile", host.key or keys or "~/.ssh/id_* and ssh-agent")
        if found("ProxyJump") is not None:
            rows.append(_setting(f"{prefix}.proxy_jump", found("ProxyJump"), SSH_CONFIG))
        for name in ("directory", "python"):
            source = where if name in host.given else "default"
            rows.append(_setting(f"{prefix}.{name}", getattr(host, name), source))
        return rows

    groups = await asyncio.gather(*(one(h) for h in selected))
    return [row for group in groups for row in group]


# ---------------------------------------------------------------- db


@click.group(cls=HelpGroup)
def db() -> None:
    """Inspect and maintain the database.

    The database is config.xml's <database>: a SQLite file or a PostgreSQL
    URL (the password comes from PGPASSWORD or ~/.pgpass, never the URL).

    \b
    Examples:
      netmetrix db info
      netmetrix db prune --older-than 30d && netmetrix db vacuum
      netmetrix db upgrade
    """


@db.command()
@format_option
@click.pass_obj
def info(settings: Settings, fmt: str) -> None:
    """Show the database: URL, collector id, schema, series, samples, size, oldest, newest.

    The URL is shown with any password hidden.  collector_id names this
    store's key and state files on the hosts (<script>.<collector_id>.key),
    so that several collectors, each with its own store, share a host.
    size_bytes is the SQLite file plus its write-ahead log, or
    pg_database_size on PostgreSQL.  The table is one field per line; JSON
    and CSV give one flat record.  The schema is not upgraded by this command
    (see `db upgrade`).

    \b
    Examples:
      netmetrix db info
      netmetrix db info --format json | jq '.[0].samples'
    """
    from netmetrix.store import admin as dbadmin

    cfg = settings.load()
    with _open_store(cfg, upgrade=False) as store:
        found = dbadmin.info(store)
    row = {
        "url": found.url,
        "backend": found.backend,
        "collector_id": found.collector_id,
        "schema_version": found.schema_version,
        "schema_head": found.schema_head,
        "series": found.series,
        "samples": found.samples,
        "size_bytes": found.size_bytes,
        "oldest": iso(found.oldest),
        "newest": iso(found.newest),
    }
    if fmt == "table":
        fields = [{"field": c, "value": row[c]} for c in DB_INFO_COLUMNS]
        render(fields, ("field", "value"), fmt, sys.stdout)
    else:
        render([row], DB_INFO_COLUMNS, fmt, sys.stdout)


@db.command()
@click.option(
    "--older-than",
    "older_than",
    type=DURATION,
    required=True,
    help="Delete samples older than this: seconds, or with s, m, h, d (30d).",
)
@format_option
@click.pass_obj
def prune(settings: Settings, older_than: float, fmt: str) -> None:
    """Delete the samples older than a given age.

    Deletes in batches of 10,000 samples, one transaction each, so a
    collector running at the same time is never held up for long.  `execute`
    does the same on every run with <retention days="...">; this command is
    for a one-off clean-up.  Series are kept.  `db vacuum` gives the space
    back to the file system afterwards.

    \b
    Examples:
      netmetrix db prune --older-than 30d
      netmetrix db prune --older-than 12h --format json
    """
    from netmetrix.store import admin as dbadmin

    cfg = settings.load()
    with _open_store(cfg) as store:
        done = dbadmin.prune(store, older_than)
    row = {"deleted": done.deleted, "cutoff": iso(done.cutoff), "batches": done.batches}
    line = f"pruned {_plural(done.deleted, 'sample')} older than {iso(done.cutoff)}"
    _one(row, list(row), fmt, line)


@db.command()
@format_option
@click.pass_obj
def vacuum(settings: Settings, fmt: str) -> None:
    """Compact the database and refresh its statistics.

    SQLite: VACUUM rewrites the file (it holds the write lock meanwhile, so
    run it between collections) and the write-ahead log is truncated.
    PostgreSQL: VACUUM (ANALYZE), which makes dead rows' space reusable
    without locking out collectors (netmetrix never runs VACUUM FULL).

    \b
    Examples:
      netmetrix db vacuum
      netmetrix db prune --older-than 90d && netmetrix db vacuum
    """
    from netmetrix.store import admin as dbadmin

    cfg = settings.load()
    with _open_store(cfg) as store:
        done = dbadmin.vacuum(store)
        url = store.url_display
    row = {"url": url, "size_before": done.size_before, "size_after": done.size_after}
    line = f"vacuumed {url}: {_size(done.size_before)} -> {_size(done.size_after)}"
    _one(row, list(row), fmt, line)


@db.command()
@format_option
@click.pass_obj
def upgrade(settings: Settings, fmt: str) -> None:
    """Bring the database schema up to date (Alembic upgrade head).

    `execute` and the query commands upgrade on their own; this command does
    it explicitly, e.g. right after installing a new netmetrix, and says what
    changed.  Safe to run twice, and while another netmetrix runs.

    \b
    Examples:
      netmetrix db upgrade
      netmetrix db upgrade --format json
    """
    from netmetrix.store import admin as dbadmin

    cfg = settings.load()
    with _open_store(cfg, upgrade=False) as store:
        before, after = dbadmin.upgrade(store)
        url = store.url_display
    row = {"url": url, "from": before, "to": after}
    if before == after:
        line = f"{url}: schema already at {after}, the newest"
    else:
        line = f"{url}: schema upgraded from {before or 'none'} to {after}"
    _one(row, list(row), fmt, line)
