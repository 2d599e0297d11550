"""``/metrics``: the fleet's latest samples and the collector's health, for Prometheus.

Prometheus text exposition 0.0.4, or OpenMetrics 1.0 when the Accept header
asks for it; prometheus_client writes both (``choose_encoder``), from metric
families a ``Collector`` builds over one snapshot of the store.

What is exposed, and why (docs/metrics.md, "Prometheus", says it for users):

- ``promnames.EXPOSED`` maps each catalogue metric to its Prometheus name, type,
  unit and scale, and ``promnames.series_labels`` gives its labels, for
  ``/metrics`` and remote-write alike.  A metric not in the table (written by a
  newer netmetrix) is left out rather than exposed under a name nobody chose.
- Only hosts in config.xml: a host removed from it keeps its samples in the
  store (``metrics history``), but it is no longer monitored, so its series
  leave ``/metrics`` and Prometheus marks them stale, as for a removed target.
- Only the host's last answer: a series whose newest sample is older than the
  host's newest ``up`` (an unmounted disk, a removed interface) is left out;
  a host that is down now (``up`` 0) shows ``netmetrix_up 0`` and nothing
  else, as Prometheus treats a target it cannot scrape.  Its last values stay
  readable in the store.
- No sample timestamps: Prometheus stamps each scrape itself, so its staleness
  rules work (a series that leaves ``/metrics`` goes stale at the next scrape;
  one with explicit timestamps would linger for 5 minutes, and samples older
  than the head block are refused outright).  When each host last answered is
  exposed instead: ``netmetrix_host_last_seen_timestamp_seconds``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from netmetrix.config import Config
from netmetrix.errors import StoreError
from netmetrix.model import UP
from netmetrix.probe import METRICS
from netmetrix.promnames import EXPOSED, PREFIX, Exposed, scaled, series_labels
from netmetrix.store import HostRow, LatestRow, OutboxSize, Store
from netmetrix.store.schema import NO_LABELS


class Health(Protocol):
    """What ``/metrics`` reads of ``web.app.Health`` (app.py imports this module, so
    this one does not import it back)."""

    last_run: float | None
    last_duration: float | None
    outcomes: dict[str, int]


HOST_STATES = ("up", "down", "unknown")  # latest up 1, latest up 0, never tried
GZIP_LEVEL = 1  # 1,000 hosts' 1.3 MB to ~10% in ~5 ms; level 6 takes 4x that for 7% less


_SUFFIX = {"gauge": "", "counter": "_total"}
UP_HELP = "1 when the host answered and its message verified, 0 when not. From netmetrix's up."


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """What one scrape reads: the configured hosts' latest samples and rows, the outbox."""

    hosts: tuple[str, ...]  # config.xml's, in its order
    host_labels: dict[str, dict[str, str]] = field(default_factory=dict)  # config.xml's labels
    samples: tuple[LatestRow, ...]  # of the exposed metrics, by host, metric, labels
    rows: dict[str, HostRow]  # of the configured hosts the store has seen
    outbox: OutboxSize
    health: HealthSeen | None  # watch --listen's; None under serve


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthSeen:
    """A copy of watch's ``Health``, which its event loop updates while a scrape reads."""

    last_run: float | None
    last_duration: float | None
    outcomes: tuple[tuple[str, int], ...]  # sorted


def read_snapshot(config: Config, store: Store, health: Health | None) -> Snapshot:
    """Read what ``/metrics`` shows from ``store`` (blocking; raises StoreError)."""
    names = tuple(host.name for host in config.hosts)
    wanted = set(names)
    rows = {row.name: row for row in store.hosts() if row.name in wanted}
    seen = None
    if health is not None:
        outcomes = tuple(sorted(dict(health.outcomes).items()))  # dict(): one step, GIL held
        seen = HealthSeen(
            last_run=health.last_run, last_duration=health.last_duration, outcomes=outcomes
        )
    return Snapshot(
        hosts=names,
        host_labels=config.host_labels(),
        samples=tuple(store.latest_rows(names, tuple(EXPOSED))),
        rows=rows,
        outbox=store.outbox_size(),
        health=seen,
    )


class FleetCollector:
    """A prometheus_client Collector over one Snapshot."""

    def __init__(self, snapshot: Snapshot, exposed: dict[str, Exposed] | None = None) -> None:
        self.snapshot = snapshot
        self.exposed = EXPOSED if exposed is None else exposed

    def collect(self) -> Iterator[Metric]:
        samples = current(self.snapshot.samples)
        yield from sample_families(samples, self.exposed, self.snapshot.host_labels)
        yield from health_families(self.snapshot)


def current(samples: Iterable[LatestRow]) -> list[LatestRow]:
    """The samples of each host's last answer: ``up`` alone for a host that is down now,
    and no series the last answer left out (an answer's samples share its ``up``'s ts)."""
    by_host: dict[str, list[LatestRow]] = {}
    for sample in samples:
        by_host.setdefault(sample.host, []).append(sample)
    kept: list[LatestRow] = []
    for host_samples in by_host.values():
        up = next((s for s in host_samples if s.metric == UP and s.labels == NO_LABELS), None)
        if up is not None and up.value == 0:
            kept.append(up)
            continue
        last = up.ts_ms if up is not None else max(s.ts_ms for s in host_samples)
        kept.extend(s for s in host_samples if s.ts_ms == last)
    return kept


def sample_families(
    samples: Sequence[LatestRow],
    exposed: dict[str, Exposed],
    host_labels: dict[str, dict[str, str]] | None = None,
) -> Iterator[Metric]:
    """One family per exposed metric that has a sample, in the table's order; each series
    with its host's labels (``host_labels``, by host name) as target labels."""
    targets = host_labels or {}
    by_metric: dict[str, list[LatestRow]] = {}
    for sample in samples:
        if sample.metric in exposed:
            by_metric.setdefault(sample.metric, []).append(sample)
    decoded: dict[str, dict[str, str]] = {}  # a fleet repeats a few label sets
    for metric, how in exposed.items():
        found = by_metric.get(metric)
        if not found:
            continue
        for row in found:
            if row.labels not in decoded:
                decoded[row.labels] = json.loads(row.labels)
        label_names = sorted(
            {name for row in found for name in decoded[row.labels]}
            | {name for row in found for name in targets.get(row.host, ())}
        )
        family = _family(how, _help(metric, how), ["host", *label_names])
        # Samples made here rather than by add_metric (a dict and a zip per sample): a
        # fleet has tens of thousands.  Their names carry a counter's _total as
        # CounterMetricFamily.add_metric would.
        name, add = family.name + _SUFFIX[how.type], family.samples.append
        for row in found:
            labels = series_labels(row.host, decoded[row.labels], targets.get(row.host))
            add(Sample(name, labels, scaled(row.value, how)))
        yield family


def _family(
    how: Exposed, text: str, labels: Sequence[str]
) -> GaugeMetricFamily | CounterMetricFamily:
    name = PREFIX + how.name
    if how.type == "counter":
        return CounterMetricFamily(name, text, labels=labels, unit=how.unit)
    return GaugeMetricFamily(name, text, labels=labels, unit=how.unit)


def _help(metric: str, how: Exposed) -> str:
    if metric == UP:
        return UP_HELP
    text = _CATALOGUE_HELP.get(metric, "")
    if how.scale == 0.01:
        return f"{text} As a 0-1 ratio: netmetrix's {metric} / 100."
    return f"{text} From netmetrix's {metric}."


_CATALOGUE_HELP = {name: text for name, _unit, _kind, text in METRICS}


def health_families(snapshot: Snapshot) -> Iterator[Metric]:
    """The collector's own metrics: last run, hosts by state and outcome, the outbox."""
    yield from _last_run(snapshot)
    states = dict.fromkeys(HOST_STATES, 0)
    ups = {s.host: s.value for s in snapshot.samples if s.metric == UP and s.labels == NO_LABELS}
    for host in snapshot.hosts:
        up = ups.get(host)
        states["unknown" if up is None else "up" if up == 1 else "down"] += 1
    hosts = GaugeMetricFamily(
        PREFIX + "hosts",
        "Hosts in config.xml by their latest up: up (1), down (0), unknown (never tried).",
        labels=["state"],
    )
    for state, count in states.items():
        hosts.add_metric([state], count)
    yield hosts
    seen = GaugeMetricFamily(
        PREFIX + "host_last_seen_timestamp_seconds",
        "When the host last answered and its message verified (unix time).",
        labels=["host"],
        unit="seconds",
    )
    name = seen.name  # the unit is in it already
    for host in snapshot.hosts:
        row = snapshot.rows.get(host)
        if row is not None and row.last_seen is not None:
            labels = series_labels(host, {}, snapshot.host_labels.get(host))
            seen.samples.append(Sample(name, labels, row.last_seen))
    yield seen
    outbox = GaugeMetricFamily(
        PREFIX + "outbox_mails",
        "Undelivered alert mail: pending (to be sent or retried), failed (dead letters).",
        labels=["state"],
    )
    outbox.add_metric(["pending"], snapshot.outbox.pending)
    outbox.add_metric(["failed"], snapshot.outbox.failed)
    yield outbox


def _last_run(snapshot: Snapshot) -> Iterator[Metric]:
    """When the last run (execute) or tick (watch) ended, how long it took, its outcomes.

    watch --listen knows all three (``Health``); under serve the store only
    says when: the newest ``up`` sample, which every run writes for every host.
    """
    health = snapshot.health
    last = health.last_run if health is not None else None
    if last is None:
        ups = [s.ts_ms for s in snapshot.samples if s.metric == UP and s.labels == NO_LABELS]
        last = max(ups) / 1000 if ups else None
    if last is not None:
        yield GaugeMetricFamily(
            PREFIX + "last_run_timestamp_seconds",
            "When the collector's last run (execute) or tick (watch) ended (unix time).",
            value=last,
            unit="seconds",
        )
    if health is None:
        return
    if health.last_duration is not None:
        yield GaugeMetricFamily(
            PREFIX + "last_run_duration_seconds",
            "How long watch's last tick took.",
            value=health.last_duration,
            unit="seconds",
        )
    outcomes = GaugeMetricFamily(
        PREFIX + "last_run_hosts",
        "Hosts of watch's last tick by outcome (ok, timeout, refused, ...).",
        labels=["outcome"],
    )
    for outcome, count in health.outcomes:
        outcomes.add_metric([outcome], count)
    yield outcomes


# ---------------------------------------------------------------- the endpoint


def metrics(request: Request) -> Response:
    """GET /metrics (a plain ``def``: Starlette runs it in its thread pool)."""
    nmx = request.app.state.nmx  # web.app.Context
    try:
        snapshot = read_snapshot(nmx.config, nmx.store, nmx.health)
    except StoreError as exc:
        return PlainTextResponse(f"netmetrix: {exc}\n", status_code=503)
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    body = encoder(FleetCollector(snapshot))
    headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
    if _wants_gzip(request.headers.get("accept-encoding", "")):
        body = gzip.compress(body, compresslevel=GZIP_LEVEL)
        headers["Content-Encoding"] = "gzip"
    return Response(body, headers=headers)


def _wants_gzip(accept_encoding: str) -> bool:
    codings = (part.split(";")[0].strip().lower() for part in accept_encoding.split(","))
    return "gzip" in codings
