"""The application: routes, security headers, authentication and JSON errors.

Pages (``pages``), the JSON API (``api``) and ``/metrics`` (``exposition``)
read the store through its blocking methods; Starlette runs plain ``def``
endpoints in a thread pool, so a slow query never holds up the event loop
(nor, under ``watch --listen``, a tick).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from netmetrix.config import Config
from netmetrix.store import Store
from netmetrix.web import api, exposition, pages
from netmetrix.web.auth import Auth, AuthMiddleware

# No inline script or style anywhere: what a hostile host name or label might smuggle
# into a page cannot run, even if escaping were ever missed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii")),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


@dataclass(slots=True, kw_only=True)
class Health:
    """What ``/metrics`` says of the collector itself; ``watch --listen`` keeps it current."""

    last_run: float | None = None  # unix seconds the last tick (or execute run) ended
    last_duration: float | None = None  # seconds it took
    outcomes: dict[str, int] = field(default_factory=dict)  # hosts by outcome, last tick


@dataclass(frozen=True, slots=True)
class Context:
    """What every endpoint reads: ``request.app.state.nmx``."""

    config: Config
    store: Store
    health: Health | None  # None under `serve`: only the store speaks of the collector


def context(request: Request) -> Context:
    found: Context = request.app.state.nmx
    return found


def create_app(
    config: Config, store: Store, *, auth: Auth | None = None, health: Health | None = None
) -> Starlette:
    """The whole web side over ``store``; ``auth`` None lets every request in."""
    app = Starlette(
        routes=_routes(),
        middleware=[Middleware(SecurityHeaders), Middleware(AuthMiddleware, auth=auth)],
    )
    app.state.nmx = Context(config=config, store=store, health=health)
    return app


def _routes() -> list[BaseRoute]:
    static = StaticFiles(packages=[("netmetrix.web", "static")])
    return [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/metrics", exposition.metrics, methods=["GET", "HEAD"]),
        Mount("/api/v1", routes=api.routes()),
        *pages.routes(),
        Mount("/static", app=static, name="static"),
    ]


def healthz(_request: Request) -> Response:
    """For load balancers: the process is up and serving (no store query, no auth)."""
    return PlainTextResponse("ok\n")


class SecurityHeaders:
    """Adds the CSP and friends to every response (pages, API, static files, errors)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))  # type: ignore[call-overload]
                headers += SECURITY_HEADERS
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)  # type: ignore[arg-type]
