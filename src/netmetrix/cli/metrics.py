"""``netmetrix metrics latest|history``: stored samples as a table, JSON, CSV or a chart."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import click

from netmetrix.cli._common import (
    LABELS,
    WHEN,
    HelpGroup,
    Settings,
    explicit_format,
    host_option,
    open_store,
    select_hosts,
)
from netmetrix.config import unknown_name
from netmetrix.errors import UsageError, require_extra
from netmetrix.format import iso, labels_text
from netmetrix.render import format_option, raw_option, render, value_cells
from netmetrix.rows import SAMPLE_COLUMNS, sample_row

if TYPE_CHECKING:
    from netmetrix.store import Store, StoredSample


def register(group: click.Group) -> None:
    """Add ``metrics`` to the ``netmetrix`` group."""
    group.add_command(metrics)


def _unknown_metrics(store: Store, names: Sequence[str]) -> list[str]:
    """One did-you-mean line per name that is neither in the catalogue, ``up`` nor stored."""
    if not names:
        return []
    from netmetrix.model import UP
    from netmetrix.probe import METRICS

    known = {name for name, *_ in METRICS} | {UP} | store.metric_names()
    return [unknown_name("metric", m, known) for m in dict.fromkeys(names) if m not in known]


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
@host_option()
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
    config = settings.load()
    with open_store(config) as store:
        unknown = _unknown_metrics(store, metric_names)
        names = select_hosts(config, hosts, store, more_problems=unknown).names
        samples = store.latest(names, metric_names)
    rows = [sample_row(s) for s in samples]
    render(rows, SAMPLE_COLUMNS, fmt, sys.stdout, cells=value_cells(raw))


@metrics.command()
@host_option(required=True)
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
    _check_history_options(ctx, plot, fmt, since, until)
    settings: Settings = ctx.obj
    config = settings.load()
    with open_store(config) as store:
        unknown = _unknown_metrics(store, [metric_name])
        names = select_hosts(config, hosts, store, more_problems=unknown).names
        samples = _history(store, names, metric_name, labels, since, until)
    if plot:
        _plot(samples, names, metric_name, labels)
    else:
        rows = [sample_row(s) for s in samples]
        render(rows, SAMPLE_COLUMNS, fmt, sys.stdout, cells=value_cells(raw))


def _check_history_options(
    ctx: click.Context, plot: bool, fmt: str, since: float | None, until: float | None
) -> None:
    """UsageError for options that cannot go together."""
    if plot and explicit_format(ctx) and fmt != "table":
        raise UsageError(f"--plot draws a chart: it cannot be combined with --format {fmt}")
    if plot:
        require_extra("metrics history --plot", "plotext", "plot")
    if since is not None and until is not None and since > until:
        raise UsageError(f"--since {iso(since)} is after --until {iso(until)}")


def _history(
    store: Store,
    names: Sequence[str],
    metric: str,
    labels: dict[str, str] | None,
    since: float | None,
    until: float | None,
) -> list[StoredSample]:
    """The samples of ``metric`` of every host in ``names``, by time, then host and labels."""
    samples: list[StoredSample] = []
    for name in names:
        found = store.history(name, metric, labels, since, until)
        if not found and labels is not None:
            _hint_label_sets(store, name, metric, labels)
        samples += found
    samples.sort(key=lambda s: (s.ts, s.host, labels_text(s.labels)))
    return samples


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


def _plot(
    samples: Sequence[StoredSample],
    names: Sequence[str],
    metric: str,
    labels: Mapping[str, str] | None,
) -> None:
    """The chart on stdout (``netmetrix.plot``), or a note on stderr when there is nothing."""
    if not samples:
        click.echo("no samples in that range: nothing to plot", err=True)
        return
    from netmetrix import plot

    heading = plot.title(names, metric, labels)
    plot.draw(samples, heading, sys.stdout, by_host=len(names) > 1)
