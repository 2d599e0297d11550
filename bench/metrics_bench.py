"""How long `/metrics` takes for a big fleet (#14: 1,000 hosts x 25 series in <= 300 ms).

    python bench/metrics_bench.py --hosts 1000 --runs 3 --repeat 20

Fills a SQLite store (in a temporary directory) with ``--runs`` runs of every
host, 25 series each (13 unlabelled probe metrics, ``up``, three mounts'
``disk_*``, one interface's ``net_*``), then times ``/metrics``:

- *render*: what one scrape does in the process: read the snapshot from the
  store and write the text exposition (``read_snapshot`` + prometheus_client);
- *HTTP*: a GET of ``/metrics`` from the real server (uvicorn on a free
  loopback port, in a thread), plain and gzip-encoded as Prometheus asks.

Prints one line per measurement (median, p95 and max of ``--repeat`` after one
warm-up; the render also in CPU time, which a busy machine inflates less than
wall time) and exits 1 when the HTTP median is over ``--budget`` ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.exposition import generate_latest

from netmetrix import configxml
from netmetrix.config import Config, WebConfig, load_config
from netmetrix.model import HostRun, Sample
from netmetrix.store import Store
from netmetrix.web.app import create_app
from netmetrix.web.exposition import FleetCollector, read_snapshot
from netmetrix.web.server import Listen, make_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import ports

UNLABELLED = (
    "uptime_sec", "cpu_percent", "mem_percent", "load1", "load5", "load15", "cpu_count",
    "mem_total_bytes", "mem_available_bytes", "swap_percent", "procs_total", "procs_running",
    "probe_duration_sec",
)  # fmt: skip
MOUNTS = ("/", "/var", "/home")
SERIES_PER_HOST = len(UNLABELLED) + 1 + 3 * len(MOUNTS) + 2  # + up, disk_*, net_*
BATCH = 100  # host runs per store transaction


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="runs stored per host")
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per measurement")
    parser.add_argument("--budget", type=float, default=300.0, help="ms, for the HTTP median")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nmx-metrics-bench-") as tmp:
        config = _config(Path(tmp), args.hosts)
        with Store.open(f"sqlite:///{tmp}/netmetrix.db") as store:
            started = time.perf_counter()
            _fill(store, config, args.runs)
            print(
                f"store: {args.hosts} hosts x {SERIES_PER_HOST} series, {args.runs} runs each,"
                f" filled in {time.perf_counter() - started:.1f} s"
            )
            return _measure(config, store, args.repeat, args.budget)


def _config(root: Path, hosts: int) -> Config:
    names = [configxml.Host(name=f"h{i:04d}") for i in range(hosts)]
    path = root / "config.xml"
    path.write_text(configxml.render(configxml.ConfigXml(database="netmetrix.db", hosts=names)))
    return load_config(path)


def _samples(i: int, run: int) -> tuple[Sample, ...]:
    value = float(i * 10 + run)
    found = [Sample(metric=m, labels=(), value=value) for m in UNLABELLED]
    for mount in MOUNTS:
        for metric in ("disk_percent", "disk_used_bytes", "disk_total_bytes"):
            found.append(Sample(metric=metric, labels=(("mount", mount),), value=value))
    for metric in ("net_rx_bytes_per_sec", "net_tx_bytes_per_sec"):
        found.append(Sample(metric=metric, labels=(("interface", "eth0"),), value=value))
    return tuple(found)


def _fill(store: Store, config: Config, runs: int) -> None:
    now = time.time()
    for run in range(runs):
        ts = now - (runs - run) * 10.0
        batch: list[HostRun] = []
        for i, host in enumerate(config.hosts):
            run_samples = _samples(i, run)
            batch.append(
                HostRun(host=host.name, address=host.name, ts=ts, ok=True, samples=run_samples)
            )
            if len(batch) == BATCH:
                store.record_runs(batch)
                batch = []
        store.record_runs(batch)


def _measure(config: Config, store: Store, repeat: int, budget: float) -> int:
    def render() -> bytes:
        return generate_latest(FleetCollector(read_snapshot(config, store, None)))

    size = len(render())
    _report("render (store read + text exposition)", _times(render, repeat), size)
    cpu = _times(render, repeat, clock=time.process_time)
    _report("render, CPU time of this process", cpu, size)
    with _server(config, store) as url:
        plain = _times(lambda: _get(url, gzip=False), repeat)
        _report("HTTP GET /metrics", plain, len(_get(url, gzip=False)))
        zipped = _times(lambda: _get(url, gzip=True), repeat)
        _report("HTTP GET /metrics, Accept-Encoding: gzip", zipped, len(_get(url, gzip=True)))
    median = statistics.median(plain)
    verdict = "met" if median <= budget else "NOT MET"
    print(f"goal: HTTP median <= {budget:.0f} ms: {median:.0f} ms, {verdict}")
    return 0 if median <= budget else 1


def _times(
    func: Callable[[], object], repeat: int, clock: Callable[[], float] = time.perf_counter
) -> list[float]:
    """Milliseconds per call of ``func`` by ``clock``: wall time, or CPU time
    (process_time), which other processes on a busy machine do not inflate."""
    func()  # warm-up: imports, SQLite's page cache
    found = []
    for _ in range(repeat):
        started = clock()
        func()
        found.append((clock() - started) * 1000)
    return found


def _report(what: str, times: list[float], size: int) -> None:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(
        f"{what}: median {statistics.median(times):.0f} ms, p95 {p95:.0f} ms,"
        f" max {ordered[-1]:.0f} ms ({len(times)} runs; {size / 1024:.0f} KiB)"
    )


def _get(url: str, *, gzip: bool) -> bytes:
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    request = urllib.request.Request(url + "metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        body: bytes = response.read()
    return body


@contextmanager
def _server(config: Config, store: Store) -> Iterator[str]:
    """The real application under uvicorn on a free loopback port, in a thread."""
    listen = Listen(host="127.0.0.1", port=ports.free_port())
    server = make_server(create_app(config, store), listen, WebConfig())
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SystemExit("metrics_bench: the server did not start within 60 s")
        time.sleep(0.05)
    try:
        yield listen.url(tls=False)
    finally:
        server.should_exit = True
        thread.join(30)


if __name__ == "__main__":
    sys.exit(main())
