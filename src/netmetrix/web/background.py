"""The web application served from a background thread: for ``netmetrix demo``, which
collects on its main thread while the dashboard is up, and for the tests.

``serve`` and ``watch --listen`` run the server on their own event loop instead
(``server.run_until_stopped``); this is the same server (``server.make_server``)
on a loop of its own in a daemon thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from netmetrix.config import Config, WebConfig
from netmetrix.store import Store
from netmetrix.web.app import create_app
from netmetrix.web.server import Listen, make_server

START_TIMEOUT = 30.0  # seconds for the server to listen
STOP_TIMEOUT = 30.0  # seconds for it to close its connections and end


def loopback_socket(preferred: int) -> socket.socket:
    """A socket listening on 127.0.0.1:``preferred``, or on a port the kernel picks when
    ``preferred`` is taken (or 0).  Bound here, not by uvicorn: no race for the port."""
    for port in (preferred, 0):
        sock = socket.socket()
        try:
            # as every server does: a connection of an earlier run in TIME_WAIT must not
            # keep the port; one that listens still does
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(128)
        except OSError:
            sock.close()
            if port == 0:
                raise
            continue
        return sock
    raise AssertionError("unreachable")


@contextlib.contextmanager
def serving(config: Config, store: Store, preferred_port: int = 0) -> Iterator[str]:
    """Serve the whole web side over ``store`` on 127.0.0.1 (no authentication: loopback
    only) while the block runs; yield its URL.  The port is ``preferred_port`` unless
    that one is taken.  RuntimeError if the server cannot start."""
    sock = loopback_socket(preferred_port)
    listen = Listen(host="127.0.0.1", port=int(sock.getsockname()[1]))
    server = make_server(create_app(config, store), listen, WebConfig())
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported below
            failure.append(exc)

    thread = threading.Thread(target=run, name="netmetrix-web", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if failure or not thread.is_alive():
                raise RuntimeError(f"the dashboard did not start: {failure[:1]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start within {START_TIMEOUT:g} s")
            thread.join(0.05)
        yield listen.url(tls=False)
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        sock.close()
