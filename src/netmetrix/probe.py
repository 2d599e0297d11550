#!/usr/bin/env python3
"""netmetrix probe: prints one sealed message of this host's metrics.

Uploaded by ``netmetrix upload`` as ``<directory>/<script>`` with its key beside
it in ``<script>.key``; run by ``netmetrix execute`` as::

    python3 /tmp/client.py CHALLENGE

It must stay ONE self-contained file, standard library only, and run on
Python 3.6+ (checked by vermin).  psutil is used when importable.

stdout carries exactly one line, the envelope; diagnostics go to stderr.

Envelope (protocol 1), one ASCII line::

    NMX1.<header>.<body>.<tag>          each part base64url without padding

header  JSON, sorted keys, no spaces: {"v": 1, "alg": "A256GCM" | "HS256",
        "host": name the key was made for, "ch": the collector's challenge,
        "ts": probe clock (unix seconds), "kid": key id, "n": GCM nonce}
A256GCM body+tag = AES-256-GCM(subkey(key, "enc"), nonce, payload,
        associated data = "NMX1.<header>"); tag is the 16-byte GCM tag
HS256   body = payload; tag = HMAC-SHA256(subkey(key, "mac"),
        "NMX1.<header>.<body>")
payload JSON: {"probe": version, "python": "3.x.y", "time": unix seconds,
        "duration": seconds, "samples": [[metric, {label: value}, number], ...],
        "errors": ["what could not be read", ...]}

Key file (JSON, mode 0600): {"v": 1, "host": "f4", "key": "<base64url 32 bytes>"}

Exit status: 0 message printed; 2 bad arguments; 3 key file missing or invalid.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time

PROTOCOL = 1
PROBE_VERSION = "0.1.0"
MAGIC = "NMX1"
KEY_BYTES = 32
CHALLENGE_HEX = 32  # 16 random bytes, hex

EXIT_USAGE = 2
EXIT_KEY = 3


# ---------------------------------------------------------------- envelope


def b64e(data):
    """Base64url without padding (bytes -> str)."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64d(text):
    """Inverse of b64e; raises ValueError on bad input."""
    if not isinstance(text, str):
        raise ValueError("not text")
    pad = "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode((text + pad).encode("ascii"))
    except Exception as exc:  # binascii.Error, UnicodeEncodeError
        raise ValueError("bad base64: %s" % exc)


def subkey(key, purpose):
    """Derive a separate key per use so one secret never serves two algorithms."""
    return hmac.new(key, b"netmetrix/v1/" + purpose, hashlib.sha256).digest()


def key_id(key):
    """Short public name of a key, so the collector knows which one sealed a message."""
    return hashlib.sha256(b"netmetrix/kid/" + key).hexdigest()[:16]


def _aesgcm():
    """The AESGCM class when the `cryptography` package is importable, else None."""
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except Exception:  # ImportError, or a broken install: fall back to HMAC
        return None
    return AESGCM


def seal(key, host, challenge, payload, now, encrypt=True):
    """Return the envelope line for ``payload`` (bytes).

    Encrypts with AES-256-GCM when ``encrypt`` and `cryptography` is available,
    otherwise authenticates with HMAC-SHA256.
    """
    aesgcm = _aesgcm() if encrypt else None
    header = {"v": PROTOCOL, "host": host, "ch": challenge, "ts": now, "kid": key_id(key)}
    if aesgcm is not None:
        nonce = os.urandom(12)
        header["alg"] = "A256GCM"
        header["n"] = b64e(nonce)
    else:
        header["alg"] = "HS256"
    hdr = b64e(json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    signed = MAGIC + "." + hdr
    if aesgcm is not None:
        sealed = aesgcm(subkey(key, b"enc")).encrypt(nonce, payload, signed.encode("ascii"))
        body, tag = sealed[:-16], sealed[-16:]
        return signed + "." + b64e(body) + "." + b64e(tag)
    body_text = b64e(payload)
    tag = hmac.new(subkey(key, b"mac"), (signed + "." + body_text).encode("ascii"), hashlib.sha256)
    return signed + "." + body_text + "." + b64e(tag.digest())


def read_key(path):
    """Return (host, key bytes) from a key file; raises ValueError or OSError."""
    with open(path, "r") as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or data.get("v") != 1:
        raise ValueError("unknown key file format")
    host, key = data.get("host"), b64d(data.get("key"))
    if not isinstance(host, str) or len(key) != KEY_BYTES:
        raise ValueError("key file has no host or a key of the wrong size")
    return host, key


def key_file_text(host, key):
    """The key file's content for ``host`` (the collector writes it at upload)."""
    return json.dumps({"v": 1, "host": host, "key": b64e(key)}, sort_keys=True) + "\n"


# ---------------------------------------------------------------- metrics


def collect(proc_root="/", state_path=None, now=None):
    """Return (samples, errors): samples are [metric, {labels}, value] lists."""
    samples = []
    errors = []
    try:
        with open(os.path.join(proc_root, "proc/uptime")) as handle:
            samples.append(["uptime_sec", {}, float(handle.read().split()[0])])
    except (OSError, ValueError, IndexError) as exc:
        errors.append("uptime: %s" % exc)
    return samples, errors


# ---------------------------------------------------------------- main


def build_payload(samples, errors, started, now):
    """The payload bytes sealed into the envelope."""
    return json.dumps(
        {
            "probe": PROBE_VERSION,
            "python": "%d.%d.%d" % sys.version_info[:3],
            "time": now,
            "duration": max(0.0, time.time() - started),
            "samples": samples,
            "errors": errors,
        },
        separators=(",", ":"),
        allow_nan=False,
    ).encode("utf-8")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    started = time.time()
    if len(argv) != 1 or len(argv[0]) != CHALLENGE_HEX:
        sys.stderr.write("usage: %s CHALLENGE (32 hex digits from the collector)\n" % sys.argv[0])
        return EXIT_USAGE
    challenge = argv[0]
    me = os.path.abspath(__file__)
    try:
        host, key = read_key(me + ".key")
    except (OSError, ValueError) as exc:
        sys.stderr.write("netmetrix probe: cannot read key %s.key: %s\n" % (me, exc))
        return EXIT_KEY
    samples, errors = collect("/", me + ".state", started)
    now = time.time()
    payload = build_payload(samples, errors, started, now)
    sys.stdout.write(seal(key, host, challenge, payload, now) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
