"""A real HTTP server on 127.0.0.1 that takes webhook and Alertmanager-style POSTs (#16).

stdlib ``http.server`` in a thread; each request is kept (path, headers, body).
``answers`` lists the status codes to give, in order (then 200); ``hold`` makes
it wait before answering until ``release()`` (a receiver that hangs).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ports import free_port


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HookServer:
    port: int
    requests: list[Request] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    hold: bool = False
    _released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def release(self) -> None:
        self._released.set()

    def answer(self, request: Request) -> int:
        with self._lock:
            self.requests.append(request)
            status = self.answers.pop(0) if self.answers else 200
        if self.hold:
            self._released.wait(120)  # bounded: the fixture releases it at the end anyway
        return status


def _handler(server: HookServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            status = server.answer(Request(self.path, dict(self.headers.items()), body))
            reply = b"{}" if status < 300 else b"no such hook"
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
            except OSError:  # the client gave up waiting (a hanging receiver's test)
                pass

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def hook_server() -> Iterator[HookServer]:
    """A running HookServer; stopped (and any held request released) on exit."""
    state = HookServer(port=free_port())
    httpd = ThreadingHTTPServer(("127.0.0.1", state.port), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="hook-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release()
        httpd.shutdown()
        httpd.server_close()
        thread.join(30)
