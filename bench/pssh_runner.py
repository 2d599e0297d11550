"""parallel-ssh (``ParallelSSHClient``, libssh2 under gevent) running the spec's probe on a fleet.

    python bench/pssh_runner.py config.xml

Reads the hosts from the same config.xml, runs ``<python> <dir>/spec_client.py``
on all of them with ``pool_size=<concurrency>``, and decrypts every answer,
so it ends with the metrics in hand (it stores nothing).  parallel-ssh does
not check host keys: that is its default, not a shortcut of ours.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pssh.clients import ParallelSSHClient
from pssh.config import HostConfig
from spec_baseline import SCRIPT, decrypt, load_config


def main(config_path: Path) -> int:
    config = load_config(config_path)
    started = time.monotonic()
    client = ParallelSSHClient(
        [n.address for n in config.nodes],
        host_config=[
            HostConfig(user=n.user, port=n.port, private_key=n.key, allow_agent=False)
            for n in config.nodes
        ],
        pool_size=config.concurrency,
        timeout=config.timeout,
        allow_agent=False,
        num_retries=1,
    )
    commands = [(n.python, f"{n.directory.rstrip('/')}/{SCRIPT}") for n in config.nodes]
    output = client.run_command("%s %s", host_args=commands, stop_on_errors=False)
    client.join(output, timeout=config.timeout)
    failed: list[str] = []
    metrics: dict[str, dict[str, float]] = {}
    for node, host_out in zip(config.nodes, output, strict=True):
        try:
            if host_out.exception is not None:
                raise host_out.exception
            lines = list(host_out.stdout)
            if host_out.exit_code != 0:
                raise RuntimeError(f"exit status {host_out.exit_code}")
            metrics[node.name] = decrypt(lines[-1])
        except Exception as exc:  # one host failing must not stop the others
            print(f"[{node.name}] FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append(node.name)
    ok = len(config.nodes) - len(failed)
    print(
        f"pssh: {ok} ok, {len(failed)} failed in {time.monotonic() - started:.2f}s",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
