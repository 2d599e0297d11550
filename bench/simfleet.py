"""A simulated fleet: asyncssh servers in worker processes, one loopback address per host.

    python bench/simfleet.py --hosts 10000 --dir /tmp/sim     # set up, serve until Ctrl-C
    python bench/simfleet.py --hosts 1000 --latency 20-200 --fail 0.05 --dir /tmp/sim
    netmetrix --config /tmp/sim/config.xml execute            # (or watch --interval 10s)

For fleet sizes the sshd farm (farm.py) cannot reach on one machine: a
simulated host costs no sshd, shell or Python start, so what a benchmark
measures on the collector's side is the collector's own cost.  What the
collector sees is what it sees from a real host: an SSH server (asyncssh)
with its own address and its own host key in known_hosts, which accepts the
bench's client key, and an exec channel that speaks the probe's protocol:

- the streaming command (``... client.py --watch COLLECTOR``, ``watch``): one
  request line per tick in (``CHALLENGE IDLE DEADLINE``), one envelope line
  out, until EOF;
- the one-shot command (``execute``: the challenge is its second-to-last
  word, the collector id its last): one envelope line, exit status 0.

Addresses: host ``i`` listens on ``127.77.(i // 254).(i % 254 + 1)`` (all of
127.0.0.0/8 is loopback on Linux), every host on the same port, picked free
when the fleet starts: 10,000 hosts take 10,000 listening sockets but no
ephemeral ports, which the collector's own connections need.

Every envelope is really sealed (``probe.seal``, AES-256-GCM) with that
host's own random key, over a realistic payload: ``probe.collect()`` on the
captured /proc of tests/data/captures/vm (24 samples), with a few values
varied per answer.  The payload's JSON is made once, as a template, so a
simulated answer costs a seal and a join (about 0.1 ms).

Keys: every host has its own ed25519 SSH host key, made by the worker that
serves it (about 0.1 ms each) and written to ``known_hosts``, which the
collector checks as usual (``host_key_policy="strict"``); and its own
envelope key, in the store the fleet comes with (``netmetrix.db``, SQLite:
``Store.add_pending_keys`` then ``activate_keys``, for the store's collector
id) and in ``host-keys.json`` (0600), which the workers read.  ``config.xml``
names the hosts (``configxml.render``).

Options of a fleet:

- ``latency``: every answer waits this long after its request arrived:
  fixed (``Latency.parse("50")``: 50 ms) or uniform in a range (``"20-200"``),
  drawn per answer from the host's index and answer count (reproducible);
- ``fail``: this share of the hosts fails, each always the same way: which
  hosts and how is a function of the host name and the share alone
  (``fail_mode``), spread evenly over ``modes``:

  ========  =====================================================  ==================
  mode      the host...                                            netmetrix says
  ========  =====================================================  ==================
  auth      refuses the client key                                 auth failed
  close     closes every connection before its SSH banner          throttled by sshd
  timeout   takes the command and never answers                    timeout
  garbage   answers noise and an envelope with a byte changed      bad message
  refused   has nothing listening on its address                   refused
  ========  =====================================================  ==================

Workers are separate processes (``--workers``, 4 by default), each serving its
share of the hosts on one asyncio loop.  A worker needs one file descriptor
per host it serves and two per open connection: it raises its soft
``RLIMIT_NOFILE`` up to the hard limit, and says so when even that is too
few (use more workers, or raise the hard limit: ``ulimit -Hn``, systemd's
``LimitNOFILE``).  A worker exits when its stdin closes, so nothing outlives
the process that started it; ``stop`` ends them by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
import random
import re
import resource
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import asyncssh

from netmetrix import configxml, envelope, probe
from netmetrix.errors import Outcome

HERE = Path(__file__).resolve().parent
CAPTURE = HERE.parent / "tests" / "data" / "captures" / "vm"
SCRIPT = "client.py"
BOOTED_FOR = 11557.38  # seconds: the capture's uptime, every simulated host's at the start
READY_WAIT = 300.0  # seconds workers may take to make keys and bind (10,000 hosts, loaded)
STOP_WAIT = 5.0  # seconds a worker gets to exit after its stdin closes, before SIGKILL
NET = "127.77"  # the first two octets of every simulated host's address
PER_OCTET = 254  # x.y.z.1 to x.y.z.254 under each third octet
MAX_HOSTS = PER_OCTET * 256
PORTS = (20000, 32000)  # the fleet's port is picked here: under Linux's ephemeral range
PORT_TRIES = 5  # fleets started with another port when a worker found it taken
BUSY_EXIT = 3  # a worker's exit status when its port was taken on one of its addresses
FD_SPARE = 64  # descriptors a worker needs besides one per host and two per connection

# How a failing host fails, and the outcome netmetrix reports for it.
MODES: dict[str, Outcome] = {
    "auth": Outcome.AUTH,
    "close": Outcome.THROTTLED,
    "timeout": Outcome.TIMEOUT,
    "garbage": Outcome.BAD_MESSAGE,
    "refused": Outcome.REFUSED,
}


@dataclass(frozen=True)
class Latency:
    """How long a host waits before it answers: uniform in [low, high] seconds."""

    low: float = 0.0
    high: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Latency:
        """``"50"`` (ms, fixed) or ``"20-200"`` (ms, uniform); ValueError saying what is wrong."""
        parts = text.strip().removesuffix("ms").split("-")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"latency {text!r}: milliseconds, as 50 or 20-200") from None
        if len(values) not in (1, 2) or min(values) < 0 or values[0] > values[-1]:
            raise ValueError(f"latency {text!r}: milliseconds, as 50 or 20-200")
        return cls(low=values[0] / 1000, high=values[-1] / 1000)

    def delay(self, seed: int) -> float:
        """The wait of one answer: the same ``seed`` always waits the same."""
        if self.high <= 0:
            return 0.0
        return random.Random(seed).uniform(self.low, self.high)

    def __str__(self) -> str:
        low, high = round(self.low * 1000, 3), round(self.high * 1000, 3)
        return f"{low:g} ms" if low == high else f"{low:g}-{high:g} ms"


def fail_mode(name: str, share: float, modes: Sequence[str] = tuple(MODES)) -> str | None:
    """How host ``name`` fails in a fleet where ``share`` of the hosts fail, or None.

    The name's hash, as a number in [0, 1), fails the host when under ``share``;
    where under it picks the mode, so the modes split the failing hosts evenly.
    """
    if share <= 0 or not modes:
        return None
    digest = hashlib.sha256(name.encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u >= share:
        return None
    return modes[min(int(u / share * len(modes)), len(modes) - 1)]


def address(index: int) -> str:
    """Host ``index``'s loopback address."""
    if not 0 <= index < MAX_HOSTS:
        raise ValueError(f"simfleet: at most {MAX_HOSTS} hosts, got index {index}")
    return f"{NET}.{index // PER_OCTET}.{index % PER_OCTET + 1}"


@dataclass(frozen=True)
class SimHost:
    name: str
    address: str
    port: int
    worker: int
    fail: str | None = None  # a key of MODES: how this host fails; None: it answers

    @property
    def expected(self) -> Outcome:
        """The outcome ``netmetrix execute`` should report for this host."""
        return Outcome.OK if self.fail is None else MODES[self.fail]


@dataclass
class SimFleet:
    """A running simulated fleet; ``config`` is its config.xml."""

    root: Path
    hosts: list[SimHost]
    boot: float  # unix seconds: every host's uptime_sec is the time since then
    concurrency: int = 100
    command_timeout: float = 30.0
    latency: Latency = field(default_factory=Latency)
    fail: float = 0.0
    port: int = 0
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.root / "config.xml"

    @property
    def database(self) -> Path:
        return self.root / "netmetrix.db"

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.database}"

    @property
    def worker_pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    @property
    def failing(self) -> dict[str, str]:
        """Host name -> how it fails, for the hosts that do."""
        return {h.name: h.fail for h in self.hosts if h.fail is not None}

    def config_for(self, count: int) -> Path:
        """A config.xml naming the first ``count`` hosts (same store, same keys)."""
        path = self.root / f"config-{count}.xml"
        path.write_text(
            _config_text(
                self.root,
                self.hosts[:count],
                concurrency=self.concurrency,
                command_timeout=self.command_timeout,
            )
        )
        return path

    def alive(self) -> bool:
        return all(w.poll() is None for w in self.workers)

    def stop(self) -> None:
        """Close every worker's stdin (it exits), then SIGKILL a late one: our PIDs only."""
        for worker in self.workers:
            with contextlib.suppress(OSError):
                if worker.stdin is not None:
                    worker.stdin.close()
        deadline = time.monotonic() + STOP_WAIT
        for worker in self.workers:
            try:
                worker.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=STOP_WAIT)
            if worker.stdout is not None:
                worker.stdout.close()
        self.workers = []


# ------------------------------------------------------------ setting up


def host_name(index: int) -> str:
    return f"s{index:05d}"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new 0600 file (keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _keypair(path: Path, comment: str) -> str:
    """An ed25519 key pair at ``path`` (0600) and ``path``.pub; the public key line."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    _write_private(path, key.export_private_key().decode("ascii"))
    public = key.export_public_key().decode("ascii").strip()
    path.with_name(path.name + ".pub").write_text(public + "\n")
    return public


def _collector_id(url: str) -> str:
    """The collector id of the store at ``url`` (made with the store when it is new)."""
    from netmetrix.store import Store  # here: the workers need no SQLAlchemy

    with Store.open(url) as store:
        return store.collector_id()


def _store_keys(url: str, keys: dict[str, bytes]) -> None:
    """Put one active key per host in the store at ``url`` (about 1.5 ms a host)."""
    from netmetrix.store import Store

    with Store.open(url) as store:
        items = [(name, envelope.key_id(key), key) for name, key in keys.items()]
        store.add_pending_keys(items)
        store.activate_keys([(name, kid) for name, kid, _ in items])


def _config_text(
    root: Path, hosts: Sequence[SimHost], *, concurrency: int, command_timeout: float
) -> str:
    entries = [
        configxml.Host(
            name=h.name,
            address=h.address,
            port=h.port,
            user="sim",
            key=root / "client_key",
            directory=f"/sim/{h.name}",  # nothing on disk: the worker answers for it
            python="python3",
        )
        for h in hosts
    ]
    # One rule, evaluated for every host on every tick, that never fires (as farm.py's).
    never = configxml.Alert(metric="cpu_percent", op=">", limit=1000, email="ops@example.com")
    return configxml.render(
        configxml.ConfigXml(
            script=SCRIPT,
            concurrency=concurrency,
            database="netmetrix.db",
            ssh=configxml.SSH(
                known_hosts="known_hosts",
                host_key_policy="strict",
                connect_timeout=60,
                command_timeout=command_timeout,
            ),
            hosts=entries,
            alerts=[never],
        )
    )


def _pick_port(avoid: set[int]) -> int:
    """A port nothing listens on at any address now (a wildcard bind succeeds)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(*PORTS)
        if port in avoid:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe_sock:
            try:
                probe_sock.bind(("0.0.0.0", port))
            except OSError:
                continue
        return port
    raise SystemExit(f"simfleet: no free port in {PORTS[0]}-{PORTS[1]}")


class _Busy(Exception):
    """A worker found the fleet's port taken on one of its addresses."""


def _read_ready(worker: subprocess.Popen[bytes], deadline: float, log: Path) -> None:
    """Wait for the worker's ``READY`` line; _Busy, or SystemExit saying why not."""
    assert worker.stdout is not None
    fd = worker.stdout.fileno()
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit(f"simfleet: worker {worker.pid} not ready after {READY_WAIT:g}s")
        if select.select([fd], [], [], min(left, 1.0))[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                if worker.wait(timeout=STOP_WAIT) == BUSY_EXIT:
                    raise _Busy
                said = log.read_text(errors="replace").strip().splitlines()[-1:] or ["nothing"]
                raise SystemExit(
                    f"simfleet: worker {worker.pid} exited before it was ready: {said[0]} "
                    f"(all it said: {log})"
                )
            data += chunk
    line = data.split(b"\n", 1)[0].decode()
    if not line.startswith("READY"):
        raise SystemExit(f"simfleet: worker {worker.pid} said {line[:200]!r}")


def _spawn(fleet: SimFleet, specs: list[dict[str, Any]]) -> None:
    """Start a worker per spec; they make their keys and bind while we go on."""
    for spec in specs:
        index = spec["index"]
        spec_path = fleet.root / f"worker-{index}.json"
        spec_path.write_text(json.dumps(spec))
        with (fleet.root / f"worker-{index}.log").open("wb") as log_file:
            fleet.workers.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--worker", str(spec_path)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log_file,
                    start_new_session=True,  # a Ctrl-C meant for the bench reaches it by us
                )
            )


def _serve(fleet: SimFleet, specs: list[dict[str, Any]], before_ready: Callable[[], None]) -> None:
    """Start the workers on a free port (another when one finds it taken); wait until
    all are ready, calling ``before_ready`` once in between."""
    tried: set[int] = set()
    for attempt in range(PORT_TRIES):
        fleet.port = _pick_port(tried)
        tried.add(fleet.port)
        _spawn(fleet, [{**spec, "port": fleet.port} for spec in specs])
        if attempt == 0:
            before_ready()
        deadline = time.monotonic() + READY_WAIT
        try:
            for index, worker in enumerate(fleet.workers):
                _read_ready(worker, deadline, fleet.root / f"worker-{index}.log")
            return
        except _Busy:
            fleet.stop()
    raise SystemExit(f"simfleet: ports {sorted(tried)} were each taken on some address")


@contextlib.contextmanager
def simfleet(
    root: Path,
    hosts: int,
    *,
    workers: int = 4,
    concurrency: int = 100,
    command_timeout: float = 30.0,
    latency: Latency | None = None,
    fail: float = 0.0,
    modes: Sequence[str] = tuple(MODES),
) -> Iterator[SimFleet]:
    """Set up ``hosts`` simulated hosts under ``root`` and serve them; stop on exit."""
    if not 1 <= hosts <= MAX_HOSTS:
        raise SystemExit(f"simfleet: 1 to {MAX_HOSTS} hosts, got {hosts}")
    unknown = set(modes) - set(MODES)
    if unknown or not modes or not 0 <= fail <= 1:
        raise SystemExit(f"simfleet: fail share 0-1 and modes of {', '.join(MODES)}")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    workers = max(1, min(workers, hosts))
    client_public = _keypair(root / "client_key", "netmetrix-simfleet-client")
    (root / "authorized_keys").write_text(client_public + "\n")
    names = [host_name(i) for i in range(hosts)]
    fails = [fail_mode(n, fail, tuple(modes)) for n in names]
    keys = {name: envelope.new_key() for name in names}
    _write_private(root / "host-keys.json", json.dumps({n: probe.b64e(k) for n, k in keys.items()}))
    url = f"sqlite:///{root / 'netmetrix.db'}"
    collector = _collector_id(url)
    boot = round(time.time() - BOOTED_FOR, 3)
    fleet = SimFleet(
        root=root,
        hosts=[],
        boot=boot,
        concurrency=concurrency,
        command_timeout=command_timeout,
        latency=latency or Latency(),
        fail=fail,
    )
    specs = [
        {
            "index": w,
            "hosts": [[names[i], i, fails[i]] for i in range(w, hosts, workers)],
            "collector": collector,
            "boot": boot,
            "latency": [fleet.latency.low, fleet.latency.high],
            "connections": concurrency,
        }
        for w in range(workers)
    ]
    try:
        _serve(fleet, specs, lambda: _store_keys(url, keys))  # the store fills meanwhile
        fleet.hosts = [
            SimHost(name=n, address=address(i), port=fleet.port, worker=i % workers, fail=fails[i])
            for i, n in enumerate(names)
        ]
        parts = [root / f"known_hosts-{w}" for w in range(workers)]
        (root / "known_hosts").write_text("".join(p.read_text() for p in parts))
        fleet.config.write_text(fleet.config_for(hosts).read_text())
        yield fleet
    finally:
        fleet.stop()


# ------------------------------------------------------------ the answers (worker side)

# Values varied per answer, so that no two ticks store the same numbers.  uptime_sec
# is exact instead: the time since the fleet's boot when the request arrived, as a
# probe reads it, which is how watch_bench.py tells which tick an answer belongs to.
UPTIME = "uptime_sec"
VARIED = (
    "load1",
    "cpu_percent",
    "mem_available_bytes",
    "mem_percent",
    "procs_running",
    "net_rx_bytes_per_sec",
    "net_tx_bytes_per_sec",
    "disk_read_bytes_per_sec",
    "disk_write_bytes_per_sec",
    "probe_duration_sec",
)
_MARK = re.compile(r'"@@(\w+)@@"')


def captured_samples() -> list[list[Any]]:
    """``probe.collect()`` on the captured /proc of a VM, statvfs answered from the capture."""
    meta = json.loads((CAPTURE / "capture.json").read_text())
    root = str(CAPTURE)

    def statvfs(path: str) -> os.statvfs_result:
        relative = os.path.relpath(path, root)
        fields = meta["statvfs"].get("/" if relative == "." else "/" + relative)
        if not isinstance(fields, list):
            raise FileNotFoundError(2, "No such file or directory", path)
        return os.statvfs_result(fields)

    with mock.patch.object(os, "statvfs", statvfs):  # this worker, only while collecting
        samples, errors = probe.collect(root, None, meta["time"])  # type: ignore[no-untyped-call]
    if errors:
        raise SystemExit(f"simfleet: the capture did not collect cleanly: {errors}")
    return samples  # type: ignore[no-any-return]


class Payloads:
    """Payload bytes built by ``probe.build_payload`` once, with markers where values vary."""

    def __init__(self, samples: list[list[Any]]) -> None:
        self.base: list[float] = []
        marked = []
        for metric, labels, value in samples:
            if metric == UPTIME:
                marked.append([metric, labels, "@@uptime@@"])
            elif metric in VARIED:
                marked.append([metric, labels, f"@@{len(self.base)}@@"])
                self.base.append(float(value))
            else:
                marked.append([metric, labels, value])
        time_mark = "@@time@@"
        payload = probe.build_payload(marked, [], time.time(), time_mark)  # type: ignore[no-untyped-call]
        text = payload.decode("utf-8")
        self.parts = _MARK.split(text)  # text, index, text, index, ..., text
        self.count = len(samples)

    def make(self, seed: int, now: float, uptime: float) -> bytes:
        """The payload of one answer: the varied values moved by ``seed``."""
        values = {str(i): _vary(base, seed + i) for i, base in enumerate(self.base)}
        values["time"], values["uptime"] = now, round(uptime, 3)
        out = []
        for i, part in enumerate(self.parts):
            out.append(repr(values[part]) if i % 2 else part)
        return "".join(out).encode("utf-8")


def _vary(base: float, seed: int) -> float:
    """``base`` moved by up to +-5% (or a 0-100 value for a zero base, as rates are)."""
    wobble = ((seed * 2654435761) % 1000) / 1000.0  # cheap, deterministic spread
    if base == 0.0:
        return round(wobble * 100.0, 3)
    return round(base * (0.95 + wobble / 10.0), 3)


@dataclass
class _Host:
    name: str
    key: bytes
    index: int
    fail: str | None
    answers: int = 0


class _Closer(asyncio.Protocol):
    """A host that closes every connection before it says anything (mode ``close``)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class Worker:
    """One worker process: its hosts' listeners and the answers they give."""

    def __init__(self, spec: dict[str, Any], keys: dict[str, bytes]) -> None:
        self.collector: str = spec["collector"]
        self.hosts = {
            address(index): _Host(name=name, key=keys[name], index=index, fail=fail)
            for name, index, fail in spec["hosts"]
        }
        self.port: int = spec["port"]
        self.boot: float = spec["boot"]
        self.latency = Latency(*spec["latency"])
        self.payloads = Payloads(captured_samples())

    def answer(self, host: _Host, challenge: str) -> bytes:
        now = time.time()
        host.answers += 1
        payload = self.payloads.make(host.index * 7919 + host.answers, now, now - self.boot)
        line = probe.seal(host.key, host.name, challenge, payload, now)
        if host.fail == "garbage":
            return GARBAGE + _spoiled(line).encode("ascii") + b"\n"
        return (line + "\n").encode("ascii")

    async def handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        sockname = process.channel.get_connection().get_extra_info("sockname")
        host = self.hosts[sockname[0]]
        words = shlex.split(process.command or "")
        try:
            if host.fail == "timeout":
                await process.wait_closed()  # the collector gives up, and closes the channel
            elif probe.WATCH_FLAG in words:
                await self._stream(process, host, words)
            else:
                await self._once(process, host, words)
        except (asyncssh.Error, BrokenPipeError, ConnectionError):
            return  # the collector went: nothing to say to it
        except ValueError as exc:  # what the probe would refuse
            process.stderr.write(f"netmetrix probe: bad request: {exc}\n".encode())
            process.exit(probe.EXIT_USAGE)

    async def _wait(self, host: _Host) -> None:
        delay = self.latency.delay(host.index * 104729 + host.answers)
        if delay > 0:
            await asyncio.sleep(delay)

    async def _stream(
        self, process: asyncssh.SSHServerProcess[bytes], host: _Host, words: list[str]
    ) -> None:
        if words[-1] != self.collector:
            raise ValueError(f"collector {words[-1]!r} has no key here")
        while line := await process.stdin.readline():
            request = probe.parse_request(line.rstrip(b"\n"))
            answer = self.answer(host, request.challenge)
            await self._wait(host)
            process.stdout.write(answer)
        process.exit(0)

    async def _once(
        self, process: asyncssh.SSHServerProcess[bytes], host: _Host, words: list[str]
    ) -> None:
        if len(words) < 3 or words[-1] != self.collector:
            raise ValueError("expected ... CHALLENGE COLLECTOR")
        challenge = words[-2]
        if len(challenge) != probe.CHALLENGE_HEX:
            raise ValueError("bad challenge")
        answer = self.answer(host, challenge)
        await self._wait(host)
        process.stdout.write(answer)
        process.exit(0)

    def _options(
        self, key: asyncssh.SSHKey, authorized: asyncssh.SSHAuthorizedKeys
    ) -> asyncssh.SSHServerConnectionOptions:
        return asyncssh.SSHServerConnectionOptions(
            server_host_keys=[key],
            authorized_client_keys=authorized,
            process_factory=self.handle,
            encoding=None,
            allow_scp=False,
            keepalive_interval=0,
        )

    async def serve(self, root: Path, index: int) -> None:
        """Make every host's key, listen on every host's address, say READY, serve."""
        loop = asyncio.get_running_loop()
        client = asyncssh.import_authorized_keys((root / "authorized_keys").read_text())
        stranger = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        decoy = asyncssh.import_authorized_keys(stranger)  # what an `auth` host accepts
        listeners: list[asyncssh.SSHAcceptor | asyncio.AbstractServer] = []
        known = []
        for where, host in self.hosts.items():
            key = asyncssh.generate_private_key("ssh-ed25519", comment=f"simfleet-{host.name}")
            known.append(f"[{where}]:{self.port} {key.export_public_key().decode().strip()}\n")
            try:
                if host.fail == "close":
                    listeners.append(await loop.create_server(_Closer, where, self.port))
                elif host.fail != "refused":
                    options = self._options(key, decoy if host.fail == "auth" else client)
                    listeners.append(
                        await asyncssh.listen(where, self.port, options=options, backlog=128)
                    )
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise _Busy from exc
                raise
        (root / f"known_hosts-{index}").write_text("".join(known))
        sys.stdout.write(f"READY {len(listeners)}\n")
        sys.stdout.flush()
        await _stdin_closed()
        for listener in listeners:
            listener.close()


GARBAGE = b"\x1b[31mSegmentation fault (core dumped)\x1b[0m \xff\xfe\n"


def _spoiled(line: str) -> str:
    """``line`` with one character in its middle changed: it no longer verifies."""
    middle = len(line) // 2
    return line[:middle] + ("A" if line[middle] != "A" else "B") + line[middle + 1 :]


async def _stdin_closed() -> None:
    """Return when stdin reaches EOF (the parent closed it, or died)."""
    loop = asyncio.get_running_loop()
    closed = loop.create_future()

    def readable() -> None:
        if not os.read(0, 4096) and not closed.done():
            closed.set_result(None)

    loop.add_reader(0, readable)
    try:
        await closed
    finally:
        loop.remove_reader(0)


def _raise_fd_limit(needed: int) -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit when under ``needed``, or exit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard == resource.RLIM_INFINITY:
        raised = max(needed, 65536)  # an infinite soft limit is refused: plenty, then
    elif hard < needed:
        raise SystemExit(
            f"simfleet: a worker needs {needed} open files, the hard limit is {hard}: "
            "use more --workers, or raise the limit (ulimit -Hn, systemd LimitNOFILE)"
        )
    else:
        raised = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))


def worker_main(spec_path: Path) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us (stdin, then PID)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    spec = json.loads(spec_path.read_text())
    _raise_fd_limit(len(spec["hosts"]) + 2 * spec["connections"] + FD_SPARE)
    root = spec_path.parent
    raw = json.loads((root / "host-keys.json").read_text())
    keys = {name: probe.b64d(raw[name]) for name, _, _ in spec["hosts"]}
    try:
        asyncio.run(Worker(spec, keys).serve(root, spec["index"]))
    except _Busy:
        print(
            f"simfleet: port {spec['port']} is taken on one of this worker's addresses",
            file=sys.stderr,
        )
        return BUSY_EXIT
    return 0


# ------------------------------------------------------------ standalone


def _share(text: str) -> float:
    value = float(text.removesuffix("%")) / (100 if text.endswith("%") else 1)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a share 0-1 (0.05) or a percentage (5%)")
    return value


def _latency(text: str) -> Latency:
    try:
        return Latency.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _modes(text: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    if not modes or set(modes) - set(MODES):
        raise argparse.ArgumentTypeError(f"{text!r}: some of {','.join(MODES)}")
    return modes


def add_fleet_options(parser: argparse.ArgumentParser, workers_flag: str = "--workers") -> None:
    """The options that shape a simulated fleet (here and in scale_bench.py)."""
    parser.add_argument(workers_flag, type=int, default=4, help="simulator processes (default 4)")
    parser.add_argument(
        "--latency",
        type=_latency,
        default=Latency(),
        metavar="MS",
        help="each answer's delay in ms: fixed (50) or uniform in a range (20-200); default 0",
    )
    parser.add_argument(
        "--fail",
        type=_share,
        default=0.0,
        metavar="SHARE",
        help="share of hosts that fail (0.05 or 5%%), always the same hosts, each its own way",
    )
    parser.add_argument(
        "--fail-modes",
        type=_modes,
        default=tuple(MODES),
        metavar="MODES",
        help="how failing hosts fail, evenly spread: some of " + ",".join(MODES),
    )
    parser.add_argument(
        "--command-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="<ssh command_timeout> of the config (what a `timeout` host costs); default 30",
    )


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=100, help="<concurrency> of the config")
    parser.add_argument("--dir", type=Path, help="where the fleet's files go (default: a temp dir)")
    add_fleet_options(parser)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker_main(args.worker)
    root = args.dir or Path(f"/tmp/simfleet-{os.getpid()}")
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)  # kill PID: stop the workers, as Ctrl-C does
    with simfleet(
        root,
        args.hosts,
        workers=args.workers,
        concurrency=args.concurrency,
        command_timeout=args.command_timeout,
        latency=args.latency,
        fail=args.fail,
        modes=args.fail_modes,
    ) as fleet:
        took = time.monotonic() - started
        failing = list(fleet.failing.values())
        counts = ", ".join(f"{failing.count(m)} {m}" for m in MODES if m in failing) or "none"
        print(
            f"simfleet: {len(fleet.hosts)} hosts on {len(fleet.workers)} "
            f"worker{'s' * (len(fleet.workers) != 1)}, "
            f"{NET}.x.y port {fleet.port}, ready in {took:.1f}s; "
            f"latency {fleet.latency}; failing: {counts}",
            flush=True,
        )
        print(f"  netmetrix --config {fleet.config} execute", flush=True)
        print(f"  netmetrix --config {fleet.config} watch --interval 10s", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while fleet.alive():
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
