"""``ansible -m raw -f <forks>`` running the spec's probe on a fleet, answers decrypted.

    python bench/ansible_runner.py inventory.ini SCRIPT [FORKS]

Runs the ``ansible`` command beside this interpreter (ansible-core from PyPI)
over the inventory the harness wrote, one line per host (``-o``), then
decrypts every host's answer so it ends with the metrics in hand (it stores
nothing).  Its settings are Ansible's defaults except two: no ansible.cfg
is read, and OpenSSH connection sharing is off (``ControlMaster=no``) so that
no run reuses the connections a previous run left open for 60 s.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from spec_baseline import decrypt

LINE = re.compile(
    r"^(?P<host>\S+) \| (?P<state>[A-Z]+) \| rc=(?P<rc>-?\d+) \| \(stdout\) (?P<out>.*)"
)


def main(inventory: Path, script: str, forks: int) -> int:
    started = time.monotonic()
    ansible = Path(sys.executable).with_name("ansible")
    hosts = [
        line.split()[0]
        for line in inventory.read_text().splitlines()
        if line.startswith("h") and "ansible_host=" in line
    ]
    cfg = inventory.with_name("ansible.cfg")
    cfg.write_text("# empty: Ansible's defaults, whatever the user's ansible.cfg says\n")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(cfg),
        "ANSIBLE_SSH_ARGS": "-C -o ControlMaster=no",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
    }
    done = subprocess.run(
        [
            str(ansible),
            "all",
            "-i",
            str(inventory),
            "-m",
            "raw",
            "-f",
            str(forks),
            "-o",
            "-a",
            "{{ probe_python }} {{ probe_dir }}/" + script,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    metrics: dict[str, dict[str, float]] = {}
    for line in done.stdout.splitlines():
        match = LINE.match(line)
        if match and match["rc"] == "0":
            out = match["out"].replace("\\r", "").replace("\\n", " ").split()
            try:
                metrics[match["host"]] = decrypt(out[0])
            except Exception as exc:
                print(f"[{match['host']}] FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    failed = [h for h in hosts if h not in metrics]
    if failed:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
    print(
        f"ansible: {len(metrics)} ok, {len(failed)} failed in {time.monotonic() - started:.2f}s",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 50))
