"""The SQLite file on disk: created owner-only, and a warning when others can read it.

The store holds every host's key, so its file, the -wal and -shm files SQLite
makes beside it, and the directories netmetrix creates for it are owner-only
(0600/0700), whatever the umask.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from sqlalchemy.engine import URL

from netmetrix.errors import StoreError

log = logging.getLogger(__name__)

PRIVATE_FILE = 0o600  # the store holds every host's key: owner only, whatever the umask
PRIVATE_DIR = 0o700
_SQLITE_SIDE_FILES = ("-wal", "-shm")  # SQLite creates them with the database file's mode


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL; None for an in-memory database or a ``file:`` URI."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def make_private_file(url: URL, display: str) -> None:
    """Create the SQLite file (and missing directories) owner-only, or check an existing one.

    The file is created empty with mode 0600 before SQLite opens it: SQLite
    treats an empty file as an empty database and gives the -wal and -shm
    files it makes later the database file's mode.  Creating it with that mode
    leaves no moment in which another user could open it, and needs no
    process-wide umask change.
    """
    path = sqlite_path(url)
    if path is None:
        return
    _make_parent_dir(path.parent, display)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    except FileExistsError:
        warn_if_shared(path)
        return
    except OSError as err:
        raise StoreError(
            f"database {display}: cannot create {str(path)!r}: {err.strerror}"
        ) from None
    os.close(fd)


def _make_parent_dir(parent: Path, display: str) -> None:
    """Create ``parent`` and its missing ancestors with mode 0700.

    ``Path.mkdir(parents=True)`` would give the ancestors the umask's mode.
    """
    missing: list[Path] = []
    while not parent.exists() and parent != parent.parent:  # bounded by the path's depth
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR)
            directory.chmod(PRIVATE_DIR)  # a umask such as 0277 would have taken our own bits
        except FileExistsError:
            continue  # made by another process just now
        except OSError as err:
            raise StoreError(
                f"database {display}: cannot create directory {str(directory)!r}: {err.strerror}"
            ) from None


def warn_if_shared(path: Path) -> list[Path]:
    """Log one WARNING when the SQLite file or its -wal/-shm can be read by other users.

    Returns the files named in it.  The mode is left alone: a group may be
    sharing the file on purpose (a dashboard running as another user).
    """
    shared: list[tuple[Path, int]] = []
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in _SQLITE_SIDE_FILES)):
        try:
            mode = stat.S_IMODE(candidate.stat().st_mode)
        except OSError:
            continue  # absent (-wal and -shm exist only while the store is open)
        if mode & 0o077:
            shared.append((candidate, mode))
    if shared:
        modes = ", ".join(f"{p} (mode {m:04o})" for p, m in shared)
        log.warning(
            "database %s can be read by other users, and it holds every host's key: "
            "run chmod 600 %s",
            modes,
            " ".join(str(p) for p, _ in shared),
        )
    return [p for p, _ in shared]
