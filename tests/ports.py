"""Free loopback ports for test servers (sshd, SMTP, PostgreSQL).

Under pytest-xdist each worker walks its own block of ports below the kernel's
ephemeral range (32768 and up on Linux).  A worker claims its block with an
exclusive lock on a file held until it exits, so two workers, of one test
session or of two sessions run at once, never hand out the same port, an
outgoing connection never takes a port between its pick and the server's bind,
and a port picked as "nobody listens here" stays unused for the session, since
a worker does not return to a port before it has used its whole block.
Outside xdist (a plain `pytest`, the benchmarks) the kernel picks.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

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


_held: list[IO[bytes]] = []  # the claimed block's lock file, open (so locked) until exit


def _claim_block(first_choice: int) -> int:
    """The first block, from ``first_choice`` on, that no other live worker holds."""
    locks = Path(tempfile.gettempdir()) / "netmetrix-test-ports"
    locks.mkdir(mode=0o1777, exist_ok=True)
    for i in range(BLOCKS):
        block = (first_choice + i) % BLOCKS
        handle = (locks / f"block-{block}.lock").open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _held.append(handle)
        return block
    raise RuntimeError(f"all {BLOCKS} test port blocks are held by running test sessions")


def _worker_ports() -> Iterator[int] | None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    base = FIRST + _claim_block(int(worker[2:]) % BLOCKS) * BLOCK
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
