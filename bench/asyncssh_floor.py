"""The floor under netmetrix: bare asyncssh running netmetrix's probe, nothing else.

    python bench/asyncssh_floor.py config.xml [--same-algorithms]

One event loop, ``Semaphore(concurrency)``, host keys checked, the client
key parsed once; per host: connect, run ``<python> <dir>/client.py CHALLENGE
COLLECTOR`` (the store's collector id, which names the key file that
``netmetrix upload`` wrote), check that an envelope line came back.  No
envelope verification, no store writes, no alerts, no retries, no per-phase
deadlines (one deadline per host, connect_timeout + command_timeout, so that a
host that never answers, as bench/simfleet.py's ``--fail`` makes some, ends
too): the difference to ``netmetrix execute`` is what netmetrix adds on top of
its SSH library.  asyncssh's default algorithms (chacha20-poly1305, the
mlkem768 hybrid key exchange), as issue #15 defines the floor;
``--same-algorithms`` makes the floor prefer AES-GCM and curve25519 as
netmetrix does, to see what netmetrix adds besides its algorithm choice.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import sys
import time
from pathlib import Path

import asyncssh

from netmetrix.config import HostConfig, load_config
from netmetrix.ssh import encryption_algs, kex_algs


def collector_id(database: str) -> str:
    """The SQLite store's collector id, read with sqlite3: SQLAlchemy would cost the floor
    the import time that it is here to leave out."""
    prefix = "sqlite:///"
    if not database.startswith(prefix):
        raise SystemExit(f"floor: only a SQLite <database> is supported, got {database}")
    with sqlite3.connect(f"file:{database[len(prefix) :]}?mode=ro", uri=True) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'collector_id'").fetchone()
    if row is None:
        raise SystemExit(f"floor: {database} has no collector id: run netmetrix upload first")
    return str(row[0])


async def collect(config_path: Path, *, same_algorithms: bool) -> tuple[int, int]:
    config = load_config(config_path)
    algorithms: dict[str, list[str]] = {}
    if same_algorithms:
        algorithms = {"encryption_algs": encryption_algs(), "kex_algs": kex_algs()}
    collector = collector_id(config.database)
    known = asyncssh.import_known_hosts(config.ssh.known_hosts.read_text())
    keys = {h.key: asyncssh.load_keypairs([str(h.key)]) for h in config.hosts if h.key}
    gate = asyncio.Semaphore(config.concurrency)
    deadline = config.ssh.connect_timeout + config.ssh.command_timeout

    async def one(host: HostConfig) -> bool:
        async with gate:
            try:
                async with (
                    asyncio.timeout(deadline),
                    asyncssh.connect(
                        host.target,
                        port=host.port or 22,
                        username=host.user,
                        client_keys=keys[host.key] if host.key else None,
                        known_hosts=known,
                        config=None,
                        **algorithms,
                    ) as conn,
                ):
                    command = f"exec {host.python} {host.directory}/{config.script} "
                    challenge = secrets.token_hex(16)
                    done = await conn.run(f"{command}{challenge} {collector}", check=False)
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                print(f"[{host.name}] FAILED: {exc!r}", file=sys.stderr)
                return False
            return done.exit_status == 0 and str(done.stdout).startswith("NMX1.")

    results = await asyncio.gather(*(one(h) for h in config.hosts))
    return sum(results), len(results) - sum(results)


def main() -> int:
    started = time.monotonic()
    same = "--same-algorithms" in sys.argv[2:]
    ok, failed = asyncio.run(collect(Path(sys.argv[1]), same_algorithms=same))
    print(f"floor: {ok} ok, {failed} failed in {time.monotonic() - started:.2f}s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
