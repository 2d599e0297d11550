"""Running the application: uvicorn on the event loop we already have.

``serve`` gives the web side a process of its own; ``watch --listen`` runs the
same server as one more task in watch's loop.  Either way netmetrix, not
uvicorn, owns SIGTERM and SIGINT: ``stop()`` ends the server gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import threading
from collections.abc import Generator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from netmetrix.config import Config, WebConfig, parse_listen
from netmetrix.errors import UsageError
from netmetrix.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Listen:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: it may resolve to anything
            return False

    def url(self, tls: bool) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if tls else 'http'}://{host}:{self.port}/"


def listen_of(raw: str, what: str) -> Listen:
    """``HOST:PORT`` as a Listen; UsageError naming ``what`` (--listen, <web listen>)."""
    try:
        host, port = parse_listen(raw)
    except ValueError:
        raise UsageError(f"{what} {raw!r}: give HOST:PORT, e.g. 127.0.0.1:8470") from None
    return Listen(host=host, port=port)


def check_exposure(listen: Listen, web: WebConfig, no_auth: bool) -> None:
    """Refuse to serve off loopback without credentials, unless told to (--no-auth)."""
    if listen.loopback or web.has_auth:
        return
    if not no_auth:
        raise UsageError(
            f"listening on {listen.host} lets anyone who reaches it read the fleet's metrics:"
            " set <web user= password_file=> or <web token_env=> in config.xml, or pass"
            " --no-auth to serve without authentication"
        )
    log.warning(
        "web: serving on %s WITHOUT authentication (--no-auth): anyone who can reach"
        " port %d can read every host's metrics",
        listen.host,
        listen.port,
    )


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: netmetrix stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def make_server(app: Starlette, listen: Listen, web: WebConfig) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=listen.host,
        port=listen.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        ssl_certfile=str(web.tls_cert) if web.tls_cert else None,
        ssl_keyfile=str(web.tls_key) if web.tls_key else None,
    )
    return _Server(config)


async def run_until_stopped(server: uvicorn.Server) -> None:
    """Serve until SIGTERM or SIGINT (main thread only), then close connections gracefully."""
    loop = asyncio.get_running_loop()
    handled = threading.current_thread() is threading.main_thread()

    def stop(sig: signal.Signals) -> None:
        log.info("serve: %s: stopping", sig.name)
        server.should_exit = True

    if handled:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop, sig)
    try:
        await server.serve()
    finally:
        if handled:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


def run_serve(config: Config, store: Store, *, listen: str | None, no_auth: bool) -> None:
    """``netmetrix serve``: check where it would listen, then serve until stopped."""
    from netmetrix.web.app import create_app
    from netmetrix.web.auth import load_auth

    where = (
        listen_of(listen, "--listen") if listen else listen_of(config.web.listen, "<web listen>")
    )
    check_exposure(where, config.web, no_auth)
    app = create_app(config, store, auth=load_auth(config.web, config.path.name))
    server = make_server(app, where, config.web)
    log.info("serve: %s (SIGTERM or Ctrl-C stops)", where.url(bool(config.web.tls_cert)))
    asyncio.run(run_until_stopped(server))
