"""The dashboard: ``/`` (the fleet), ``/hosts/NAME`` (a host's charts), ``/alerts``.

Server-rendered Jinja2 with autoescape on: every string from a host or
config.xml goes into a page through the template engine, never ``|safe``.
No inline script or style (the CSP forbids both): ``static/app.js`` reads
what it needs from ``data-*`` attributes and fetches chart data from
``/hosts/NAME/series.json``, averaged by the database into at most
``views.MAX_POINTS`` points per series.  The overview refreshes its table with
htmx from ``/fleet`` every watch interval, without reloading the page.

    GET /                         the fleet: one line per configured host, a summary
    GET /fleet                    the same table alone (what htmx swaps in)
    GET /hosts/NAME               ?range=1h|6h|24h|7d, or ?since= &until= (30m, 2d, ISO 8601)
    GET /hosts/NAME/series.json   the same parameters: the host page's chart data
    GET /alerts                   firing and pending, recent history, the outbox

Responses are gzip-compressed when the browser accepts it: the overview of a
thousand hosts is mostly repeated markup.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route, request_response

from netmetrix import rows, ssh
from netmetrix.config import Config, parse_when
from netmetrix.errors import StoreError
from netmetrix.format import iso, labels_text, number
from netmetrix.probe import PROBE_VERSION
from netmetrix.store import Store
from netmetrix.web import views

RANGES = {"1h": 3600.0, "6h": 6 * 3600.0, "24h": 86400.0, "7d": 7 * 86400.0}
DEFAULT_RANGE = "1h"
HISTORY_LIMIT = 100  # alert events on /alerts
HOST_HISTORY_LIMIT = 50  # ... and on a host's page
MIN_REFRESH = 2.0  # seconds: the overview refreshes every watch interval, but not faster
GZIP_MIN_SIZE = 1000  # bytes; smaller responses are sent as they are


class PageError(Exception):
    """A request a page refuses: ``status`` and a one-line ``message`` for people."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Endpoint = Callable[[Request], Awaitable[Response]]


def routes() -> list[BaseRoute]:
    return [
        _route("/", overview),
        _route("/fleet", fleet_table),
        _route("/hosts/{name}", host_page),
        _route("/hosts/{name}/series.json", host_series),
        _route("/alerts", alerts_page),
    ]


def _route(path: str, endpoint: Endpoint) -> Route:
    app = GZipMiddleware(request_response(_errors(endpoint)), minimum_size=GZIP_MIN_SIZE)
    return Route(path, app, methods=["GET", "HEAD"], name=endpoint.__name__)


def _errors(endpoint: Endpoint) -> Endpoint:
    """``endpoint``, with its PageError, or the store's, as an error page."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except PageError as exc:
            return _error_page(request, exc.status, str(exc))
        except StoreError as exc:
            return _error_page(request, 503, str(exc))

    return guarded


def _state(request: Request) -> tuple[Config, Store]:
    nmx = request.app.state.nmx
    return nmx.config, nmx.store


# ---------------------------------------------------------------- templates


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("netmetrix.web", "templates"),
        autoescape=True,  # every page is HTML; a host's string is never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(iso=iso, path=_path_segment, cell=cell, number=number)
    env.globals.update(static=_static, version=PROBE_VERSION, titles=views.COLUMN_TITLES)
    return env


def _static(path: str) -> str:
    """The URL of a static file; the version in the query string outdates old caches."""
    return f"/static/{path}?v={PROBE_VERSION}"


def _path_segment(text: str) -> str:
    return quote(text, safe="")


def _render(template: str, /, status: int = 200, **context: Any) -> HTMLResponse:
    html = _environment().get_template(template).render(now=time.time(), **context)
    return HTMLResponse(html, status_code=status)


def _error_page(_request: Request, status: int, message: str) -> HTMLResponse:
    return _render("error.html", status=status, status_code=status, message=message)


def cell(row: Mapping[str, Any], column: str) -> str:
    """A record's column as the CLI's table shows it: labels as ``k=v``, a sample value in
    its metric's unit, other numbers to 6 digits, None empty."""
    value = row.get(column)
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return labels_text(value)
    if column == "value" and isinstance(value, int | float) and "metric" in row:
        return views.value_text(str(row["metric"]), float(value))
    if isinstance(value, float):
        return number(value)
    return str(value)


# ---------------------------------------------------------------- the fleet


async def overview(request: Request) -> Response:
    config, store = _state(request)
    found = await run_in_threadpool(views.fleet, config, store, time.time())
    return _render("overview.html", fleet=found, refresh=_refresh(config))


async def fleet_table(request: Request) -> Response:
    """The overview's table alone, for htmx to swap in."""
    config, store = _state(request)
    found = await run_in_threadpool(views.fleet, config, store, time.time())
    return _render("_fleet.html", fleet=found, refresh=_refresh(config))


def _refresh(config: Config) -> int:
    return round(max(config.watch.interval, MIN_REFRESH))


# ---------------------------------------------------------------- a host


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """The time range a host page shows: a preset (``1h``...) or ``custom``."""

    range: str
    since: float
    until: float
    query: str  # the URL query that asks for it again: "range=6h", "since=2d&until=1d"
    since_text: str = ""  # the custom form's fields, as given
    until_text: str = ""


def window(params: Mapping[str, str], now: float) -> Window:
    """The range a host page's query asks for; PageError (400) for a bad one."""
    since_text, until_text = params.get("since", "").strip(), params.get("until", "").strip()
    if since_text or until_text:
        since = _when("since", since_text, now) if since_text else now - RANGES[DEFAULT_RANGE]
        until = _when("until", until_text, now) if until_text else now
        if since >= until:
            raise PageError(400, f"since ({iso(since)}) must be before until ({iso(until)})")
        query = urlencode({k: v for k, v in (("since", since_text), ("until", until_text)) if v})
        return Window(
            range="custom",
            since=since,
            until=until,
            query=query,
            since_text=since_text,
            until_text=until_text,
        )
    chosen = params.get("range", DEFAULT_RANGE)
    if chosen not in RANGES:
        raise PageError(400, f"range={chosen!r}: choose one of {', '.join(RANGES)}")
    return Window(range=chosen, since=now - RANGES[chosen], until=now, query=f"range={chosen}")


def _when(name: str, text: str, now: float) -> float:
    try:
        return parse_when(text, now)
    except ValueError as exc:
        raise PageError(400, f"{name}: {exc}") from exc


async def host_page(request: Request) -> Response:
    config, store = _state(request)
    name = request.path_params["name"]
    shown = window(request.query_params, time.time())
    configured = {h.name: h for h in config.hosts}.get(name)
    ports = await ssh.resolve_ports([configured], config.ssh) if configured else {}

    def read() -> dict[str, Any]:
        if configured is None and name not in store.host_names():
            raise PageError(404, f'unknown host "{name}": not in config.xml nor in the store')
        stored = {row.name: row for row in store.hosts()}.get(name)
        if configured is not None:
            info = rows.host_row(configured, stored, ports.get(name))
        else:
            info = _removed_host_row(name, stored)
        return {
            "host": info,
            "state": views.host_state(stored),
            "configured": configured is not None,
            "active": [rows.active_row(a) for a in store.alerts_active([name])],
            "history": [
                rows.history_row(e) for e in store.alert_history([name], HOST_HISTORY_LIMIT)
            ],
            "checks": [rows.check_row(c) for c in store.checks([name])],
        }

    found = await run_in_threadpool(read)
    return _render(
        "host.html",
        **found,
        name=name,
        window=shown,
        ranges=list(RANGES),
        active_columns=rows.ACTIVE_COLUMNS,
        history_columns=rows.HISTORY_COLUMNS,
        check_columns=rows.CHECK_COLUMNS[1:],  # not the host: this page is the host's
    )


def _removed_host_row(name: str, stored: Any) -> dict[str, Any]:
    """A host the store knows but config.xml no longer names: what the store kept."""
    return {
        "host": name,
        "address": stored.address if stored else None,
        "port": None,
        "last_seen": iso(stored.last_seen) if stored else None,
        "last_error": stored.last_error if stored else None,
        "probe_version": stored.probe_version if stored else None,
        "up": None if stored is None or stored.up is None else int(stored.up),
        "collector": stored.collector if stored else None,
    }


async def host_series(request: Request) -> Response:
    """A host's chart data (``views.host_charts``) as JSON; errors as ``{"error": ...}``."""
    config, store = _state(request)
    name = request.path_params["name"]
    try:
        shown = window(request.query_params, time.time())

        def read() -> dict[str, Any]:
            if name not in {h.name for h in config.hosts} and name not in store.host_names():
                raise PageError(404, f'unknown host "{name}"')
            return views.host_charts(store, name, shown.since, shown.until)

        return JSONResponse(await run_in_threadpool(read))
    except PageError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    except StoreError as exc:
        return JSONResponse({"error": str(exc)}, status_code=503)


# ---------------------------------------------------------------- alerts


async def alerts_page(request: Request) -> Response:
    _config, store = _state(request)

    def read() -> dict[str, Any]:
        now = time.time()
        return {
            "active": [rows.active_row(a) for a in store.alerts_active()],
            "history": [rows.history_row(e) for e in store.alert_history((), HISTORY_LIMIT)],
            "outbox": [rows.outbox_row(item, now) for item in store.outbox(undelivered=True)],
            "silences": [rows.silence_row(s) for s in store.silences(now)],
        }

    found = await run_in_threadpool(read)
    return _render(
        "alerts.html",
        **found,
        active_columns=rows.ACTIVE_COLUMNS,
        history_columns=rows.HISTORY_COLUMNS,
        outbox_columns=rows.OUTBOX_COLUMNS,
        silence_columns=rows.SILENCE_COLUMNS,
        history_limit=HISTORY_LIMIT,
    )
