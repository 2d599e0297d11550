"""The asyncssh edge: connect with checked host keys and deadlines, upload files, run commands.

Every failure leaves here as a ``HostError`` whose ``outcome`` says what kind
it was and whose message names the phase and the limit that was hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import secrets
import shlex
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

# Exceptions seen when sshd drops a connection before authentication.
_THROTTLE_ERRORS = (asyncssh.ConnectionLost, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True, slots=True)
class Completed:
    exit_status: int | None  # -1 when the command was killed by a signal
    stdout: str
    stderr: str
    exit_signal: str | None = None  # e.g. "KILL", when the command was killed by one


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
        self._ours.parent.mkdir(parents=True, exist_ok=True)
        with self._ours.open("a", encoding="ascii") as handle:
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
            finished = await proc.wait(check=False)
    except TimeoutError as exc:
        raise HostError(Outcome.TIMEOUT, f"timeout after {seconds:g}s (run)") from exc
    finally:
        if proc.exit_status is None:
            # OpenSSH >= 7.9 delivers the signal, but not to root's sessions; closing the
            # channel signals nothing.  So the command must end itself on the host (the
            # deadline in collect.probe_command); this is only the backup.
            with contextlib.suppress(Exception):
                proc.send_signal("KILL")
        proc.close()
    by_signal = finished.exit_signal[0] if finished.exit_signal else None
    return Completed(
        finished.exit_status,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        exit_signal=by_signal,
    )


async def _read_capped(stream: asyncssh.SSHReader[bytes], cap: int) -> bytes:
    data = bytearray()
    while chunk := await stream.read(65536):
        if len(data) + len(chunk) > cap:
            raise HostError(Outcome.BAD_MESSAGE, f"bad message: output over {cap} bytes")
        data += chunk
    return bytes(data)


async def upload(
    conn: asyncssh.SSHClientConnection,
    directory: str,
    files: Sequence[RemoteFile],
    *,
    seconds: float,
) -> str:
    """Write ``files`` into ``directory`` atomically; return "sftp" or "exec" (the fallback)."""
    try:
        async with asyncio.timeout(seconds):
            try:
                async with conn.start_sftp_client() as sftp:
                    await sftp.makedirs(directory, exist_ok=True)
                    for item in files:
                        await _sftp_put(sftp, directory, item)
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


async def _sftp_put(sftp: asyncssh.SFTPClient, directory: str, item: RemoteFile) -> None:
    final = f"{directory.rstrip('/')}/{item.name}"
    temp = f"{directory.rstrip('/')}/.{item.name}.{secrets.token_hex(6)}.tmp"
    attrs = asyncssh.SFTPAttrs(permissions=item.mode)  # created private: the key is never exposed
    try:
        async with sftp.open(temp, "wb", attrs) as handle:
            await handle.write(item.data)
        await sftp.chmod(temp, item.mode)  # the server's umask may have trimmed the mode
        await sftp.posix_rename(temp, final)
    except BaseException:
        with contextlib.suppress(Exception):
            await sftp.remove(temp)
        raise


async def _exec_put(
    conn: asyncssh.SSHClientConnection, directory: str, item: RemoteFile, seconds: float
) -> None:
    final = f"{directory.rstrip('/')}/{item.name}"
    temp = f"{directory.rstrip('/')}/.{item.name}.{secrets.token_hex(6)}.tmp"
    q = shlex.quote
    command = (
        f"umask 077 && mkdir -p -- {q(directory)} && cat > {q(temp)} && "
        f"chmod {item.mode:o} {q(temp)} && mv -f -- {q(temp)} {q(final)}"
    )
    done = await run(conn, command, seconds=seconds, stdin=item.data)
    if done.exit_status != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.exit_status}"]
        raise HostError(Outcome.ERROR, f"upload to {directory} failed: {tail[0]}")
