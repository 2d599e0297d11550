"""A real PostgreSQL server on a 127.0.0.1 high port, for tests and query-plan checks.

``initdb`` makes a throwaway cluster in a temporary directory; the server runs
with ``fsync`` off (test data only), TCP on loopback only and no Unix socket.
As root, the directory is given to the ``postgres`` user (or ``nobody``) and
the binaries run under ``runuser``, because PostgreSQL refuses to run as root.
One role, ``monitor``, must log in with a password (``scram-sha-256``); every
other role is trusted on loopback.  The server is stopped by PID.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from ports import free_port

SUPERUSER = "netmetrix"
PASSWORD_USER = "monitor"  # the role that needs PGPASSWORD
PASSWORD = "pw-Do-not-print-0xC0FFEE"  # a throwaway test cluster's; tests check it never shows
START_TIMEOUT = 60.0  # seconds for initdb + first "ready"


def bindir() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``: ``pg_config --bindir``, then
    the newest ``/usr/lib/postgresql/*/bin`` (Debian keeps them off PATH)."""
    candidates: list[Path] = []
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout
        candidates.append(Path(out.strip()))
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(versions, key=lambda p: _version(p.parent.name), reverse=True)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    return None


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


@dataclass
class Postgres:
    """A running server; ``url()`` gives SQLAlchemy URLs, ``create_database()`` fresh databases."""

    port: int
    datadir: Path
    process: subprocess.Popen[bytes]
    _names: Iterator[int] = field(default_factory=itertools.count)

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        )

    def create_database(self) -> str:
        """A new empty database; returns its name."""
        name = f"t{os.getpid()}_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} STRATEGY file_copy")
            conn.execute(f"GRANT ALL ON DATABASE {name} TO {PASSWORD_USER}")
            conn.execute(f"ALTER DATABASE {name} OWNER TO {PASSWORD_USER}")
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def log_text(self) -> str:
        log = self.datadir.parent / "postgres.log"
        return log.read_text(errors="replace") if log.exists() else ""


def _as_owner(argv: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *argv] if owner else argv


def _owner() -> str | None:
    """Who runs the server: nobody special unless we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root, but there is no postgres or nobody user to run initdb")


@contextlib.contextmanager
def server() -> Iterator[Postgres]:
    """Start a throwaway server; stop it (by PID) and delete its files however the block ends."""
    binaries = bindir()
    if binaries is None:
        raise RuntimeError(
            "PostgreSQL server binaries not found (pg_config --bindir, /usr/lib/postgresql/*/bin):"
            " run `make system-deps`"
        )
    owner = _owner()
    # Not under pytest's tmp_path: its parents are mode 0700 root, which postgres cannot cross.
    root = Path(tempfile.mkdtemp(prefix="netmetrix-pg-"))
    datadir, log = root / "data", root / "postgres.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        if owner:
            info = pwd.getpwnam(owner)
            os.chown(root, info.pw_uid, info.pw_gid)
        pwfile = root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if owner:
            os.chown(pwfile, info.pw_uid, info.pw_gid)
        subprocess.run(
            _as_owner(
                [
                    str(binaries / "initdb"),
                    *("-D", str(datadir), "-U", SUPERUSER, "--no-sync"),
                    *("--encoding=UTF8", "--locale=C", "--auth=trust"),
                ],
                owner,
            ),
            check=True,
            capture_output=True,
        )
        pwfile.unlink()
        (datadir / "pg_hba.conf").write_text(
            f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        port = free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                _as_owner(
                    [
                        str(binaries / "postgres"),
                        *("-D", str(datadir), "-h", "127.0.0.1", "-p", str(port), "-k", ""),
                        *("-c", "fsync=off", "-c", "synchronous_commit=off"),
                        *("-c", "full_page_writes=off", "-c", "max_connections=60"),
                    ],
                    owner,
                ),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        pg = Postgres(port=port, datadir=datadir, process=process)
        _wait_ready(pg)
        with pg.admin() as conn:
            conn.execute(f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'")
        yield pg
    finally:
        if process is not None:
            _stop(process, datadir)
        shutil.rmtree(root, ignore_errors=True)


def _postmaster_lines(datadir: Path) -> list[str]:
    with contextlib.suppress(OSError):
        return (datadir / "postmaster.pid").read_text().splitlines()
    return []


def _wait_ready(pg: Postgres) -> None:
    """Wait until postmaster.pid says "ready" (what ``pg_ctl -w`` waits for)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if pg.process.poll() is not None:
            raise RuntimeError(f"postgres exited with {pg.process.returncode}:\n{pg.log_text()}")
        lines = _postmaster_lines(pg.datadir)
        if len(lines) >= 8 and lines[7].strip() == "ready":
            return
        time.sleep(0.05)
    raise RuntimeError(f"postgres not ready after {START_TIMEOUT:g}s:\n{pg.log_text()}")


def _stop(process: subprocess.Popen[bytes], datadir: Path) -> None:
    """Fast shutdown (SIGINT) of the postmaster by PID, then SIGKILL if it lingers."""
    lines = _postmaster_lines(datadir)
    pid = int(lines[0]) if lines and lines[0].strip().isdigit() else process.pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        process.kill()
        process.wait(timeout=10)
