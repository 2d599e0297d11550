"""The asyncssh edge: connect with checked host keys and deadlines, upload files, run commands.

Every failure leaves here as a ``HostError`` whose ``outcome`` says what kind
it was and whose message names the phase and the limit that was hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import re
import secrets
import shlex
import stat
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from netmetrix.config import HostConfig, SSHConfig
from netmetrix.errors import HostError, Outcome

log = logging.getLogger(__name__)

USER_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
CONNECT_TRIES = 3  # sshd sheds load (MaxStartups) by dropping fresh connections: retry those
BACKOFF = 0.25  # seconds before the 2nd try; doubled, with jitter, for the 3rd
STDOUT_CAP = 2 << 20  # bytes of probe output we are willing to hold
STDERR_CAP = 64 << 10
PRIVATE_DIR = 0o700  # the probe's directory, when upload creates it

# Exceptions seen when sshd drops a connection before authentication.
_THROTTLE_ERRORS = (asyncssh.ConnectionLost, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True, slots=True)
class Completed:
    exit_status: int | None
    stdout: str
    stderr: str


@dataclass(frozen=True, slots=True)
class RemoteFile:
    name: str  # file name inside the target directory
    data: bytes
    mode: int


class HostKeys:
    """Known host keys: ours (``<ssh known_hosts>``, written under accept-new), then the user's.

    ``strict`` refuses unknown and changed keys; ``accept-new`` records an
    unknown host's key in our file (like OpenSSH StrictHostKeyChecking=accept-new)
    but still refuses a key that differs from a recorded one.
    """

    def __init__(self, ssh: SSHConfig, user_file: Path = USER_KNOWN_HOSTS) -> None:
        self._ours = ssh.known_hosts
        self._policy = ssh.host_key_policy
        self._user_file = user_file.expanduser()
        self._lines: list[str] = []
        for path in (self._ours, self._user_file):
            with contextlib.suppress(FileNotFoundError):
                self._lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
        self._known = asyncssh.import_known_hosts("\n".join(self._lines) + "\n")

    def known(self, host: str, port: int) -> asyncssh.SSHKnownHosts:
        return self._known

    def has_keys_for(self, host: str, port: int) -> bool:
        trusted, ca_keys, *_ = asyncssh.match_known_hosts(self._known, host, host, port)
        return bool(trusted or ca_keys)

    @property
    def accept_new(self) -> bool:
        return self._policy == "accept-new"

    def record(self, host: str, port: int, key: asyncssh.SSHKey) -> None:
        """Append ``key`` for ``host:port`` to our known_hosts file (once)."""
        pattern = host if port == 22 else f"[{host}]:{port}"
        algorithm, blob = key.export_public_key("openssh").decode("ascii").split()[:2]
        line = f"{pattern} {algorithm} {blob}"
        if line in self._lines:
            return
        self._ours.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Owner-only like the store: it lists every host the collector reaches.
        fd = os.open(self._ours, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with open(fd, "a", encoding="ascii") as handle:
            handle.write(line + "\n")
        self._lines.append(line)
        self._known = asyncssh.import_known_hosts("\n".join(self._lines) + "\n")
        log.warning(
            "[%s] Permanently added host key %s to %s", host, key.get_fingerprint(), self._ours
        )


@contextlib.asynccontextmanager
async def connect(
    host: HostConfig, ssh: SSHConfig, keys: HostKeys
) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """Open an SSH connection to ``host``; retry when sshd throttles new connections."""
    conn = await _connect_with_retry(host, ssh, keys)
    try:
        yield conn
    finally:
        conn.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.wait_closed(), 2)


async def _connect_with_retry(
    host: HostConfig, ssh: SSHConfig, keys: HostKeys
) -> asyncssh.SSHClientConnection:
    for attempt in range(1, CONNECT_TRIES + 1):
        try:
            return await _connect_once(host, ssh, keys)
        except _THROTTLE_ERRORS as exc:
            if attempt == CONNECT_TRIES:
                raise HostError(
                    Outcome.THROTTLED,
                    f"connection dropped before login {CONNECT_TRIES} times "
                    f"(sshd MaxStartups throttling?): {exc}",
                ) from exc
            delay = BACKOFF * 2 ** (attempt - 1) * (1 + random.random())  # noqa: S311 - jitter
            log.debug(
                "[%s] connection dropped (%s); retry %d in %.2fs", host.name, exc, attempt, delay
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def _connect_once(
    host: HostConfig, ssh: SSHConfig, keys: HostKeys
) -> asyncssh.SSHClientConnection:
    options = await _options(host, ssh)
    real_host, port = options.host, options.port
    record = keys.accept_new and not keys.has_keys_for(real_host, port)
    try:
        async with asyncio.timeout(ssh.connect_timeout):
            conn = await asyncssh.connect(
                host.target,
                port=host.port or (),
                options=options,
                known_hosts=None if record else keys.known(real_host, port),
            )
    except TimeoutError as exc:
        raise HostError(
            Outcome.TIMEOUT, f"timeout after {ssh.connect_timeout:g}s (connect)"
        ) from exc
    except asyncssh.HostKeyNotVerifiable as exc:
        raise _host_key_error(real_host, port, keys) from exc
    except asyncssh.PermissionDenied as exc:
        raise HostError(Outcome.AUTH, f"auth failed: {exc.reason}") from exc
    except ConnectionRefusedError as exc:
        raise HostError(Outcome.REFUSED, f"connection refused ({real_host}:{port})") from exc
    except OSError as exc:
        if isinstance(exc, _THROTTLE_ERRORS):
            raise
        raise HostError(
            Outcome.UNREACHABLE, f"cannot connect to {real_host}:{port}: {exc}"
        ) from exc
    if record:
        server_key = conn.get_server_host_key()
        if server_key is not None:
            keys.record(real_host, port, server_key)
    return conn


async def _options(host: HostConfig, ssh: SSHConfig) -> asyncssh.SSHClientConnectionOptions:
    """Connection options with ~/.ssh/config applied (HostName, Port, User, IdentityFile...).

    Resolved before connecting so that the host key policy looks at the host
    and port we will really reach, not at an alias.
    """
    try:
        options: asyncssh.SSHClientConnectionOptions
        options = await asyncssh.SSHClientConnectionOptions.construct(
            config=(),  # () means "the user's ~/.ssh/config"; the default None skips it
            host=host.target,
            port=host.port or (),
            username=host.user or (),
            client_keys=_client_keys(host.key) if host.key else (),
            connect_timeout=ssh.connect_timeout,
        )
    except (OSError, asyncssh.KeyImportError) as exc:
        what = f"private key {host.key}" if host.key else "~/.ssh/config or default keys"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise HostError(Outcome.AUTH, f"cannot read {what}: {reason}") from exc
    except ValueError as exc:  # a bad ~/.ssh/config line, an unknown local user...
        raise HostError(Outcome.ERROR, f"ssh options: {exc}") from exc
    return options


def _client_keys(path: Path) -> list[asyncssh.SSHKeyPair]:
    """The key pair(s) in ``path``, parsed once per version of the file.

    One key usually serves a whole fleet: parsing it for every host cost
    about 0.25 ms of CPU per host (bench/RESULTS.md).  A list, as asyncssh
    reads a tuple as (key, certificate).
    """
    stat = path.stat()
    return list(_load_keypairs(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=16)
def _load_keypairs(path: str, mtime_ns: int, size: int) -> tuple[asyncssh.SSHKeyPair, ...]:
    return tuple(asyncssh.load_keypairs([path]))


def _host_key_error(host: str, port: int, keys: HostKeys) -> HostError:
    where = host if port == 22 else f"[{host}]:{port}"
    if keys.has_keys_for(host, port):
        return HostError(
            Outcome.HOST_KEY,
            f"host key changed: {where} does not match known_hosts "
            f"(possible man-in-the-middle; if expected, remove it with ssh-keygen -R '{where}')",
        )
    return HostError(
        Outcome.HOST_KEY,
        f"host key unknown: add it with `ssh-keyscan -p {port} {host} >> known_hosts` "
        'or set <ssh host_key_policy="accept-new"/>',
    )


async def run(
    conn: asyncssh.SSHClientConnection,
    command: str,
    *,
    seconds: float,
    stdin: bytes | None = None,
) -> Completed:
    """Run ``command``; on timeout kill it and close the channel so nothing lingers."""
    proc = await conn.create_process(command, encoding=None)
    try:
        async with asyncio.timeout(seconds):
            if stdin is not None:
                proc.stdin.write(stdin)
            proc.stdin.write_eof()
            out, err = await asyncio.gather(
                _read_capped(proc.stdout, STDOUT_CAP), _read_capped(proc.stderr, STDERR_CAP)
            )
            status = (await proc.wait(check=False)).exit_status
    except TimeoutError as exc:
        raise HostError(Outcome.TIMEOUT, f"timeout after {seconds:g}s (run)") from exc
    finally:
        if proc.exit_status is None:
            # OpenSSH >= 7.9 delivers the signal; closing the channel covers older servers.
            with contextlib.suppress(Exception):
                proc.send_signal("KILL")
        proc.close()
    return Completed(status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


async def _read_capped(stream: asyncssh.SSHReader[bytes], cap: int) -> bytes:
    data = bytearray()
    while chunk := await stream.read(65536):
        if len(data) + len(chunk) > cap:
            raise HostError(Outcome.BAD_MESSAGE, f"bad message: output over {cap} bytes")
        data += chunk
    return bytes(data)


def home_relative(path: str) -> str:
    """``path`` as SFTP and exec take it: ``~/x`` becomes ``x``.

    Both start in the login user's home, so a relative path lands there
    without knowing $HOME; a ``~`` would reach the shell quoted (unexpanded)
    and means nothing to SFTP.
    """
    if path in ("~", "~/"):
        return "."
    return path[2:] if path.startswith("~/") else path


async def upload(
    conn: asyncssh.SSHClientConnection,
    directory: str,
    files: Sequence[RemoteFile],
    *,
    seconds: float,
) -> str:
    """Write ``files`` into ``directory`` atomically; return "sftp" or "exec" (the fallback).

    ``directory`` may start with ``~/`` (the login's home).  It is created
    0700 when missing; an existing one that other users could write (and is
    not sticky), or that belongs to another user than the login or root, is
    refused, as is replacing another user's file in a directory the login
    does not own (a shared one, like /tmp).
    """
    try:
        async with asyncio.timeout(seconds):
            try:
                async with conn.start_sftp_client() as sftp:
                    place = await _sftp_directory(sftp, directory)
                    for item in files:
                        await _sftp_put(sftp, directory, place, item)
                return "sftp"
            except asyncssh.ChannelOpenError:
                pass  # no SFTP subsystem on this host: pipe the files over exec instead
            for item in files:
                await _exec_put(conn, directory, item, seconds)
            return "exec"
    except TimeoutError as exc:
        raise HostError(Outcome.TIMEOUT, f"timeout after {seconds:g}s (upload)") from exc
    except asyncssh.SFTPError as exc:
        raise HostError(Outcome.ERROR, f"upload to {directory} failed: {exc.reason}") from exc


def _refused(directory: str, problem: str) -> HostError:
    return HostError(Outcome.ERROR, f"upload to {directory} refused: {problem}")


def _directory_problem(mode: int, owner: int | None, me: int | None) -> str | None:
    """Why the probe must not live in a directory with this mode and owner (None: it may).

    Like OpenSSH's StrictModes: whoever can rename files there can swap the
    probe for their own code, run as the login user.  A sticky directory
    (/tmp) lets only a file's owner rename it.
    """
    if owner is not None and me is not None and owner not in (me, 0):
        return _owner_problem(owner, me)
    if mode & 0o022 and not mode & stat.S_ISVTX:
        return _writable_problem(stat.filemode(mode))
    return None


def _owner_problem(owner: int, me: int) -> str:
    return f"the directory belongs to uid {owner}, not to the login user (uid {me}) or root"


def _writable_problem(mode_text: str) -> str:
    return (
        f"the directory is writable by other users ({mode_text}), who could swap the probe"
        " for their own code; chmod go-w it, or use a private directory (the default"
        " ~/.cache/netmetrix)"
    )


def _foreign_file_problem(name: str, owner: int, me: int) -> str:
    return (
        f"{name} there belongs to uid {owner}, not to the login user (uid {me}), and cannot be"
        " replaced in a directory shared with other users; remove it, or use a private"
        " <host directory> (the default ~/.cache/netmetrix)"
    )


async def _sftp_directory(sftp: asyncssh.SFTPClient, directory: str) -> asyncssh.SFTPAttrs:
    """Create ``directory`` 0700 if missing; refuse one others could write; return its attrs."""
    path = home_relative(directory)
    created = not await sftp.exists(path)
    await sftp.makedirs(path, asyncssh.SFTPAttrs(permissions=PRIVATE_DIR), exist_ok=True)
    if created:
        await sftp.chmod(path, PRIVATE_DIR)  # the server's umask may have trimmed the mode
    attrs = await sftp.stat(path)
    problem = _directory_problem(attrs.permissions or 0, None, None)
    if problem is not None:
        raise _refused(directory, problem)
    return attrs


async def _sftp_put(
    sftp: asyncssh.SFTPClient, directory: str, place: asyncssh.SFTPAttrs, item: RemoteFile
) -> None:
    base = home_relative(directory).rstrip("/") or "/"
    final = f"{base}/{item.name}"
    temp = f"{base}/.{item.name}.{secrets.token_hex(6)}.tmp"
    attrs = asyncssh.SFTPAttrs(permissions=item.mode)  # created private: the key is never exposed
    try:
        async with sftp.open(temp, "xb", attrs) as handle:
            await handle.write(item.data)
            me = (await handle.stat()).uid  # the login user: SFTP has no "id -u"
        problem = _directory_problem(place.permissions or 0, place.uid, me)
        if problem is not None:
            raise _refused(directory, problem)
        with contextlib.suppress(asyncssh.SFTPNoSuchFile):
            old = await sftp.lstat(final)
            if me is not None and old.uid not in (None, me) and place.uid != me:
                raise _refused(directory, _foreign_file_problem(item.name, old.uid, me))
        await sftp.chmod(temp, item.mode)  # the server's umask may have trimmed the mode
        await sftp.posix_rename(temp, final)  # replaces a planted file or symlink, never follows it
    except BaseException:
        with contextlib.suppress(Exception):
            await sftp.remove(temp)
        raise


_EXEC_REFUSED = 90  # _exec_put's script: a check failed; stderr has "nmx-upload: WHAT ARGS"
_EXEC_FACT = re.compile(r"nmx-upload: (dir-mode|dir-owner|file-owner) (\S+) (\d+) (\d+)")


def _exec_script(directory: str, item: RemoteFile) -> str:
    """A POSIX sh script making the same checks as the SFTP path, then writing ``item``.

    ``ls -ldn`` gives mode and numeric owner everywhere (``stat -c`` is GNU only);
    mkdir -p under umask 077 makes missing directories 0700; ``set -f`` keeps
    the shell from globbing the ``ls`` words it splits.
    """
    q = shlex.quote
    name, temp = q(item.name), q(f".{item.name}.{secrets.token_hex(6)}.tmp")
    return (
        f"set -f && umask 077 && mkdir -p -- {q(home_relative(directory))}"
        f" && cd -- {q(home_relative(directory))} && me=$(id -u) && set -- $(ls -ldn .)"
        ' && owner=$3 && case "$1" in d????????[tT]*) ;; d????w*|d???????w*)'
        f' echo "nmx-upload: dir-mode $1 $owner $me" >&2; exit {_EXEC_REFUSED};; esac'
        ' && if [ "$owner" != "$me" ] && [ "$owner" != 0 ]; then'
        f' echo "nmx-upload: dir-owner $1 $owner $me" >&2; exit {_EXEC_REFUSED}; fi'
        f" && if [ -e {name} ] || [ -h {name} ]; then set -- $(ls -ldn -- {name})"
        ' && if [ "$3" != "$me" ] && [ "$owner" != "$me" ]; then'
        f' echo "nmx-upload: file-owner $1 $3 $me" >&2; exit {_EXEC_REFUSED}; fi; fi'
        f" && cat > {temp} && chmod {item.mode:o} {temp} && mv -f -- {temp} {name}"
    )


async def _exec_put(
    conn: asyncssh.SSHClientConnection, directory: str, item: RemoteFile, seconds: float
) -> None:
    done = await run(conn, _exec_script(directory, item), seconds=seconds, stdin=item.data)
    if done.exit_status == 0:
        return
    fact = _EXEC_FACT.search(done.stderr) if done.exit_status == _EXEC_REFUSED else None
    if fact is not None:
        what, mode_text, owner, me = fact[1], fact[2], int(fact[3]), int(fact[4])
        if what == "dir-mode":
            raise _refused(directory, _writable_problem(mode_text))
        if what == "dir-owner":
            raise _refused(directory, _owner_problem(owner, me))
        raise _refused(directory, _foreign_file_problem(item.name, owner, me))
    tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.exit_status}"]
    raise HostError(Outcome.ERROR, f"upload to {directory} failed: {tail[0]}")
