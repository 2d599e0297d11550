#!/usr/bin/env python3
"""The original spec's client.py: print one encrypted message of this host's statistics.

As the spec has it: psutil for the metrics (uptime_sec, cpu_percent,
mem_percent), a secret key hard-coded in the script, one base64 line on
stdout.  pycrypto is long dead, so AES-256-GCM comes from `cryptography`.

cpu_percent covers the time since the previous run (psutil's counters kept
in a state file beside the script), like netmetrix's probe, so neither
probe sleeps once it has run before; a first run samples 0.2 s.
"""

import base64
import json
import os
import sys
import time

import psutil
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# Hard-coded, as in the spec ("Secret key for (en)(de)cryption is hardcoded in script").
KEY = b"netmetrix-bench/spec-hardcoded!!"  # 32 bytes: AES-256
STATE = os.path.abspath(__file__) + ".state"


def _busy_total(times):
    """(busy, total) CPU seconds, counted as psutil.cpu_percent counts them."""
    total = sum(times) - getattr(times, "guest", 0) - getattr(times, "guest_nice", 0)
    return total - times.idle - getattr(times, "iowait", 0), total


def cpu_percent():
    """Busy share of CPU time since the previous run (a first run samples 0.2 s)."""
    now = psutil.cpu_times()
    try:
        with open(STATE) as handle:
            before = type(now)(*json.load(handle))
    except (OSError, ValueError, TypeError):
        before = None
    if before is None:
        percent = psutil.cpu_percent(interval=0.2)
    else:
        (busy1, total1), (busy0, total0) = _busy_total(now), _busy_total(before)
        percent = round(100.0 * (busy1 - busy0) / (total1 - total0), 1) if total1 > total0 else 0.0
    with open(STATE, "w") as handle:
        json.dump(list(now), handle)
    return percent


def main():
    metrics = {
        "uptime_sec": int(time.time() - psutil.boot_time()),
        "cpu_percent": cpu_percent(),
        "mem_percent": psutil.virtual_memory().percent,
    }
    nonce = os.urandom(12)
    sealed = AESGCM(KEY).encrypt(nonce, json.dumps(metrics).encode("utf-8"), None)
    sys.stdout.write(base64.b64encode(nonce + sealed).decode("ascii") + "\n")


if __name__ == "__main__":
    main()
