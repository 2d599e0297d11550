"""A simulated fleet: asyncssh servers in worker processes, one 127.0.0.1 port per host.

    python bench/simfleet.py --hosts 1000 --dir /tmp/sim     # set up, serve until Ctrl-C
    netmetrix --config /tmp/sim/config.xml watch --interval 1s

For fleet sizes the sshd farm (farm.py) cannot reach on one machine: a
simulated host costs no sshd, shell or Python start, so what a benchmark
measures on the collector's side is the collector's own cost.  What the
collector sees is what it sees from a real host: an SSH server (asyncssh)
with its own port and host key in known_hosts, which accepts the bench's
client key, and an exec channel that speaks the probe's protocol:

- the streaming command (``... client.py --watch COLLECTOR``, ``watch``): one
  request line per tick in (``CHALLENGE IDLE DEADLINE``), one envelope line
  out, until EOF;
- the one-shot command (``execute``: the challenge is its second-to-last
  word, the collector id its last): one envelope line, exit status 0.

Every envelope is really sealed (``probe.seal``, AES-256-GCM) with that
host's own random key, over a realistic payload: ``probe.collect()`` on the
captured /proc of tests/data/captures/vm (24 samples), with a few values
varied per answer.  The payload's JSON is made once, as a template, so a
simulated answer costs a seal and a join (about 0.1 ms).

The keys are in the store the fleet comes with (``netmetrix.db``, SQLite:
``Store.add_pending_keys`` then ``activate_keys``, for the store's collector
id) and in ``host-keys.json`` (0600), which the workers read.  ``config.xml``
names the hosts (``configxml.render``).

Workers are separate processes (``--workers``, 4 by default), each serving its
share of the hosts on one asyncio loop.  A worker exits when its stdin
closes, so nothing outlives the process that started it; ``stop`` ends
them by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import asyncssh

from netmetrix import configxml, envelope, probe

HERE = Path(__file__).resolve().parent
CAPTURE = HERE.parent / "tests" / "data" / "captures" / "vm"
SCRIPT = "client.py"
BOOTED_FOR = 11557.38  # seconds: the capture's uptime, every simulated host's at the start
READY_WAIT = 120.0  # seconds a worker may take to bind its ports (a loaded machine)
STOP_WAIT = 5.0  # seconds a worker gets to exit after its stdin closes, before SIGKILL


@dataclass(frozen=True)
class SimHost:
    name: str
    port: int
    worker: int


@dataclass
class SimFleet:
    """A running simulated fleet; ``config`` is its config.xml."""

    root: Path
    hosts: list[SimHost]
    boot: float  # unix seconds: every host's uptime_sec is the time since then
    concurrency: int = 100
    command_timeout: float = 30.0
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


def _store_keys(url: str, keys: dict[str, bytes]) -> str:
    """Put one active key per host in the store at ``url``; return its collector id."""
    from netmetrix.store import Store  # here: the workers need no SQLAlchemy

    with Store.open(url) as store:
        collector = store.collector_id()
        items = [(name, envelope.key_id(key), key) for name, key in keys.items()]
        store.add_pending_keys(items)
        store.activate_keys([(name, kid) for name, kid, _ in items])
    return collector


def _config_text(
    root: Path, hosts: Sequence[SimHost], *, concurrency: int, command_timeout: float
) -> str:
    entries = [
        configxml.Host(
            name=h.name,
            address="127.0.0.1",
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


def _read_ready(worker: subprocess.Popen[bytes], deadline: float) -> dict[str, int]:
    """The worker's ``READY {"name": port, ...}`` line, or SystemExit saying why not."""
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
                raise SystemExit(f"simfleet: worker {worker.pid} exited before it was ready")
            data += chunk
    line = data.split(b"\n", 1)[0].decode()
    if not line.startswith("READY "):
        raise SystemExit(f"simfleet: worker {worker.pid} said {line[:200]!r}")
    ports: dict[str, int] = json.loads(line[len("READY ") :])
    return ports


@contextlib.contextmanager
def simfleet(
    root: Path,
    hosts: int,
    *,
    workers: int = 4,
    concurrency: int = 100,
    command_timeout: float = 30.0,
) -> Iterator[SimFleet]:
    """Set up ``hosts`` simulated hosts under ``root`` and serve them; stop on exit."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    workers = max(1, min(workers, hosts))
    client_public = _keypair(root / "client_key", "netmetrix-simfleet-client")
    (root / "authorized_keys").write_text(client_public + "\n")
    names = [host_name(i) for i in range(hosts)]
    keys = {name: envelope.new_key() for name in names}
    _write_private(root / "host-keys.json", json.dumps({n: probe.b64e(k) for n, k in keys.items()}))
    collector = _store_keys(f"sqlite:///{root / 'netmetrix.db'}", keys)
    host_keys = [_keypair(root / f"ssh_host_key_{i}", f"simfleet-{i}") for i in range(workers)]
    boot = round(time.time() - BOOTED_FOR, 3)
    fleet = SimFleet(
        root=root, hosts=[], boot=boot, concurrency=concurrency, command_timeout=command_timeout
    )
    try:
        for index in range(workers):
            spec = {
                "names": names[index::workers],
                "collector": collector,
                "index": index,
                "boot": boot,
            }
            spec_path = root / f"worker-{index}.json"
            spec_path.write_text(json.dumps(spec))
            with (root / f"worker-{index}.log").open("wb") as log_file:
                fleet.workers.append(
                    subprocess.Popen(
                        [sys.executable, __file__, "--worker", str(spec_path)],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=log_file,
                        start_new_session=True,  # a Ctrl-C meant for the bench reaches it by us
                    )
                )
        deadline = time.monotonic() + READY_WAIT
        ports = [_read_ready(w, deadline) for w in fleet.workers]
        fleet.hosts = [
            SimHost(name=n, port=ports[i % workers][n], worker=i % workers)
            for i, n in enumerate(names)
        ]
        (root / "known_hosts").write_text(
            "".join(f"[127.0.0.1]:{h.port} {host_keys[h.worker]}\n" for h in fleet.hosts)
        )
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
    answers: int = 0


class Worker:
    """One worker process: its hosts' listeners and the answers they give."""

    def __init__(self, spec: dict[str, Any], keys: dict[str, bytes]) -> None:
        self.collector: str = spec["collector"]
        self.hosts = {
            name: _Host(name=name, key=keys[name], index=i) for i, name in enumerate(spec["names"])
        }
        self.by_port: dict[int, _Host] = {}
        self.boot: float = spec["boot"]
        self.payloads = Payloads(captured_samples())

    def answer(self, host: _Host, challenge: str) -> bytes:
        now = time.time()
        host.answers += 1
        payload = self.payloads.make(host.index * 7919 + host.answers, now, now - self.boot)
        return (probe.seal(host.key, host.name, challenge, payload, now) + "\n").encode("ascii")

    async def handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        sockname = process.channel.get_connection().get_extra_info("sockname")
        host = self.by_port[sockname[1]]
        words = shlex.split(process.command or "")
        try:
            if probe.WATCH_FLAG in words:
                await self._stream(process, host, words)
            else:
                self._once(process, host, words)
        except (asyncssh.Error, BrokenPipeError, ConnectionError):
            return  # the collector went: nothing to say to it
        except ValueError as exc:  # what the probe would refuse
            process.stderr.write(f"netmetrix probe: bad request: {exc}\n".encode())
            process.exit(probe.EXIT_USAGE)

    async def _stream(
        self, process: asyncssh.SSHServerProcess[bytes], host: _Host, words: list[str]
    ) -> None:
        if words[-1] != self.collector:
            raise ValueError(f"collector {words[-1]!r} has no key here")
        while line := await process.stdin.readline():
            request = probe.parse_request(line.rstrip(b"\n"))
            process.stdout.write(self.answer(host, request.challenge))
        process.exit(0)

    def _once(
        self, process: asyncssh.SSHServerProcess[bytes], host: _Host, words: list[str]
    ) -> None:
        if len(words) < 3 or words[-1] != self.collector:
            raise ValueError("expected ... CHALLENGE COLLECTOR")
        challenge = words[-2]
        if len(challenge) != probe.CHALLENGE_HEX:
            raise ValueError("bad challenge")
        process.stdout.write(self.answer(host, challenge))
        process.exit(0)

    async def serve(self, root: Path, index: int) -> None:
        options = asyncssh.SSHServerConnectionOptions(
            server_host_keys=[str(root / f"ssh_host_key_{index}")],
            authorized_client_keys=str(root / "authorized_keys"),
            process_factory=self.handle,
            encoding=None,
            allow_scp=False,
            keepalive_interval=0,
        )
        listeners = []
        for host in self.hosts.values():
            listener = await asyncssh.listen("127.0.0.1", 0, options=options, backlog=64)
            listeners.append(listener)
            self.by_port[listener.get_port()] = host
        ports = {h.name: port for port, h in self.by_port.items()}
        sys.stdout.write("READY " + json.dumps(ports) + "\n")
        sys.stdout.flush()
        await _stdin_closed()
        for listener in listeners:
            listener.close()


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


def worker_main(spec_path: Path) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us (stdin, then PID)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    spec = json.loads(spec_path.read_text())
    root = spec_path.parent
    raw = json.loads((root / "host-keys.json").read_text())
    keys = {name: probe.b64d(raw[name]) for name in spec["names"]}
    asyncio.run(Worker(spec, keys).serve(root, spec["index"]))
    return 0


# ------------------------------------------------------------ standalone


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--dir", type=Path, help="where the fleet's files go (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker_main(args.worker)
    root = args.dir or Path(f"/tmp/simfleet-{os.getpid()}")
    with simfleet(root, args.hosts, workers=args.workers, concurrency=args.concurrency) as fleet:
        print(f"simfleet: {len(fleet.hosts)} hosts on {len(fleet.workers)} workers", flush=True)
        print(f"  netmetrix --config {fleet.config} watch --interval 1s", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while fleet.alive():
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
