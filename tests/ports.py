"""Free loopback ports for test servers (sshd, SMTP, PostgreSQL).

Under pytest-xdist each worker walks its own block of ports below the kernel's
ephemeral range (32768 and up on Linux).  Two workers then never hand out the
same port, an outgoing connection never takes a port between its pick and the
server's bind, and a port picked as "nobody listens here" stays unused for the
session, since a worker does not return to a port before it has used its whole
block.  Outside xdist (a plain `pytest`, the benchmarks) the kernel picks.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator

BLOCK = 1000  # ports per worker
FIRST = 16384  # 16 blocks end at 32383, below the ephemeral range
BLOCKS = 16


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _worker_ports() -> Iterator[int] | None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    base = FIRST + (int(worker[2:]) % BLOCKS) * BLOCK
    # start where the worker's pid says, so back-to-back sessions do not reuse ports first
    start = os.getpid() % BLOCK
    return itertools.cycle([base + (start + i) % BLOCK for i in range(BLOCK)])


_ports = _worker_ports()


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    if _ports is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for _ in range(BLOCK):
        port = next(_ports)
        if _is_free(port):
            return port
    raise RuntimeError(f"no free port in this worker's block of {BLOCK}")
