"""The SSH edge on its own: throttling and reset retries, deadlines, the fleet summary."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import struct
import time
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh
import ports
import pytest
import sshd

from netmetrix import ssh
from netmetrix.config import HostConfig, SSHConfig
from netmetrix.errors import HostError, Outcome
from netmetrix.fleet import HostResult, run_fleet, summarize


async def _dropping_server(accepted: list[int]) -> asyncio.Server:
    """Accepts TCP and hangs up at once, as sshd does past its MaxStartups limit."""

    async def drop(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    return await asyncio.start_server(drop, "127.0.0.1", 0)


def _host(port: int, tmp_path: Path) -> tuple[HostConfig, SSHConfig]:
    host = HostConfig(name="h", address="127.0.0.1", port=port, user="root")
    return host, SSHConfig(known_hosts=tmp_path / "known_hosts", connect_timeout=3)


def test_throttled_connections_are_retried_five_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ssh, "BACKOFF", 0.01)  # the count matters here, not the wait
    accepted: list[int] = []

    async def scenario() -> HostError:
        server = await _dropping_server(accepted)
        port = server.sockets[0].getsockname()[1]
        host, cfg = _host(port, tmp_path)
        try:
            async with ssh.connect(host, cfg, ssh.HostKeys(cfg)):
                pass
        except HostError as exc:
            return exc
        finally:
            server.close()
            await server.wait_closed()
        raise AssertionError("connect to a dropping server succeeded")

    error = asyncio.run(scenario())
    assert error.outcome is Outcome.THROTTLED
    assert str(error).startswith("connection dropped before login 5 times")
    assert len(accepted) == ssh.THROTTLED_TRIES == 5


def test_silent_server_hits_the_connect_deadline(tmp_path: Path) -> None:
    """A server that accepts TCP and never speaks SSH: the connect phase times out."""

    async def scenario() -> HostError:
        hold = asyncio.Event()

        async def silent(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await hold.wait()
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        host = HostConfig(name="h", address="127.0.0.1", port=server.sockets[0].getsockname()[1])
        cfg = SSHConfig(known_hosts=tmp_path / "kh", connect_timeout=0.3)
        try:
            async with ssh.connect(host, cfg, ssh.HostKeys(cfg)):
                pass
        except HostError as exc:
            return exc
        finally:
            hold.set()
            server.close()
            await server.wait_closed()
        raise AssertionError("connected to a silent server")

    error = asyncio.run(scenario())
    assert error.outcome is Outcome.TIMEOUT
    assert str(error) == "timeout after 0.3s (connect)"


@pytest.mark.sshd
def test_default_maxstartups_is_absorbed_by_retries(tmp_path: Path) -> None:
    """OpenSSH's default MaxStartups 10:30:100 drops some of 40 simultaneous connects."""
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(sshd.keygen(tmp_path / "client_key") + "\n")
    server = sshd.start_sshd(tmp_path / "sshd", authorized, max_startups="10:30:100")
    try:
        (tmp_path / "known_hosts").write_text(server.known_hosts_line + "\n")
        cfg = SSHConfig(
            known_hosts=tmp_path / "known_hosts", connect_timeout=60
        )  # generous: a loaded CI box is slow
        keys = ssh.HostKeys(cfg)
        hosts = [
            HostConfig(
                name=f"h{i}",
                address="127.0.0.1",
                port=server.port,
                user="root",
                key=tmp_path / "client_key",
            )
            for i in range(40)
        ]

        async def job(host: HostConfig) -> int | None:
            async with ssh.connect(host, cfg, keys) as conn:
                return (await ssh.run(conn, "true", seconds=60)).exit_status  # a loaded box

        results = asyncio.run(run_fleet(hosts, job, concurrency=40))
    finally:
        server.stop()
    outcomes = {r.outcome for r in results}
    assert outcomes <= {Outcome.OK, Outcome.THROTTLED}, [(r.error, r.seconds) for r in results]
    ok = sum(r.ok for r in results)
    assert ok >= 38, [r.error for r in results if not r.ok]
    assert all(r.value == 0 for r in results if r.ok)


def test_summary_counts_outcomes_and_names_failures() -> None:
    def result(name: str, outcome: Outcome, seconds: float) -> HostResult[None]:
        return HostResult(host=HostConfig(name=name), outcome=outcome, error=None, seconds=seconds)

    summary = summarize(
        [
            result("a", Outcome.OK, 0.1),
            result("b", Outcome.TIMEOUT, 2.0),
            result("c", Outcome.OK, 0.3),
            result("d", Outcome.REFUSED, 0.01),
        ],
        wall=2.5,
    )
    assert not summary.all_ok
    assert summary.line("execute") == (
        "execute: 2 ok, 1 timeout, 1 refused in 2.50s (per host p50 0.20s, p95 1.74s); failed: b, d"
    )


def test_farm_accepts_the_unprivileged_test_user(farm, test_user, user_dir) -> None:
    """The fixture other tests rely on: nmx-test logs in, runs the system python, owns user_dir."""
    import asyncssh

    async def go() -> str:
        async with asyncssh.connect(
            "127.0.0.1",
            port=farm.servers[0].port,
            username=test_user.name,
            client_keys=[str(farm.client_key)],
            known_hosts=None,
        ) as conn:
            done = await conn.run(
                f"id -un; {test_user.python} -c 'print(1)'; touch {user_dir}/x && echo ok"
            )
            return str(done.stdout)

    assert asyncio.run(go()).split() == ["nmx-test", "1", "ok"]


# ---------------------------------------------------------------- drops vs resets (#11)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a firewall or a crashing service would."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _resets_at_once(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _reset(writer)


async def _resets_after_banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.2p1 fake\r\n")
    await writer.drain()
    await reader.readline()  # the client's banner: the exchange is done
    _reset(writer)


async def _closes_after_banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.2p1 fake\r\n")
    await writer.drain()
    await reader.readline()
    writer.close()


def _connect_to(handler: Handler, tmp_path: Path) -> tuple[HostError, int]:
    """Connect to a TCP server running ``handler``: the error, and how many connections it saw."""
    accepted: list[int] = []

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        await handler(reader, writer)

    async def scenario() -> HostError:
        server = await asyncio.start_server(counted, "127.0.0.1", 0)
        host, cfg = _host(server.sockets[0].getsockname()[1], tmp_path)
        try:
            async with ssh.connect(host, cfg, ssh.HostKeys(cfg)):
                pass
        except HostError as exc:
            return exc
        finally:
            server.close()
            await server.wait_closed()
        raise AssertionError("connect succeeded")

    return asyncio.run(scenario()), len(accepted)


@pytest.mark.parametrize("handler", [_resets_at_once, _resets_after_banner, _closes_after_banner])
def test_a_host_that_resets_is_not_called_throttled(tmp_path: Path, handler: Handler) -> None:
    """Only a close before sshd's banner is throttling; a reset or a later close is not."""
    error, accepted = _connect_to(handler, tmp_path)
    assert error.outcome is Outcome.RESET
    assert str(error).startswith("connection reset before login 3 times: ")
    if handler is _resets_at_once:
        assert str(error).endswith(": [Errno 104] Connection reset by peer")
    assert accepted == ssh.RESET_TRIES == 3


@pytest.mark.sshd
def test_sshd_past_maxstartups_is_throttled_every_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sshd's own drop ("Exceeded MaxStartups") is told apart from a reset, every time.

    With MaxStartups 1:100:1 and one unauthenticated connection held open,
    sshd drops every new connection.  asyncssh alone saw about 40% of such
    drops as resets (its banner was unread when sshd closed).
    """
    monkeypatch.setattr(ssh, "BACKOFF", 0.01)  # what is classified matters here, not the wait
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(sshd.keygen(tmp_path / "client_key") + "\n")
    server = sshd.start_sshd(tmp_path / "sshd", authorized, max_startups="1:100:1")
    try:
        hold = _hold_unauthenticated(server.port)
        (tmp_path / "known_hosts").write_text(server.known_hosts_line + "\n")
        cfg = SSHConfig(known_hosts=tmp_path / "known_hosts", connect_timeout=60)
        keys = ssh.HostKeys(cfg)
        host = HostConfig(
            name="h",
            address="127.0.0.1",
            port=server.port,
            user="root",
            key=tmp_path / "client_key",
        )

        async def attempt() -> HostError:
            try:
                async with ssh.connect(host, cfg, keys):
                    pass
            except HostError as exc:
                return exc
            raise AssertionError("sshd let a connection in past MaxStartups")

        errors = [asyncio.run(attempt()) for _ in range(4)]
        hold.close()
    finally:
        server.stop()
    assert {e.outcome for e in errors} == {Outcome.THROTTLED}
    assert {str(e) for e in errors} == {
        "connection dropped before login 5 times (sshd MaxStartups throttling?): "
        'sshd said "Exceeded MaxStartups"'
    }


def _hold_unauthenticated(port: int) -> socket.socket:
    """A connection that got sshd's banner and stays unauthenticated (LoginGraceTime: 2 min)."""
    for _ in range(50):  # the listener probe's own connection may still count as a startup
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        if sock.recv(64).startswith(b"SSH-"):
            return sock
        sock.close()
        time.sleep(0.1)
    raise AssertionError("sshd kept dropping the first connection")


def test_a_command_that_ends_before_its_input_is_sent_reports_its_own_words(
    farm: sshd.Farm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The remote side closes the channel before netmetrix writes stdin (an upload the
    host refused at once, seen under load): the command's stderr and exit status come
    back, not ``BrokenPipeError: Channel not open for sending``.  The order is forced by
    waiting for the channel to close before ``run`` writes; the sshd is real."""
    (tmp_path / "known_hosts").write_text(farm.known_hosts_text())
    cfg = SSHConfig(known_hosts=tmp_path / "known_hosts", connect_timeout=60)
    server = farm.servers[0]
    host = HostConfig(
        name="h", address="127.0.0.1", port=server.port, user="root", key=farm.client_key
    )

    async def scenario() -> ssh.Completed:
        async with ssh.connect(host, cfg, ssh.HostKeys(cfg)) as conn:
            opened = conn.create_process

            async def closed_first(*args: Any, **kwargs: Any) -> Any:
                proc = await opened(*args, **kwargs)
                await proc.wait_closed()  # the command has ended and its channel is closed
                return proc

            monkeypatch.setattr(conn, "create_process", closed_first)
            return await ssh.run(conn, "echo refused >&2; exit 3", seconds=60, stdin=b"probe")

    done = asyncio.run(scenario())
    assert (done.exit_status, done.stderr) == (3, "refused\n")


@pytest.mark.parametrize(
    ("user_config", "cipher"),
    [
        ("", "aes128-gcm@openssh.com"),  # cheaper per packet than chacha20-poly1305
        ("Ciphers chacha20-poly1305@openssh.com\n", "chacha20-poly1305@openssh.com"),
    ],
)
def test_aes_gcm_is_preferred_unless_the_user_chose_ciphers(
    farm: sshd.Farm, tmp_path: Path, user_config: str, cipher: str
) -> None:
    config_file = tmp_path / "ssh_config"
    config_file.write_text(user_config)
    files = ssh.ClientFiles(ssh_config=(config_file,), known_hosts=())
    (tmp_path / "known_hosts").write_text(farm.known_hosts_text())
    cfg = SSHConfig(known_hosts=tmp_path / "known_hosts", connect_timeout=60)
    server = farm.servers[0]
    host = HostConfig(
        name="c", address="127.0.0.1", port=server.port, user="root", key=farm.client_key
    )

    async def negotiated() -> tuple[str, str]:
        async with ssh.connect(host, cfg, ssh.HostKeys(cfg, files), files) as conn:
            return conn.get_extra_info("send_cipher"), conn.get_extra_info("recv_cipher")

    assert asyncio.run(negotiated()) == (cipher, cipher)


class _NoAuth(asyncssh.SSHServer):
    def begin_auth(self, _username: str) -> bool:
        return False  # anyone: only the key exchange matters here


@pytest.mark.parametrize(
    ("user_config", "kex"),
    [
        ("", "curve25519-sha256"),  # cheaper than asyncssh's first choice, the mlkem hybrid
        ("KexAlgorithms mlkem768x25519-sha256\n", "mlkem768x25519-sha256"),
    ],
)
def test_curve25519_is_preferred_unless_the_user_chose_kex_algorithms(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, user_config: str, kex: str
) -> None:
    """Against a server that offers the post-quantum hybrid first (asyncssh, as OpenSSH >= 9.9
    does), the key exchange is curve25519, unless ~/.ssh/config names KexAlgorithms (#15)."""
    config_file = tmp_path / "ssh_config"
    config_file.write_text(user_config)
    files = ssh.ClientFiles(ssh_config=(config_file,), known_hosts=())
    host_key = asyncssh.generate_private_key("ssh-ed25519")

    async def negotiate() -> None:
        server = await asyncssh.listen(
            "127.0.0.1", 0, server_host_keys=[host_key], server_factory=_NoAuth
        )
        try:
            port = server.get_port()
            public = host_key.export_public_key().decode().strip()
            (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{port} {public}\n")
            cfg = SSHConfig(known_hosts=tmp_path / "known_hosts", connect_timeout=60)
            host = HostConfig(name="k", address="127.0.0.1", port=port, user="nobody")
            async with ssh.connect(host, cfg, ssh.HostKeys(cfg, files), files):
                pass
        finally:
            server.close()
            await server.wait_closed()

    asyncssh.set_debug_level(2)  # asyncssh names the key exchange it chose at level 2
    try:
        with caplog.at_level(logging.DEBUG, logger="asyncssh"):
            asyncio.run(negotiate())
    finally:
        asyncssh.set_debug_level(1)
    chosen = [r.getMessage() for r in caplog.records if "Key exchange alg:" in r.getMessage()]
    assert chosen, caplog.text  # the client's line and the server's
    assert all(line.endswith(f"Key exchange alg: {kex}") for line in chosen), chosen


def test_a_refused_connection_leaves_no_reference_cycle(tmp_path: Path) -> None:
    """A refused host's error no longer holds the frame that raised it: that was a cycle
    per refused host and run, which only the cyclic GC could free (#15)."""
    host, cfg = _host(ports.free_port(), tmp_path)  # nothing listens there

    async def refused() -> Outcome | None:
        try:
            async with ssh.connect(host, cfg, ssh.HostKeys(cfg)):
                pass
        except HostError as exc:
            return exc.outcome
        return None

    gc.collect()
    gc.disable()  # the cycle must still be there to be found
    try:
        outcome = asyncio.run(refused())
        gc.set_debug(gc.DEBUG_SAVEALL)  # keep what the collector finds unreachable
        gc.collect()
        cyclic = [
            o
            for o in gc.garbage
            if isinstance(o, OSError)
            or (isinstance(o, types.FrameType) and o.f_code.co_filename == ssh.__file__)
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert outcome is Outcome.REFUSED
    assert cyclic == []
