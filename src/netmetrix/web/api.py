"""The JSON API, ``/api/v1/``: the same records as ``--format json`` (``netmetrix.rows``).

    GET /api/v1/hosts                 ?host=NAME-or-glob (repeatable)
    GET /api/v1/latest                ?host= &metric= (repeatable) &labels=k=v,k=v
    GET /api/v1/history               ?host= (repeatable) &metric= (one) &labels= &since= &until=
                                      &step=
    GET /api/v1/alerts                ?host=   what is pending or firing
    GET /api/v1/alerts/history        ?host= &limit=
    GET /api/v1/alerts/outbox         ?host= &all=1 &failed=1 &limit=

``history`` returns every sample in the range, oldest first; with ``step``
(seconds, or a duration: ``60``, ``5m``, ``1h``; it needs ``since``, and at
most 10,000 steps) it returns one record per series and step instead,
averaged by the database: ``ts`` is the step's start (steps are aligned to
multiples of ``step`` since the epoch), ``value`` the mean of the samples in
it, and a step without samples is left out.  So a week of a 1 s series asked
with ``since=7d&step=15m`` is 673 records at most, not 604,800.

Errors are ``{"error": "..."}`` with 400 (a bad parameter), 404 (an unknown
host or metric) or 503 (the store cannot be read); never a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from netmetrix import rows, ssh
from netmetrix.config import Config, parse_duration, parse_when, unknown_name
from netmetrix.errors import StoreError
from netmetrix.model import UP
from netmetrix.probe import METRICS
from netmetrix.selector import Target, select
from netmetrix.store import Buckets, Store, StoredSample, samples

DEFAULT_LIMIT = 100
MIN_STEP = 0.001  # seconds: the store keeps milliseconds
MAX_STEPS = samples.MAX_STEPS  # per series of one answer
MAX_LIMIT = 10_000


class ApiError(Exception):
    """A request the API refuses: ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Handler = Callable[[Request], Awaitable[Any]]


def routes() -> list[Route]:
    return [
        Route("/hosts", _json(hosts)),
        Route("/latest", _json(latest)),
        Route("/history", _json(history)),
        Route("/alerts", _json(alerts_active)),
        Route("/alerts/history", _json(alerts_history)),
        Route("/alerts/outbox", _json(alerts_outbox)),
    ]


def _json(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """``handler``'s result as JSON; its ApiError, or the store's, as a JSON error."""

    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(await handler(request))
        except ApiError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except StoreError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)

    return endpoint


def _state(request: Request) -> tuple[Config, Store]:
    nmx = request.app.state.nmx
    return nmx.config, nmx.store


# ---------------------------------------------------------------- endpoints


async def hosts(request: Request) -> list[dict[str, Any]]:
    config, store = _state(request)
    names = _configured(config, request.query_params.getlist("host"))
    chosen = [h for h in config.hosts if h.name in names]
    stored = {row.name: row for row in await run_in_threadpool(store.hosts)}
    ports = await ssh.resolve_ports(chosen, config.ssh)
    return [rows.host_row(h, stored.get(h.name), ports[h.name]) for h in chosen]


async def latest(request: Request) -> list[dict[str, Any]]:
    config, store = _state(request)
    metrics = request.query_params.getlist("metric")
    names = await _hosts_and_metrics(config, store, request.query_params.getlist("host"), metrics)
    labels = _labels(request.query_params.get("labels"))
    found = await run_in_threadpool(store.latest, names, metrics)
    return [rows.sample_row(s) for s in found if _has_labels(s.labels, labels)]


async def history(request: Request) -> list[dict[str, Any]]:
    config, store = _state(request)
    params = request.query_params
    metric = params.get("metric")
    if not metric or len(params.getlist("metric")) > 1:
        raise ApiError(400, "history takes exactly one metric: ?metric=NAME")
    host_patterns = params.getlist("host")
    if not host_patterns:
        raise ApiError(400, "history needs at least one host: ?host=NAME (a glob is fine)")
    names = await _hosts_and_metrics(config, store, host_patterns, [metric])
    labels = _labels(params.get("labels")) if "labels" in params else None
    now = time.time()
    since, until = _when(params.get("since"), now), _when(params.get("until"), now)
    if since is not None and until is not None and since > until:
        raise ApiError(400, "since is after until")
    step = _step(params.get("step"), since, until, now)

    def read() -> list[dict[str, Any]]:
        if step is not None:
            assert since is not None  # _step wants it
            averaged = store.history_buckets(names, [metric], step, since, until or now)
            found = _averaged(averaged, labels)
        else:
            found = [s for n in names for s in store.history(n, metric, labels, since, until)]
        found.sort(key=lambda s: (s.ts, s.host, sorted(s.labels.items())))
        return [rows.sample_row(s) for s in found]

    return await run_in_threadpool(read)


async def alerts_active(request: Request) -> list[dict[str, Any]]:
    config, store = _state(request)
    names = await _store_hosts(config, store, request.query_params.getlist("host"))
    found = await run_in_threadpool(store.alerts_active, names)
    return [rows.active_row(a) for a in found]


async def alerts_history(request: Request) -> list[dict[str, Any]]:
    config, store = _state(request)
    names = await _store_hosts(config, store, request.query_params.getlist("host"))
    limit = _limit(request.query_params.get("limit"))
    found = await run_in_threadpool(store.alert_history, names, limit)
    return [rows.history_row(e) for e in found]


async def alerts_outbox(request: Request) -> list[dict[str, Any]]:
    config, store = _state(request)
    params = request.query_params
    names = await _store_hosts(config, store, params.getlist("host"))
    show_all, failed = _flag(params.get("all")), _flag(params.get("failed"))
    if show_all and failed:
        raise ApiError(400, "all and failed cannot be combined")

    def read() -> list[dict[str, Any]]:
        items = store.outbox(
            undelivered=not show_all,
            failed=True if failed else None,
            limit=_limit(params.get("limit")) if show_all else None,
            hosts=names,
        )
        return [rows.outbox_row(item, time.time()) for item in items]

    return await run_in_threadpool(read)


# ---------------------------------------------------------------- parameters


def _configured(config: Config, patterns: Sequence[str]) -> list[str]:
    """The config.xml hosts ``patterns`` select (all for none); 404 for one that selects none."""
    names, problems = select(patterns, config.targets(), config.group_names)
    if problems:
        raise ApiError(404, "; ".join(problems))
    return list(names) if patterns else [h.name for h in config.hosts]


async def _store_hosts(config: Config, store: Store, patterns: Sequence[str]) -> list[str]:
    """Hosts of config.xml and of the store (a removed host keeps its samples), as ``-h``."""
    if not patterns:
        return []
    configured = {h.name for h in config.hosts}
    stored = await run_in_threadpool(store.host_names)
    known = config.targets() + [Target(name=n) for n in sorted(stored.difference(configured))]
    names, problems = select(patterns, known, config.group_names)
    if problems:
        raise ApiError(404, "; ".join(problems))
    return list(names)


async def _hosts_and_metrics(
    config: Config, store: Store, patterns: Sequence[str], metrics: Sequence[str]
) -> list[str]:
    names = await _store_hosts(config, store, patterns)
    if metrics:
        known = {name for name, *_ in METRICS} | {UP} | await run_in_threadpool(store.metric_names)
        unknown = [
            unknown_name("metric", m, known) for m in dict.fromkeys(metrics) if m not in known
        ]
        if unknown:
            raise ApiError(404, "; ".join(unknown))
    return names


def _labels(raw: str | None) -> dict[str, str]:
    """``k=v,k=v`` (``mount=/``); empty: the series without labels."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (raw or "").split(","))):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or key in labels:
            raise ApiError(400, f"labels={raw!r}: give name=value pairs, e.g. mount=/")
        labels[key] = value
    return labels


def _has_labels(found: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(found.get(k) == v for k, v in wanted.items())


def _when(raw: str | None, now: float) -> float | None:
    if raw is None:
        return None
    try:
        return parse_when(raw, now)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc


def _step(raw: str | None, since: float | None, until: float | None, now: float) -> float | None:
    """``step`` in seconds; it needs ``since``, and makes at most ``MAX_STEPS`` steps."""
    if raw is None:
        return None
    try:
        step = parse_duration(raw)
    except ValueError as exc:
        raise ApiError(400, f"step={raw!r}: {exc}") from exc
    if step < MIN_STEP:
        raise ApiError(400, f"step={raw!r}: at least {MIN_STEP:g} s")
    if since is None:
        raise ApiError(400, "step needs since: ?since=1h&step=1m")
    steps = ((until or now) - since) / step
    if steps > MAX_STEPS - 1:
        raise ApiError(400, f"step={raw!r}: {steps:.0f} steps, at most {MAX_STEPS}; a longer one")
    return step


def _averaged(found: Sequence[Buckets], labels: dict[str, str] | None) -> list[StoredSample]:
    """Each step's mean as a sample at the step's start (``labels`` None: every series)."""
    return [
        StoredSample(host=b.host, metric=b.metric, labels=b.labels, ts=ts, value=value)
        for b in found
        if labels is None or b.labels == labels
        for ts, value in b.points
    ]


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, f"limit={raw!r}: a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _flag(raw: str | None) -> bool:
    return raw is not None and raw.lower() in ("1", "true", "yes")
