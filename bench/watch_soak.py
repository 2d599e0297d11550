"""The long run of #13's "done when": `netmetrix watch` on a 3-host real sshd fleet.

    python bench/watch_soak.py --minutes 10 --interval 1s

Starts three real sshd servers on 127.0.0.1 (one host each, logging every
accepted login), uploads, runs `netmetrix watch` in the background, restarts
one sshd half way (its open session killed, as a host going down would),
sends SIGTERM at the end and prints, as JSON: samples per series per host,
`up` counts, logins per server, the collector's RSS over time, its exit
status and how long it took to stop.  Short runs (``--minutes 0.5``) make a
smoke test; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from netmetrix import configxml
from netmetrix.config import parse_duration

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import sshd

HOSTS = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="netmetrix-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    report = soak(root, args.minutes * 60, parse_duration(args.interval))
    print(json.dumps(report, indent=2))
    return 0 if report["exit_status"] == 0 else 1


def soak(root: Path, seconds: float, interval: float) -> dict[str, Any]:
    key = root / "client_key"
    authorized = root / "authorized_keys"
    authorized.write_text(sshd.keygen(key) + "\n")
    servers = [
        sshd.start_sshd(root / f"sshd{i}", authorized, log_level="INFO") for i in range(HOSTS)
    ]
    try:
        config = _write_config(root, servers, key)
        _netmetrix(config, "upload")
        before = [_logins(s) for s in servers]
        return _watch(root, config, servers, seconds, interval, before)
    finally:
        for server in servers:
            server.stop(sessions=True)


def _write_config(root: Path, servers: list[sshd.Sshd], key: Path) -> Path:
    (root / "known_hosts").write_text("".join(s.known_hosts_line + "\n" for s in servers))
    hosts = [
        configxml.Host(
            name=f"s{i}",
            address="127.0.0.1",
            port=server.port,
            user="root",
            key=str(key),
            directory=str(root / "remote" / f"s{i}"),
            python=sys.executable,
        )
        for i, server in enumerate(servers)
    ]
    text = configxml.render(
        configxml.ConfigXml(
            database="netmetrix.db", ssh=configxml.SSH(known_hosts="known_hosts"), hosts=hosts
        )
    )
    path = root / "config.xml"
    path.write_text(text)
    return path


def _netmetrix(config: Path, *args: str) -> None:
    exe = Path(sys.executable).with_name("netmetrix")
    subprocess.run([str(exe), "--config", str(config), *args], check=True, capture_output=True)


def _logins(server: sshd.Sshd) -> int:
    return int(server.log.read_text().count("Accepted publickey"))


def _watch(
    root: Path,
    config: Path,
    servers: list[sshd.Sshd],
    seconds: float,
    interval: float,
    before: list[int],
) -> dict[str, Any]:
    exe = Path(sys.executable).with_name("netmetrix")
    log = (root / "watch.log").open("w")
    process = subprocess.Popen(
        [str(exe), "--config", str(config), "watch", "--interval", f"{interval:g}s"],
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    watched = psutil.Process(process.pid)
    rss: list[tuple[float, float]] = []
    started = time.monotonic()
    restarted = False
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            rss.append((round(elapsed), watched.memory_info().rss / 2**20))
            if not restarted and elapsed >= seconds / 2:
                restarted = True
                servers[0].stop(sessions=True)
                time.sleep(3 * interval)
                servers[0] = sshd.start_sshd(
                    servers[0].workdir,
                    root / "authorized_keys",
                    port=servers[0].port,
                    log_level="INFO",
                )
            time.sleep(min(10.0, seconds / 20))
        cpu = watched.cpu_times()
        process.send_signal(signal.SIGTERM)
        stop_began = time.monotonic()
        status = process.wait(timeout=60)
        stop_seconds = time.monotonic() - stop_began
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    text = (root / "watch.log").read_text()
    return {
        "seconds": round(seconds),
        "interval": interval,
        "exit_status": status,
        "stop_seconds": round(stop_seconds, 2),
        "collector_cpu_seconds": round(cpu.user + cpu.system, 2),
        "logins_during_watch": [_logins(s) - b for s, b in zip(servers, before, strict=True)],
        "connected_lines": {f"s{i}": text.count(f"[s{i}] connected") for i in range(HOSTS)},
        "back_after_lines": {f"s{i}": text.count(f"[s{i}] back after") for i in range(HOSTS)},
        "series": _series_counts(root / "netmetrix.db"),
        "rss_mb": [(t, round(m, 1)) for t, m in rss],
        "load_average": os.getloadavg(),
    }


def _series_counts(database: Path) -> dict[str, dict[str, Any]]:
    """Per host: the `up` samples (and how many were 1), and the fewest and most samples
    of any other series."""
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT r.host, r.metric, r.labels, count(*), sum(s.value)"
            " FROM samples s JOIN series r ON r.id = s.series_id GROUP BY r.id"
        ).fetchall()
    found: dict[str, dict[str, Any]] = {}
    for host, metric, _labels, count, total in rows:
        entry = found.setdefault(host, {"up": 0, "up_1": 0, "min": None, "max": None})
        if metric == "up":
            entry["up"], entry["up_1"] = count, int(total)
        else:
            entry["min"] = count if entry["min"] is None else min(entry["min"], count)
            entry["max"] = count if entry["max"] is None else max(entry["max"], count)
    return found


if __name__ == "__main__":
    sys.exit(main())
