"""Time `netmetrix upload` and `netmetrix execute` against a local farm of real sshd servers.

    .venv/bin/python bench/execute_local.py --hosts 50 --servers 5 --runs 3

N host entries are spread over S sshd processes on 127.0.0.1 (MaxStartups
raised), each host with its own remote directory.  Prints the wall time of
each run, measured around the real CLI process, and the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import sshd


def write_config(root: Path, farm: sshd.Farm, hosts: int, concurrency: int) -> Path:
    lines = []
    for i in range(hosts):
        server = farm.servers[i % len(farm.servers)]
        lines.append(
            f'    <host name="h{i:04d}" address="127.0.0.1" port="{server.port}" user="root" '
            f'key="{farm.client_key}" directory="{root / "remote" / f"h{i:04d}"}" '
            f'python="{sys.executable}"/>'
        )
    (root / "known_hosts").write_text(farm.known_hosts_text())
    config = root / "config.xml"
    config.write_text(
        "<netmetrix>\n"
        f"  <concurrency>{concurrency}</concurrency>\n"
        '  <ssh known_hosts="known_hosts" connect_timeout="20" command_timeout="30"/>\n'
        "  <hosts>\n" + "\n".join(lines) + "\n  </hosts>\n</netmetrix>\n"
    )
    return config


def timed(config: Path, verb: str) -> float:
    exe = Path(sys.executable).with_name("netmetrix")
    env = {**os.environ, "NETMETRIX_CONFIG": str(config)}
    started = time.perf_counter()
    done = subprocess.run([exe, "-q", verb], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{verb} failed ({done.returncode}):\n{done.stderr}")
    print(f"  {verb:8s} {elapsed:6.2f}s   {done.stderr.strip().splitlines()[-1]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--servers", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="netmetrix-bench-") as tmp:
        root = Path(tmp)
        with sshd.farm(root / "farm", args.servers) as farm:
            config = write_config(root, farm, args.hosts, args.concurrency)
            print(f"{args.hosts} hosts on {args.servers} sshd, concurrency {args.concurrency}")
            timed(config, "upload")
            timed(config, "execute")  # warm-up: first run samples a short window
            walls = [timed(config, "execute") for _ in range(args.runs)]
            print(f"execute median {statistics.median(walls):.2f}s over {args.runs} runs")


if __name__ == "__main__":
    main()
