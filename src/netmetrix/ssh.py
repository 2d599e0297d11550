"""The asyncssh edge: connect with checked host keys and deadlines, upload files, run commands.

Every failure leaves here as a ``HostError`` whose ``outcome`` says what kind
it was and whose message names the phase and the limit that was hit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import ipaddress
import logging
import os
import random
import re
import secrets
import shlex
import socket
import stat
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncssh
from asyncssh.constants import DEFAULT_PORT
from asyncssh.encryption import get_default_encryption_algs
from asyncssh.kex import get_default_kex_algs
from asyncssh.public_key import get_default_public_key_algs

from netmetrix.config import HostConfig, ResolvedHost, SSHConfig
from netmetrix.errors import HostError, Outcome

log = logging.getLogger(__name__)

USER_SSH_CONFIG = Path("~/.ssh/config")
USER_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
# sshd sheds load (MaxStartups) by dropping fresh connections: retry those, more patiently
# than resets (a firewall, a wrong port), which another try rarely cures.  Five tries wait
# up to 7.5 s in all: under load, sshd keeps connections unauthenticated for longer and so
# drops more of them (three tries lost hosts on a 2-core box at load average 20).
THROTTLED_TRIES = 5
RESET_TRIES = 3
BACKOFF = 0.25  # seconds before the 2nd try; doubled, with jitter, for each next one
BANNER_WAIT = 3.0  # seconds to wait for the server to speak first before we do
MAX_JUMPS = 8  # ProxyJump hops followed, so that a loop in ~/.ssh/config ends
STDOUT_CAP = 2 << 20  # bytes of probe output we are willing to hold
STDERR_CAP = 64 << 10
PRIVATE_DIR = 0o700  # the probe's directory, when upload creates it

# sshd's greeting to a connection it drops past MaxStartups (OpenSSH >= 8.2; older ones say nothing)
_MAXSTARTUPS_NOTICE = b"Exceeded MaxStartups"
# Plain host key algorithms, to learn a key (not a certificate) under accept-new
_PLAIN_KEY_ALGS = [alg.decode("ascii") for alg in get_default_public_key_algs()]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientFiles:
    """The OpenSSH client files read besides config.xml's, as ``ssh`` reads them.

    By default the user's: ~/.ssh/config (HostName, Port, User, IdentityFile,
    ProxyJump... for hosts and their jump hosts alike) and ~/.ssh/known_hosts
    (trusted after <ssh known_hosts>).  ``NO_USER_FILES`` reads none, for a
    fleet that config.xml describes completely (the demo's loopback hosts, which
    a user's ``Host *`` ProxyJump must not redirect).
    """

    ssh_config: tuple[Path, ...] = (USER_SSH_CONFIG,)  # read in order; missing ones skipped
    known_hosts: tuple[Path, ...] = (USER_KNOWN_HOSTS,)

    def config_paths(self) -> list[Path]:
        """The readable OpenSSH config files, ``~`` expanded: asyncssh's ``config=``."""
        paths = (path.expanduser() for path in self.ssh_config)
        return [path for path in paths if os.access(path, os.R_OK)]


USER_FILES = ClientFiles()
NO_USER_FILES = ClientFiles(ssh_config=(), known_hosts=())


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

    Both files are read as OpenSSH reads them, markers included: a key marked
    ``@revoked`` is refused under any policy, and a host certificate signed by
    a ``@cert-authority`` key is trusted.  ``strict`` refuses unknown and
    changed keys; ``accept-new`` records an unknown host's key in our file
    (like OpenSSH StrictHostKeyChecking=accept-new) but still refuses a key
    that differs from a recorded one.
    """

    def __init__(self, ssh: SSHConfig, files: ClientFiles = USER_FILES) -> None:
        self._ours = ssh.known_hosts
        self._policy = ssh.host_key_policy
        paths = dict.fromkeys((self._ours, *(path.expanduser() for path in files.known_hosts)))
        self._files = {path: _read_lines(path) for path in paths}
        self._known = _import_known(self._files)

    def lookup(self, host: str, addr: str, port: int | None) -> _Entries:
        """Trusted keys, CA keys and revoked keys for a host, as asyncssh asks (port None: 22).

        Passed to asyncssh as its ``known_hosts``.
        """
        return _lookup(self._known, host, addr, port)

    @property
    def accept_new(self) -> bool:
        return self._policy == "accept-new"

    def knows(self, host: str, port: int, addr: str = "") -> bool:
        """Whether a key or CA is trusted for ``host`` (or ``addr``); @revoked lines don't count."""
        trusted, ca_keys, _ = self.lookup(host, addr, None if port == DEFAULT_PORT else port)
        return bool(trusted or ca_keys)

    def accepts_unknown(self, host: str, addr: str, port: int) -> bool:
        """Whether a key known_hosts does not list may be recorded (accept-new, host unknown)."""
        return self.accept_new and not self.knows(host, port, addr)

    def record(self, host: str, port: int, key: asyncssh.SSHKey, *, say: bool = True) -> None:
        """Append ``key`` for ``host:port`` to our known_hosts file (once); ``say``: log it
        (``trust`` shows its own table instead)."""
        algorithm, blob = key.export_public_key("openssh").decode("ascii").split()[:2]
        line = f"{_pattern(host, port)} {algorithm} {blob}"
        lines = self._files[self._ours]
        if line in lines:
            return
        self._ours.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Owner-only like the store: it lists every host the collector reaches.
        fd = os.open(self._ours, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with open(fd, "a", encoding="ascii") as handle:
            handle.write(line + "\n")
        lines.append(line)
        self._known = _import_known(self._files)
        if say:
            log.warning(
                "[%s] Permanently added host key %s to %s", host, key.get_fingerprint(), self._ours
            )

    def refusal(self, host: str, port: int, reason: str) -> HostError:
        """The error for a host key asyncssh refused (``reason``), with a fix that works."""
        where = _pattern(host, port)
        if "revoked" in reason:
            marks = ", ".join(self._revocations(host, port)) or "known_hosts"
            whose = "the CA that signed its key" if "CA key" in reason else "its key"
            return HostError(
                Outcome.HOST_KEY,
                f"REVOKED HOST KEY for {where}: {marks} marks {whose} @revoked: "
                "the key has been revoked; netmetrix refuses it "
                "(a stolen key may be impersonating the host)",
            )
        if "not trusted" not in reason:  # a certificate that is expired, for another host...
            return HostError(Outcome.HOST_KEY, f"host key not verified for {where}: {reason}")
        stale = self._holding(host, port)
        if stale:
            removes = " and ".join(
                f"`ssh-keygen -f {shlex.quote(str(path))} -R {shlex.quote(pattern)}`"
                for path, pattern in stale
            )
            then = (
                "the next run records the new one"
                if self.accept_new
                else f"add the new one with {self._keyscan(host, port)}"
            )
            return HostError(
                Outcome.HOST_KEY,
                f"host key changed: {where} does not match known_hosts (possible "
                f"man-in-the-middle); if you expect the change, remove the old key with "
                f"{removes}, then {then}",
            )
        if self.knows(host, port):
            return HostError(
                Outcome.HOST_KEY,
                f"host key changed: {where} offered a key that no @cert-authority trusted "
                "for it in known_hosts has signed (possible man-in-the-middle)",
            )
        return HostError(
            Outcome.HOST_KEY,
            f"host key unknown: add it with {self._keyscan(host, port)} "
            'or set <ssh host_key_policy="accept-new"/>',
        )

    def _keyscan(self, host: str, port: int) -> str:
        return f"`ssh-keyscan -p {port} {shlex.quote(host)} >> {shlex.quote(str(self._ours))}`"

    def _holding(self, host: str, port: int) -> list[tuple[Path, str]]:
        """(file, pattern) of every file with a trusted key for the host: what to ``ssh-keygen -R``.

        The pattern is ``[host]:port``, or the bare host that asyncssh falls
        back to when no entry names the port.
        """
        found = []
        for path, lines in self._files.items():
            known = _import_known({path: lines})
            for pattern in dict.fromkeys((_pattern(host, port), host)):
                if known.match(pattern, "", None)[0]:
                    found.append((path, pattern))
                    break
        return found

    def _revocations(self, host: str, port: int) -> list[str]:
        """``file:line`` of each @revoked line that applies to the host."""
        port_arg = None if port == DEFAULT_PORT else port
        found = []
        for path, lines in self._files.items():
            for number, line in enumerate(lines, 1):
                if not line.lstrip().startswith("@revoked"):
                    continue
                with contextlib.suppress(ValueError):
                    if _lookup(asyncssh.import_known_hosts(line), host, "", port_arg)[2]:
                        found.append(f"{path}:{number}")
        return found


_Entries = tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]


def _lookup(known: asyncssh.SSHKnownHosts, host: str, addr: str, port: int | None) -> _Entries:
    """asyncssh's matching, minus a flaw: it keeps the @revoked lines of ``[host]:port``.

    When no key is trusted for ``[host]:port``, asyncssh matches again
    without the port and forgets the revocations it had found, so an
    unknown host with a revoked key looked merely unknown (and accept-new
    trusted it).  Here the revocations of ``[host]:port`` always count.
    """
    trusted, ca_keys, found, *_ = known.match(host, addr, port)
    revoked = list(found)
    if port is not None:
        names = [f"[{name}]:{port}" for name in (host, addr) if name]
        for name in names:  # matched as plain names: no port fallback, no IP parsing
            revoked += known.match(name, "", None)[2]
    return list(trusted), list(ca_keys), list(dict.fromkeys(revoked))


def _pattern(host: str, port: int) -> str:
    """How known_hosts names ``host`` on ``port`` (``[host]:port`` unless port 22)."""
    return host if port == DEFAULT_PORT else f"[{host}]:{port}"


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []


def _import_known(files: dict[Path, list[str]]) -> asyncssh.SSHKnownHosts:
    """All entries of ``files``; a line asyncssh cannot parse is skipped, as OpenSSH does."""
    text = "".join(line + "\n" for lines in files.values() for line in lines)
    try:
        return asyncssh.import_known_hosts(text)
    except ValueError:
        pass
    good = []
    for path, lines in files.items():
        for number, line in enumerate(lines, 1):
            try:
                asyncssh.import_known_hosts(line + "\n")
            except ValueError as exc:
                log.warning("%s:%d: line ignored: %s", path, number, exc)
            else:
                good.append(line + "\n")
    return asyncssh.import_known_hosts("".join(good))


class _KeyPolicy(asyncssh.SSHClient):
    """Rules on a host key that known_hosts neither lists nor revokes.

    asyncssh has already refused a revoked key and accepted a listed one by
    then; what is left is an unknown key, which accept-new takes for a host
    with no trusted key or CA (asyncssh then checks that the server holds
    the private key before the connection succeeds).
    """

    def __init__(self, keys: HostKeys) -> None:
        self._keys = keys
        self.accepted: tuple[str, int, asyncssh.SSHKey] | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        if not self._keys.accepts_unknown(host, addr, port):
            return False
        self.accepted = (host, port, key)
        return True


@dataclass(frozen=True, slots=True)
class _Hop:
    """One SSH connection on the way to a host: a jump host, or the host itself."""

    host: str  # as given to asyncssh (an alias that ~/.ssh/config may rewrite)
    port: int | tuple[()]  # () means: ~/.ssh/config's Port, else 22
    options: asyncssh.SSHClientConnectionOptions
    files: ClientFiles  # the OpenSSH config its jump hosts are resolved with too
    label: str = ""  # "jump host NAME: " to put before a jump host's errors

    @property
    def key_host(self) -> str:
        """The name known_hosts has the host's keys under (HostKeyAlias, else HostName)."""
        return self.options.host_key_alias or self.options.host


class _EarlyClose(Exception):
    """The server closed or reset the connection before login: worth another try."""

    def __init__(self, outcome: Outcome, reason: str, label: str = "") -> None:
        super().__init__(reason)
        self.outcome, self.reason, self.label = outcome, reason, label

    def final(self, tries: int) -> HostError:
        if self.outcome is Outcome.THROTTLED:
            what = f"connection dropped before login {tries} times (sshd MaxStartups throttling?)"
        else:
            what = f"connection reset before login {tries} times"
        return HostError(self.outcome, f"{self.label}{what}: {self.reason}")


@contextlib.asynccontextmanager
async def connect(
    host: HostConfig, ssh: SSHConfig, keys: HostKeys, files: ClientFiles = USER_FILES
) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """Open an SSH connection to ``host``, through its ProxyJump hosts if ~/.ssh/config has any.

    Jump hosts' keys are checked like the host's own; a connection dropped
    before login (sshd throttling, resets) is retried.  ``files``: the OpenSSH
    config to apply (the user's by default).
    """
    target = _Hop(host.target, host.port or (), await _options(host, ssh, files), files)
    async with contextlib.AsyncExitStack() as opened:
        yield await _connect_with_retry(target, ssh, keys, opened)


async def _connect_with_retry(
    target: _Hop, ssh: SSHConfig, keys: HostKeys, opened: contextlib.AsyncExitStack
) -> asyncssh.SSHClientConnection:
    attempt = 0
    while True:
        attempt += 1
        async with contextlib.AsyncExitStack() as chain:
            try:
                conn = await _open_chain(target, ssh, keys, chain, depth=0)
            except _EarlyClose as exc:
                tries = THROTTLED_TRIES if exc.outcome is Outcome.THROTTLED else RESET_TRIES
                if attempt >= tries:
                    raise exc.final(attempt) from exc
                failure = exc
            else:
                opened.push_async_exit(chain.pop_all())
                return conn
        delay = BACKOFF * 2 ** (attempt - 1) * (1 + random.random())  # noqa: S311 - jitter
        log.debug(
            "[%s] %sconnection closed before login (%s); retry %d in %.2fs",
            target.host,
            failure.label,
            failure.reason,
            attempt,
            delay,
        )
        await asyncio.sleep(delay)


async def _open_chain(
    hop: _Hop, ssh: SSHConfig, keys: HostKeys, chain: contextlib.AsyncExitStack, *, depth: int
) -> asyncssh.SSHClientConnection:
    """Connect to ``hop``, first opening the jump hosts its ProxyJump names (OpenSSH's order)."""
    tunnel = None
    if isinstance(hop.options.tunnel, str):
        tunnel = await _open_jumps(hop.options.tunnel, hop.files, ssh, keys, chain, depth=depth)
    return await _open_hop(hop, ssh, keys, tunnel, chain)


async def _open_jumps(
    spec: str,
    files: ClientFiles,
    ssh: SSHConfig,
    keys: HostKeys,
    chain: contextlib.AsyncExitStack,
    *,
    depth: int,
) -> asyncssh.SSHClientConnection:
    """Connect to each ``[user@]host[:port]`` of a ProxyJump list, each through the one before.

    asyncssh would open these itself, but checking their keys against
    ~/.ssh/known_hosts only and reporting their failures as the target's.
    """
    if depth >= MAX_JUMPS:
        raise HostError(
            Outcome.ERROR, f"ProxyJump {spec}: more than {MAX_JUMPS} jump hosts (a loop?)"
        )
    conn: asyncssh.SSHClientConnection | None = None
    for part in spec.split(","):
        hop = await _jump_hop(part.strip(), ssh, files)
        if conn is None:  # the first jump host may have a ProxyJump of its own, as in OpenSSH
            conn = await _open_chain(hop, ssh, keys, chain, depth=depth + 1)
        else:
            conn = await _open_hop(hop, ssh, keys, conn, chain)
    assert conn is not None  # str.split always yields one part
    return conn


async def _jump_hop(spec: str, ssh: SSHConfig, files: ClientFiles) -> _Hop:
    """A ProxyJump entry, with ~/.ssh/config (``files``) applied to it as OpenSSH does."""
    label = f"jump host {spec}: "
    user, _, name = spec.rpartition("@")
    name, colon, port_text = name.partition(":")
    try:
        port: int | tuple[()] = int(port_text) if colon else ()
        options: asyncssh.SSHClientConnectionOptions
        options = await asyncssh.SSHClientConnectionOptions.construct(
            config=files.config_paths(),
            host=name,
            port=port,
            username=user or (),
            connect_timeout=ssh.connect_timeout,
        )
    except (OSError, asyncssh.KeyImportError, ValueError) as exc:
        raise HostError(Outcome.ERROR, f"{label}ssh options: {exc}") from exc
    return _Hop(name, port, options, files, label)


async def _open_hop(
    hop: _Hop,
    ssh: SSHConfig,
    keys: HostKeys,
    tunnel: asyncssh.SSHClientConnection | None,
    chain: contextlib.AsyncExitStack,
) -> asyncssh.SSHClientConnection:
    """One SSH connection, its host key checked by ``keys``; failures name the hop."""
    port = hop.options.port
    policy = _KeyPolicy(keys)
    extra: dict[str, object] = {}
    if keys.accept_new and not keys.knows(hop.key_host, port):
        # Nothing to check a certificate with: learn the plain key, as OpenSSH does.
        extra["server_host_key_algs"] = _PLAIN_KEY_ALGS
    banner = False
    try:
        async with asyncio.timeout(ssh.connect_timeout):
            sock = None
            if tunnel is None and not hop.options.proxy_command:
                sock, banner = await _open_socket(hop.options)
            conn = await asyncssh.connect(
                hop.host,
                port=hop.port,
                options=hop.options,
                tunnel=tunnel,
                sock=sock,
                known_hosts=keys.lookup,
                client_factory=lambda: policy,
                **extra,
            )
    except _CONNECT_ERRORS as exc:
        raise _connect_error(exc, hop, ssh, keys, banner=banner) from exc
    chain.push_async_callback(_close, conn)
    if policy.accepted is not None:
        keys.record(*policy.accepted)
    return conn


_CONNECT_ERRORS = (
    _EarlyClose,
    TimeoutError,
    asyncssh.HostKeyNotVerifiable,
    asyncssh.PermissionDenied,
    asyncssh.ConnectionLost,
    OSError,  # refused, reset, broken pipe, unreachable
    asyncssh.ChannelOpenError,  # the jump host would not forward to this hop
)


def _connect_error(
    exc: BaseException, hop: _Hop, ssh: SSHConfig, keys: HostKeys, *, banner: bool
) -> HostError | _EarlyClose:
    """What a failed connect to ``hop`` says: its outcome, named by the hop's label."""
    real_host, port, label = hop.options.host, hop.options.port, hop.label
    if isinstance(exc, _EarlyClose):
        return _EarlyClose(exc.outcome, exc.reason, label)
    if isinstance(exc, TimeoutError):
        return HostError(
            Outcome.TIMEOUT, f"{label}timeout after {ssh.connect_timeout:g}s (connect)"
        )
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        refusal = keys.refusal(hop.key_host, port, exc.reason)
        return HostError(refusal.outcome, f"{label}{refusal}")
    if isinstance(exc, asyncssh.PermissionDenied):
        return HostError(Outcome.AUTH, f"{label}auth failed: {exc.reason}")
    if isinstance(exc, asyncssh.ConnectionLost):
        # Before sshd's banner, a close is sshd shedding load; after it, something else.
        if banner:
            return _EarlyClose(Outcome.RESET, "closed by the server after its SSH banner", label)
        return _EarlyClose(Outcome.THROTTLED, str(exc), label)
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return _EarlyClose(Outcome.RESET, str(exc), label)
    if isinstance(exc, ConnectionRefusedError):
        return HostError(Outcome.REFUSED, f"{label}connection refused ({real_host}:{port})")
    reason = exc.reason if isinstance(exc, asyncssh.ChannelOpenError) else str(exc)
    return HostError(Outcome.UNREACHABLE, f"{label}cannot connect to {real_host}:{port}: {reason}")


async def _close(conn: asyncssh.SSHClientConnection) -> None:
    conn.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.wait_closed(), 2)


async def _open_socket(options: asyncssh.SSHClientConnectionOptions) -> tuple[socket.socket, bool]:
    """A TCP connection to the host; True if the server's SSH banner has arrived.

    We wait for the server to speak first (sshd always does) before asyncssh
    sends our banner: sshd past MaxStartups then closes cleanly, saying
    "Exceeded MaxStartups", instead of resetting a connection with unread
    data, so a drop can be told from a reset.
    """
    loop = asyncio.get_running_loop()
    host, port = options.host, options.port
    infos = await _addresses(loop, host, port, options.family)
    error: OSError = OSError(f"no address found for {host}")
    for family, kind, proto, _name, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            if options.local_addr:
                sock.bind(options.local_addr)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        try:
            return sock, await _first_words(loop, sock)
        except BaseException:
            sock.close()
            raise
    try:
        raise error
    finally:
        # The traceback holds this frame, whose `error` holds the exception: a cycle
        # per refused host that only the cyclic GC would free (#15).
        del error


async def _addresses(
    loop: asyncio.AbstractEventLoop, host: str, port: int, family: int
) -> list[tuple[Any, ...]]:
    """getaddrinfo for ``host``: in the loop's executor for a name, which may wait on DNS;
    at once for an IP address, which needs no lookup (no thread round trip per host)."""
    kind = socket.SOCK_STREAM
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return await loop.getaddrinfo(host, port, family=family, type=kind)
    return socket.getaddrinfo(host, port, family, kind, 0, socket.AI_NUMERICHOST)


async def _first_words(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bool:
    """Peek at what the server says first: a banner (True), nothing yet (False), or a drop."""
    readable: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(sock.fileno(), ready)
    try:
        async with asyncio.timeout(BANNER_WAIT):
            await readable
    except TimeoutError:
        return False  # a slow server, or one that waits for us: asyncssh goes on
    finally:
        loop.remove_reader(sock.fileno())
    try:
        first = sock.recv(64, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    except ConnectionResetError as exc:
        raise _EarlyClose(Outcome.RESET, str(exc)) from exc
    if not first:
        raise _EarlyClose(Outcome.THROTTLED, "closed by the server before its SSH banner")
    if first.startswith(_MAXSTARTUPS_NOTICE):
        raise _EarlyClose(Outcome.THROTTLED, f'sshd said "{_MAXSTARTUPS_NOTICE.decode()}"')
    return first.startswith(b"SSH-")


async def _options(
    host: HostConfig, ssh: SSHConfig, files: ClientFiles
) -> asyncssh.SSHClientConnectionOptions:
    """Connection options with ~/.ssh/config applied (HostName, Port, User, IdentityFile...).

    Resolved before connecting so that the host key policy looks at the host
    and port we will really reach, not at an alias.
    """
    config = files.config_paths()
    try:
        # Built here, not through asyncssh's construct(), which builds it in the loop's
        # executor: the files it reads are a few small ones (the client key is cached:
        # _client_keys), and the round trip to a thread and back cost more CPU than the
        # reads, on every host (#15).
        options = asyncssh.SSHClientConnectionOptions(
            loop=asyncio.get_running_loop(),
            config=config,  # the default, None, would skip ~/.ssh/config
            host=host.target,
            port=host.port or (),
            username=host.user or (),
            client_keys=_client_keys(host.key) if host.key else (),
            connect_timeout=ssh.connect_timeout,
            # (): asyncssh's defaults, refined by the user's ~/.ssh/config
            encryption_algs=() if _user_sets(config, "ciphers") else encryption_algs(),
            kex_algs=() if _user_sets(config, "kexalgorithms") else kex_algs(),
        )
    except (OSError, asyncssh.KeyImportError) as exc:
        what = f"private key {host.key}" if host.key else "~/.ssh/config or default keys"
        raise HostError(Outcome.AUTH, f"cannot read {what}: {_key_error(exc)}") from exc
    except ValueError as exc:  # a bad ~/.ssh/config line, an unknown local user...
        raise HostError(Outcome.ERROR, f"ssh options: {exc}") from exc
    return options


async def _options_without_keys(
    host: HostConfig, files: ClientFiles
) -> asyncssh.SSHClientConnectionOptions | None:
    """``_options`` loading no key at all (for when one failed to load); None if they fail too."""
    try:
        options: asyncssh.SSHClientConnectionOptions
        options = await asyncssh.SSHClientConnectionOptions.construct(
            config=files.config_paths(),
            host=host.target,
            port=host.port or (),
            username=host.user or (),
            client_keys=None,
        )
    except (OSError, ValueError, asyncssh.Error):
        return None
    return options


# What `config show` reports of the OpenSSH config, by the name asyncssh keeps it under
_RESOLVED_OPTIONS = ("Hostname", "Port", "User", "IdentityFile", "ProxyJump")


async def resolve_host(
    host: HostConfig, ssh: SSHConfig, files: ClientFiles = USER_FILES, *, keys: bool = True
) -> ResolvedHost:
    """Where ``connect`` would go for ``host``: config.xml's fields completed by ``files``.

    With ``keys``, the keys are loaded exactly as ``connect`` loads them, and a
    failure is the result's ``error``; the other fields are then resolved
    without keys.  Without ``keys`` (only the address, port and user are
    wanted), none is read.  Nothing is dialled.
    """
    error = None
    options = None
    if keys:
        try:
            options = await _options(host, ssh, files)
        except HostError as err:
            error = str(err)
    if options is None:
        options = await _options_without_keys(host, files)
    if options is None:
        return ResolvedHost(error=error)
    found = {name: options.config.get(name) for name in _RESOLVED_OPTIONS}
    identity = found["IdentityFile"]
    proxy_jump = found["ProxyJump"]
    return ResolvedHost(
        address=options.host,
        port=options.port,
        user=options.username,
        identity=tuple(str(path) for path in identity) if isinstance(identity, list) else (),
        proxy_jump=None if proxy_jump is None else str(proxy_jump),
        from_ssh_config=frozenset(name for name, value in found.items() if value is not None),
        error=error,
    )


async def resolve_ports(
    hosts: Sequence[HostConfig], ssh: SSHConfig, files: ClientFiles = USER_FILES
) -> dict[str, int | None]:
    """The port ``connect`` uses for each host, by name; None when the OpenSSH config
    cannot be applied to it (a bad ``Port`` line...).  Reads no key."""
    ports: dict[str, int | None] = {h.name: h.port for h in hosts}
    ask = [h for h in hosts if h.port is None]
    if not ask or not files.config_paths():  # no OpenSSH config: nothing to apply
        return {name: port or DEFAULT_PORT for name, port in ports.items()}
    found = await asyncio.gather(*(resolve_host(h, ssh, files, keys=False) for h in ask))
    ports.update((h.name, resolved.port) for h, resolved in zip(ask, found, strict=True))
    return ports


def _client_keys(path: Path) -> list[asyncssh.SSHKeyPair]:
    """The key pair(s) in ``path``, parsed once per version of the file.

    One key usually serves a whole fleet: parsing it for every host cost
    about 0.25 ms of CPU per host (bench/RESULTS.md).  A list, as asyncssh
    reads a tuple as (key, certificate).
    """
    stat = path.stat()
    return list(_load_keypairs(str(path), stat.st_mtime_ns, stat.st_size))


# AES-GCM before asyncssh's default first choice, chacha20-poly1305: one AEAD call per
# packet instead of three cipher set-ups (its Poly1305 key is derived per packet), which
# is most of the SSH layer's CPU once a session is open (watch: bench/RESULTS.md).  Every
# OpenSSH since 6.2 offers it; a Ciphers line in the user's ~/.ssh/config wins.
GCM_FIRST = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
# curve25519 before asyncssh's default first choice, the post-quantum hybrid
# mlkem768x25519-sha256 (offered by OpenSSH 9.9 and later): 0.6 ms less client CPU per
# connection (3.7 ms against 4.3 ms, paired runs on bench/simfleet.py, #15).  Every OpenSSH
# since 6.5 offers it; a KexAlgorithms line in the user's ~/.ssh/config wins (name the
# mlkem or sntrup hybrids there to keep a post-quantum key exchange).
CURVE25519_FIRST = ("curve25519-sha256", "curve25519-sha256@libssh.org")


@functools.cache
def encryption_algs() -> list[str]:
    """asyncssh's default ciphers with GCM_FIRST first."""
    return _first(GCM_FIRST, get_default_encryption_algs())


@functools.cache
def kex_algs() -> list[str]:
    """asyncssh's default key exchanges with CURVE25519_FIRST first."""
    return _first(CURVE25519_FIRST, get_default_kex_algs())


def _first(preferred: Sequence[str], defaults: Sequence[bytes]) -> list[str]:
    """``preferred``, then the rest of ``defaults``: what asyncssh makes of "^a,b", as a
    list computed once; asyncssh matched the patterns again for every host, ~0.3 ms (#15)."""
    rest = [name for name in (alg.decode("ascii") for alg in defaults) if name not in preferred]
    return [*preferred, *rest]


_CHOICE_LINE = re.compile(rb"^[ \t]*(Ciphers|KexAlgorithms)\b", re.IGNORECASE | re.MULTILINE)


def _user_sets(paths: Sequence[Path], option: str) -> bool:
    """Whether any of the OpenSSH config files sets ``option`` (lower case), anywhere:
    the user chose, so asyncssh applies their list."""
    return any(option in _file_sets(str(p), *_stamp(p)) for p in paths)


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return 0, 0
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=16)
def _file_sets(path: str, _mtime_ns: int, _size: int) -> frozenset[str]:
    """The algorithm options (``ciphers``, ``kexalgorithms``) that the file sets."""
    try:
        found = _CHOICE_LINE.findall(Path(path).read_bytes())
    except OSError:
        return frozenset()
    return frozenset(name.decode("ascii").lower() for name in found)


@functools.lru_cache(maxsize=16)
def _load_keypairs(path: str, _mtime_ns: int, _size: int) -> tuple[asyncssh.SSHKeyPair, ...]:
    # mtime and size are part of the cache key only: a changed file is read again
    return tuple(asyncssh.load_keypairs([path]))


def key_file_problem(path: Path) -> str | None:
    """Why the private key file ``path`` cannot be used for logging in, or None if it can."""
    try:
        _client_keys(path)
    except (OSError, asyncssh.KeyImportError) as exc:
        return _key_error(exc)
    return None


def _key_error(exc: OSError | asyncssh.KeyImportError) -> str:
    """A private key's load error, in words that say what to do about it."""
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a private key file"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if "assphrase" in str(exc):  # asyncssh: "Passphrase must be specified to import encrypted..."
        return (
            "the key is protected by a passphrase, which netmetrix cannot ask for: "
            "load it into ssh-agent (ssh-add) and leave out key=, so that the agent is used"
        )
    return f"not a private key netmetrix can read: {exc}"


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
            _send_input(proc, stdin)
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
            # deadline in oneshot.probe_command); this is only the backup.
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


def _send_input(proc: asyncssh.SSHClientProcess[bytes], data: bytes | None) -> None:
    """Write ``data`` and EOF to the command's stdin.  A command that ended before
    reading it (an upload the host refused) closed the channel: what it said and its
    exit status tell why, so that is what the caller gets, not a broken pipe."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        if data is not None:
            proc.stdin.write(data)
        proc.stdin.write_eof()


async def _read_capped(stream: asyncssh.SSHReader[bytes], cap: int) -> bytes:
    data = bytearray()
    while chunk := await stream.read(65536):
        if len(data) + len(chunk) > cap:
            raise HostError(Outcome.BAD_MESSAGE, f"bad message: output over {cap} bytes")
        data += chunk
    return bytes(data)


class StreamEnded(Exception):
    """The streaming command's output ended: it exited, or the connection went."""


class Stream:
    """A long-running command spoken to in lines: one request in, one line out.

    ``watch`` keeps one per host, around the streaming probe.  stderr is
    drained all along (a full channel window would stall the command) and
    its last lines kept for the reason the command ended.
    """

    def __init__(self, proc: asyncssh.SSHClientProcess[bytes]) -> None:
        self._proc = proc
        self._buffer = bytearray()
        self._stderr: collections.deque[bytes] = collections.deque(maxlen=STREAM_STDERR_LINES)
        self._drain = asyncio.create_task(self._drain_stderr())

    def send(self, request: bytes) -> None:
        """Write ``request`` to the command's stdin; StreamEnded if the channel is gone."""
        try:
            self._proc.stdin.write(request)
        except (BrokenPipeError, ConnectionError, asyncssh.Error) as exc:
            raise StreamEnded(str(exc) or "connection lost") from exc

    async def read_line(self, seconds: float) -> str:
        """The next line of output within ``seconds``: HostError (TIMEOUT) or StreamEnded."""
        try:
            async with asyncio.timeout(seconds):
                return await self._line()
        except TimeoutError as exc:
            raise HostError(Outcome.TIMEOUT, f"no answer within {seconds:g}s") from exc

    async def _line(self) -> str:
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > STDOUT_CAP:
                raise HostError(Outcome.BAD_MESSAGE, f"bad message: a line over {STDOUT_CAP} bytes")
            chunk = await self._proc.stdout.read(65536)
            if not chunk:
                raise StreamEnded("output ended")
            self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line.decode("utf-8", "replace")

    async def _drain_stderr(self) -> None:
        with contextlib.suppress(asyncssh.Error, OSError):
            while line := await self._proc.stderr.readline():
                self._stderr.append(line[:STDERR_LINE_CAP])

    async def ended(self) -> Completed:
        """Wait until the command has ended: how (status, signal, its last stderr lines)."""
        finished = await self._proc.wait(check=False)
        # The rest of stderr, if it comes soon.  asyncio.wait, not awaiting the task: after
        # close() cancelled it, awaiting it would raise CancelledError in the caller.
        await asyncio.wait({self._drain}, timeout=STREAM_STDERR_WAIT)
        by_signal = finished.exit_signal[0] if finished.exit_signal else None
        stderr = b"".join(self._stderr).decode("utf-8", "replace")
        return Completed(finished.exit_status, "", stderr, exit_signal=by_signal)

    def close(self) -> None:
        """EOF to the command (the streaming probe ends at once on it), then close the channel."""
        with contextlib.suppress(Exception):
            self._proc.stdin.write_eof()
        self._proc.close()
        self._drain.cancel()


STREAM_STDERR_LINES = 20
STREAM_STDERR_WAIT = 1.0  # seconds to wait for the last stderr lines after the exit status
STDERR_LINE_CAP = 1000


async def open_stream(conn: asyncssh.SSHClientConnection, command: str) -> Stream:
    """Start ``command`` on ``conn`` for a ``Stream`` of requests and answers."""
    proc = await conn.create_process(command, encoding=None)
    return Stream(proc)


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


# ---------------------------------------------------------------- trust (#18)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScannedKey:
    """The host key a host offers, and what known_hosts says of it."""

    key_host: str  # the name known_hosts lists it under (HostKeyAlias, else HostName)
    port: int
    key: asyncssh.SSHKey
    state: Literal["known", "new", "changed", "revoked"]

    @property
    def where(self) -> str:
        return _pattern(self.key_host, self.port)


async def _scan_options(
    host: HostConfig, ssh: SSHConfig, files: ClientFiles
) -> asyncssh.SSHClientConnectionOptions:
    """``host``'s options for a key exchange without login; HostError if they are bad."""
    try:
        options: asyncssh.SSHClientConnectionOptions
        options = await asyncssh.SSHClientConnectionOptions.construct(
            config=files.config_paths(),
            host=host.target,
            port=host.port or (),
            username=host.user or (),
            client_keys=None,
            connect_timeout=ssh.connect_timeout,
        )
    except (OSError, ValueError, asyncssh.Error) as exc:
        raise HostError(Outcome.ERROR, f"ssh options: {exc}") from exc
    return options


async def scan_host_key(
    host: HostConfig, ssh: SSHConfig, keys: HostKeys, files: ClientFiles = USER_FILES
) -> ScannedKey:
    """Ask ``host`` for its host key (key exchange only, no login) and classify it.

    A host known_hosts lists is asked for a key of the types listed, so that a
    host with an RSA line is not taken for changed when it prefers ed25519.
    Raises HostError (refused, timeout, unreachable, ssh options).
    """
    options = await _scan_options(host, ssh, files)
    key_host, port = options.host_key_alias or options.host, options.port
    trusted, ca_keys, revoked = keys.lookup(key_host, "", None if port == DEFAULT_PORT else port)
    algs = [a.decode("ascii") for k in trusted for a in k.sig_algorithms] or _PLAIN_KEY_ALGS
    try:
        async with asyncio.timeout(ssh.connect_timeout), contextlib.AsyncExitStack() as chain:
            # jump hosts as connect opens them: their keys checked against ours too
            tunnel = None
            if isinstance(options.tunnel, str):
                tunnel = await _open_jumps(options.tunnel, files, ssh, keys, chain, depth=0)
            key = await asyncssh.get_server_host_key(
                options.host,
                options.port,
                tunnel=tunnel,
                options=options,
                server_host_key_algs=algs,
            )
    except TimeoutError as exc:
        raise HostError(Outcome.TIMEOUT, f"timeout after {ssh.connect_timeout:g}s") from exc
    except ConnectionRefusedError as exc:
        raise HostError(Outcome.REFUSED, f"connection refused ({options.host}:{port})") from exc
    except (OSError, asyncssh.Error) as exc:
        reason = f"cannot connect to {options.host}:{port}: {exc}"
        raise HostError(Outcome.UNREACHABLE, reason) from exc
    if key is None:
        raise HostError(Outcome.ERROR, "the server offered no host key (GSS key exchange)")
    blob = key.public_data
    state: Literal["known", "new", "changed", "revoked"]
    if any(k.public_data == blob for k in revoked):
        state = "revoked"
    elif any(k.public_data == blob for k in trusted) or (ca_keys and not trusted):
        state = "known"  # (a @cert-authority host: connect checks its certificate)
    else:
        state = "changed" if keys.knows(key_host, port) else "new"
    return ScannedKey(key_host=key_host, port=port, key=key, state=state)
