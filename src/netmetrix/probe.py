#!/usr/bin/env python3
"""netmetrix probe: prints one sealed message of this host's metrics.

Uploaded by ``netmetrix upload`` as ``<directory>/<script>`` with its key beside
it in ``<script>.<collector>.key``; run by ``netmetrix execute`` as::

    python3 .cache/netmetrix/client.py CHALLENGE COLLECTOR      (from the login's home)

COLLECTOR is the id of the store that uploaded the key (``netmetrix db info``):
every collector sharing a host has its own key and state file beside the one
probe file (``<script>.<collector>.key``, ``<script>.<collector>.state``).
Without it (a collector older than collector ids) the probe uses
``<script>.key`` and ``<script>.state``.  It is an argument, not an
environment variable, so that a probe uploaded before collector ids existed
fails at once with a usage error (which the collector turns into "run
upload") instead of quietly reading the shared ``<script>.key``, possibly
another collector's.

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

Streaming mode (``netmetrix watch``)::

    python3 .cache/netmetrix/client.py --watch COLLECTOR

reads one request line per tick on stdin, ``CHALLENGE IDLE DEADLINE``
(seconds), and answers each with one envelope line, exactly as above, bound
to that challenge.  Rates cover the time since the previous tick, kept in
memory (the state file is read for the first tick, never written).  Each
tick has its own watchdog of DEADLINE seconds.  The probe ends by itself,
status 0, at EOF or when no request line came within IDLE seconds of the
last one, so a collector that died without closing the session leaves
nothing running.  The key file is read again when it changes (an upload).

Exit status: 0 message printed; 2 bad arguments (the collector reads a usage
line from a probe older than collector ids as "run upload"); 3 key file missing or invalid;
5 refused a file another user could have planted or could change (stderr names it);
124 its deadline passed (see below).

The probe trusts its key file, state file and its own file only when they are
regular files (never a symlink) owned by the user running it that no one else
can write (nor, for the key, read): in a shared directory another user could
otherwise plant a state file that makes every run report made-up rates, sealed
with the host's own key.

Deadline: ``netmetrix execute`` sets NETMETRIX_DEADLINE to the seconds this run
may take (an environment variable, so that probes uploaded by an older
netmetrix still run).  When they pass, a watchdog thread kills the probe's
process group, which sshd made for this run alone, whatever the main thread is
stuck in; run by hand from an interactive shell, only the probe itself ends.
"""

import base64
import contextlib
import errno
import hashlib
import hmac
import json
import math
import os
import re
import select
import signal
import stat
import sys
import tempfile
import threading
import time

PROTOCOL = 1
PROBE_VERSION = "0.1.0"
MAGIC = "NMX1"
KEY_BYTES = 32
CHALLENGE_HEX = 32  # 16 random bytes, hex
# A collector id is part of two file names: no dots, slashes or anything else.
COLLECTOR_ID = re.compile(r"\A[0-9a-z]{1,32}\Z")
USAGE = "CHALLENGE [COLLECTOR] (32 hex digits, then the collector's id)"

EXIT_USAGE = 2
EXIT_KEY = 3
EXIT_UNSAFE = 5
UNSAFE_PREFIX = "netmetrix probe: refused "  # the collector reads the file and reason after it
EXIT_DEADLINE = 124  # as timeout(1)
DEADLINE_ENV = "NETMETRIX_DEADLINE"


# ---------------------------------------------------------------- envelope


def b64e(data):
    # type: (bytes) -> str
    """Base64url without padding (bytes -> str)."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64d(text):
    # type: (object) -> bytes
    """Inverse of b64e; raises ValueError on bad input."""
    if not isinstance(text, str):
        raise ValueError("not text")
    pad = "=" * (-len(text) % 4)
    try:
        data = base64.urlsafe_b64decode((text + pad).encode("ascii"))
    except Exception as exc:  # binascii.Error, UnicodeEncodeError
        raise ValueError("bad base64: %s" % exc) from None
    if b64e(data) != text:  # unused low bits set: one message must have one spelling
        raise ValueError("non-canonical base64")
    return data


def subkey(key, purpose):
    # type: (bytes, bytes) -> bytes
    """Derive a separate key per use so one secret never serves two algorithms."""
    return hmac.new(key, b"netmetrix/v1/" + purpose, hashlib.sha256).digest()


def key_id(key):
    # type: (bytes) -> str
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
    # type: (bytes, str, str, bytes, float, bool) -> str
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
    # type: (str) -> tuple[str, bytes]
    """Return (host, key bytes) from a key file; raises ValueError, OSError or UnsafeFile."""
    with open_private(path, secret=True) as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or data.get("v") != 1:
        raise ValueError("unknown key file format")
    host, key = data.get("host"), b64d(data.get("key"))
    if not isinstance(host, str) or len(key) != KEY_BYTES:
        raise ValueError("key file has no host or a key of the wrong size")
    return host, key


def key_file_text(host, key):
    # type: (str, bytes) -> str
    """The key file's content for ``host`` (the collector writes it at upload)."""
    return json.dumps({"v": 1, "host": host, "key": b64e(key)}, sort_keys=True) + "\n"


# ---------------------------------------------------------------- file safety


class UnsafeFile(Exception):
    """A key, state or probe file that another user planted or can change."""

    def __init__(self, path, reason):
        # type: (str, str) -> None
        Exception.__init__(self, "%s: %s" % (path, reason))
        self.path = path
        self.reason = reason


def check_private(path, st, secret=False):
    # type: (str, os.stat_result, bool) -> None
    """Raise UnsafeFile unless ``st`` (an lstat or fstat of ``path``) is safe to trust.

    Safe: a regular file owned by the user running the probe that no other
    user can write; a ``secret`` one (the key) no other user can read either.
    """
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeFile(path, "is a symbolic link")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(path, "is not a regular file")
    euid = os.geteuid() if hasattr(os, "geteuid") else None
    if euid is not None and st.st_uid != euid:
        reason = "owned by uid %d, not by uid %d that runs the probe" % (st.st_uid, euid)
        raise UnsafeFile(path, reason)
    mode = stat.S_IMODE(st.st_mode)
    if mode & (0o077 if secret else 0o022):
        what = "readable or writable" if secret else "writable"
        raise UnsafeFile(path, "%s by group/others (mode %04o)" % (what, mode))


def check_private_path(path, secret=False, missing_ok=False):
    # type: (str, bool, bool) -> None
    """check_private on ``path`` itself (lstat: a symlink is refused, never followed)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        if missing_ok and exc.errno == errno.ENOENT:
            return
        raise
    check_private(path, st, secret)


def open_private(path, secret=False):
    """Open ``path`` for reading as text, refusing (UnsafeFile) what check_private refuses.

    O_NOFOLLOW: a symlink fails to open rather than leading elsewhere;
    O_NONBLOCK: a planted FIFO cannot hang the probe; the checks run on the
    descriptor that is then read, so the file cannot be swapped in between.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if os.path.islink(path):  # ELOOP on Linux, EMLINK on FreeBSD
            raise UnsafeFile(path, "is a symbolic link") from None
        raise
    try:
        check_private(path, os.fstat(fd), secret)
        return os.fdopen(fd, "r", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def file_names(script, collector=None):
    # type: (str, str | None) -> tuple[str, str]
    """(key file, state file) of one collector beside the probe file ``script``.

    ``<script>.<collector>.key`` and ``.state``; ``<script>.key`` and
    ``.state`` without a collector id (as uploaded before collector ids).
    The collector names the files it uploads with this function too.
    """
    if collector is not None and not COLLECTOR_ID.match(collector):
        raise ValueError("collector id %r is not 1-32 lowercase letters or digits" % collector)
    base = script if collector is None else "%s.%s" % (script, collector)
    return base + ".key", base + ".state"


def load_files(script, collector=None):
    # type: (str, str | None) -> tuple[str, bytes]
    """Check the probe's own file and its state file, and read its key: (host, key).

    The key and state files are ``collector``'s (see ``file_names``).  Raises
    UnsafeFile for a file another user could have planted or could change,
    OSError or ValueError for a missing or broken key file.
    """
    key_path, state_path = file_names(script, collector)
    check_private_path(script)
    host, key = read_key(key_path)
    check_private_path(state_path, missing_ok=True)
    return host, key


# ---------------------------------------------------------------- metrics

# (name, unit, kind, help): the one list of metric names; the collector imports it.
# "rate" metrics cover the time since the probe's previous run on the host.
METRICS = (
    ("uptime_sec", "seconds", "gauge", "Time since the host booted."),
    ("cpu_percent", "percent", "rate", "CPU busy time over all CPUs (not idle, not iowait)."),
    ("mem_percent", "percent", "gauge", "Memory in use: (total - available) / total."),
    ("load1", "", "gauge", "Load average over 1 minute."),
    ("load5", "", "gauge", "Load average over 5 minutes."),
    ("load15", "", "gauge", "Load average over 15 minutes."),
    ("cpu_count", "count", "gauge", "Online logical CPUs."),
    ("mem_total_bytes", "bytes", "gauge", "Physical memory."),
    ("mem_available_bytes", "bytes", "gauge", "Memory available without swapping (MemAvailable)."),
    ("swap_percent", "percent", "gauge", "Swap space in use (0 when there is no swap)."),
    ("disk_percent", "percent", "gauge", "Space used on a mount, of what non-root users can use."),
    ("disk_used_bytes", "bytes", "gauge", "Space used on a mount (label mount)."),
    ("disk_total_bytes", "bytes", "gauge", "Size of a mount's filesystem (label mount)."),
    ("net_rx_bytes_per_sec", "bytes/s", "rate", "Bytes received (label interface)."),
    ("net_tx_bytes_per_sec", "bytes/s", "rate", "Bytes sent (label interface)."),
    ("disk_read_bytes_per_sec", "bytes/s", "rate", "Bytes read from a whole disk (label device)."),
    (
        "disk_write_bytes_per_sec",
        "bytes/s",
        "rate",
        "Bytes written to a whole disk (label device).",
    ),
    ("procs_total", "count", "gauge", "Processes (as ps -e counts them)."),
    ("procs_running", "count", "gauge", "Runnable tasks, threads included (vmstat's r)."),
    ("probe_duration_sec", "seconds", "gauge", "How long the probe took to collect."),
)

# The label names of each metric's series; a metric not listed has none.
METRIC_LABELS = {
    "disk_percent": ("mount",),
    "disk_used_bytes": ("mount",),
    "disk_total_bytes": ("mount",),
    "net_rx_bytes_per_sec": ("interface",),
    "net_tx_bytes_per_sec": ("interface",),
    "disk_read_bytes_per_sec": ("device",),
    "disk_write_bytes_per_sec": ("device",),
}

SAMPLE_WINDOW = 0.2  # seconds sampled for rates when there is no usable previous run
MAX_STATE_AGE = 3600.0  # an older previous run says little about now: sample instead
REMOTE_DEADLINE = 2.0  # seconds for statvfs on all network/FUSE mounts together
SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the disk's own size
MAX_LABEL = 256  # the collector refuses longer label values
STATE_VERSION = 1

# Filesystems with no disk space worth watching: kernel interfaces, memory,
# automounter triggers, and read-only images that are always 100% full.
PSEUDO_FS = frozenset(
    """
    autofs binfmt_misc bpf configfs debugfs devfs devpts devtmpfs efivarfs erofs
    fdescfs fuse.gvfsd-fuse fuse.lxcfs fuse.portal fuse.snapfuse fusectl hugetlbfs
    iso9660 linprocfs linsysfs mqueue nfsd nsfs proc procfs pstore ramfs rootfs
    rpc_pipefs securityfs selinuxfs squashfs sysfs tmpfs tracefs
    """.split()  # noqa: SIM905 - a word list reads better than quoted strings
)
# Filesystems whose statvfs can hang on a dead server; any type with "fuse" in
# its name counts too, as a stuck FUSE daemon blocks statvfs the same way.
REMOTE_FS = frozenset(
    """
    9p afpfs afs beegfs ceph cifs coda davfs gfs2 glusterfs gpfs lustre ncpfs nfs
    nfs4 ocfs2 orangefs smb3 smbfs sshfs vboxsf virtiofs webdav
    """.split()  # noqa: SIM905 - a word list reads better than quoted strings
)
_SKIP_DEVICE = re.compile(r"(loop|ram|zram|fd)\d+$")  # images, RAM disks, floppies
_TRAILING_NUMBER = re.compile(r"(.*\D)(\d+)$")
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def collect(proc_root="/", state_path=None, now=None, memory=None):
    """Return (samples, errors): samples are [metric, {labels}, value] lists.

    Reads ``proc_root``/proc on Linux, psutil elsewhere; ``state_path`` keeps
    counters between runs so rates cover the time since the previous run;
    ``now`` is the wall clock (unix seconds) those rates are measured with.
    ``memory`` (a dict, streaming mode) keeps them between ticks instead: the
    state file is then only read, for the first tick.
    """
    started = time.monotonic()
    now = time.time() if now is None else now
    errors = []  # type: list
    kind, samples, read_counters, read_mounts, usage = _sources(proc_root, now, errors)
    if read_counters is None:
        errors.append("cpu_percent and *_per_sec rates: need /proc or psutil")
    else:
        uptime = _value(samples, "uptime_sec")
        args = (kind, read_counters, state_path, now, uptime, errors, memory)
        _extend(samples, errors, "rates", _rate_samples, *args)
    mounts = _attempt(errors, "mounts", read_mounts) or []
    _extend(samples, errors, "disks", _disk_samples, mounts, usage, errors)
    samples.append(["probe_duration_sec", {}, time.monotonic() - started])
    return _valid(samples, errors), _unique(errors)


def _sources(proc_root, now, errors):
    """Pick how to read this host: (kind, gauges, read_counters, read_mounts, usage)."""
    if os.path.isfile(os.path.join(proc_root, "proc", "stat")):
        return (
            "linux",
            _linux_gauges(proc_root, errors),
            lambda: _linux_counters(proc_root, errors),
            lambda: _linux_mounts(proc_root),
            _statvfs_usage,
        )
    psutil = _import_psutil()
    if psutil is not None:
        return (
            "psutil",
            _psutil_gauges(psutil, now, errors),
            lambda: _psutil_counters(psutil, errors),
            lambda: _psutil_mounts(psutil),
            _statvfs_usage if hasattr(os, "statvfs") else _psutil_usage(psutil),
        )
    errors.append("uptime, memory, swap and processes: need /proc or psutil")
    return "none", _bare_gauges(errors), None, lambda: [("/", "", "/")], _statvfs_usage


def _import_psutil():
    """The psutil module, or None when it is not installed (it is optional)."""
    try:
        import psutil
    except Exception:  # ImportError, or a broken install: carry on without it
        return None
    return psutil


def _attempt(errors, what, func, *args):
    """Return func(*args), or None after noting why in ``errors``.

    One unreadable source must not cost the others: a probe that dies sends nothing.
    """
    try:
        return func(*args)
    except Exception as exc:
        errors.append(("%s: %s" % (what, _describe(exc)))[:200])
        return None


def _describe(exc):
    """A short description of an exception; OSError's own text names the file."""
    return str(exc) if isinstance(exc, OSError) else "%s: %s" % (type(exc).__name__, exc)


def _extend(samples, errors, what, func, *args):
    """Add func(*args)'s samples to ``samples`` unless it fails."""
    samples.extend(_attempt(errors, what, func, *args) or [])


def _read(root, *parts):
    """The text of a file under ``root``.

    UTF-8 whatever the locale: Python 3.6 in the C locale (cron, ssh without
    LANG) would otherwise decode as ASCII and fail on any non-ASCII mount path.
    """
    with open(os.path.join(root, *parts), encoding="utf-8", errors="replace") as handle:
        return handle.read()


def _value(samples, metric):
    """The value of the first sample of ``metric``, or None."""
    for name, _labels, value in samples:
        if name == metric:
            return value
    return None


def _valid(samples, errors):
    """Drop samples the collector would refuse, so one bad value cannot void the message."""
    kept = []
    for sample in samples:
        name, labels, value = sample
        if not (isinstance(value, (int, float)) and math.isfinite(value)):
            errors.append("%s: not a finite number: %r" % (name, value))
        elif any(len(label) > MAX_LABEL for label in labels.values()):
            errors.append("%s: label longer than %d characters" % (name, MAX_LABEL))
        else:
            kept.append([name, labels, float(value)])
    return kept


def _unique(items):
    """Return ``items`` without repeats, in order (rate sampling reads sources twice)."""
    kept = []
    for item in items:
        if item not in kept:
            kept.append(item)
    return kept


# ------------------------------------------------ Linux /proc parsers


def parse_uptime(text):
    """Seconds since boot from /proc/uptime."""
    return float(text.split()[0])


def parse_loadavg(text):
    """(load1, load5, load15) from /proc/loadavg."""
    fields = text.split()
    return float(fields[0]), float(fields[1]), float(fields[2])


def parse_stat(text):
    """/proc/stat -> {"cpu": [jiffies...], "cpu_count": n, "procs_running": n}.

    Keys whose lines are missing are left out.
    """
    result = {"cpu_count": 0}  # type: dict
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "cpu":
            result["cpu"] = [int(field) for field in fields[1:]]
        elif fields[0].startswith("cpu") and fields[0][3:].isdigit():
            result["cpu_count"] += 1  # one line per online CPU, as sysconf counts them
        elif fields[0] == "procs_running":
            result["procs_running"] = int(fields[1])
    return result


def cpu_counter(jiffies):
    """[total, busy] CPU time from /proc/stat's cpu line, as psutil counts them.

    guest and guest_nice are already inside user and nice; iowait is idle time.
    """
    total = sum(jiffies[:8])
    busy = total - jiffies[3] - (jiffies[4] if len(jiffies) > 4 else 0)
    return [total, busy]


def parse_meminfo(text):
    """/proc/meminfo -> {field: value}, in bytes for the fields given in kB."""
    info = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields:
            info[name.strip()] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    return info


def memory_samples(info):
    """Memory and swap samples from parse_meminfo's result, as psutil computes them."""
    total = info["MemTotal"]
    available = info.get("MemAvailable")
    if available is None:  # kernels before 3.14: free's old estimate
        available = info["MemFree"] + info.get("Buffers", 0) + info.get("Cached", 0)
        available += info.get("SReclaimable", 0)
    if available > total:  # in LXC containers meminfo mixes host and container numbers
        available = info["MemFree"]
    swap_total = info.get("SwapTotal", 0)
    swap_used = swap_total - info.get("SwapFree", 0)
    return [
        ["mem_total_bytes", {}, total],
        ["mem_available_bytes", {}, available],
        ["mem_percent", {}, _percent(total - available, total)],
        ["swap_percent", {}, _percent(swap_used, swap_total)],
    ]


def _percent(part, whole):
    """100 * part / whole, and 0 for an empty whole."""
    return 100.0 * part / whole if whole > 0 else 0.0


def is_loopback(interface):
    """True for loopback interfaces (Linux lo; lo0 and Windows' name under psutil)."""
    return re.match(r"lo\d*$", interface) is not None or interface.startswith("Loopback")


def parse_net_dev(text):
    """/proc/net/dev -> {interface: [rx_bytes, tx_bytes]}, loopback left out."""
    counters = {}
    for line in text.splitlines():
        name, colon, rest = line.partition(":")
        fields = rest.split()
        if not colon or len(fields) < 9 or is_loopback(name.strip()):
            continue  # the two header lines
        counters[name.strip()] = [int(fields[0]), int(fields[8])]
    return counters


def whole_disks(names):
    """The names that are whole disks: no partitions, loop, RAM or floppy devices.

    Follows the kernel's naming: a partition is its disk's name plus a number,
    with "p" between when the disk's name ends in a digit (nvme0n1p1, but
    dm-10 is no partition of dm-1).
    """
    names = set(names)
    return sorted(name for name in names if not _is_partition(name, names))


def _is_partition(name, names):
    if _SKIP_DEVICE.match(name):
        return True
    match = _TRAILING_NUMBER.match(name)
    if match is None:
        return False
    disk = match.group(1)
    if disk.endswith("p") and disk[-2:-1].isdigit():
        disk = disk[:-1]
    elif disk[-1:].isdigit():
        return False
    return disk in names


def parse_diskstats(text):
    """/proc/diskstats -> {device: [read_bytes, written_bytes]} for whole disks."""
    counters = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 10:
            counters[fields[2]] = [int(fields[5]) * SECTOR_BYTES, int(fields[9]) * SECTOR_BYTES]
    return {name: counters[name] for name in whole_disks(counters)}


def parse_mounts(text):
    """/proc/mounts -> [(device, mountpoint, fstype)] worth watching; see select_mounts."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            entries.append(tuple(_unescape(field) for field in fields[:3]))
    return select_mounts(entries)


def _unescape(field):
    r"""Undo /proc/mounts' octal escapes (\040 is a space)."""
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def is_pseudo(fstype):
    """True for filesystems that hold no disk space worth watching."""
    return fstype in PSEUDO_FS or fstype.startswith("cgroup")


def is_remote(fstype):
    """True for filesystems whose statvfs may hang (network and FUSE)."""
    return fstype in REMOTE_FS or "fuse" in fstype


def select_mounts(entries):
    """The (device, mountpoint, fstype) entries worth watching, sorted by mountpoint.

    A later mount on the same mountpoint hides the earlier one, so the last
    wins; pseudo filesystems are dropped; a device mounted in several places
    (bind mounts) is reported once, at its shortest mountpoint.  Devices
    without a "/" (overlay, none) are names, not sources, so they are kept.
    """
    visible = {}
    for device, mountpoint, fstype in entries:
        visible[mountpoint] = (device, fstype)
    by_source = {}  # type: dict
    for mountpoint in sorted(visible, key=lambda path: (len(path), path)):
        device, fstype = visible[mountpoint]
        if not is_pseudo(fstype):
            key = device if "/" in device else mountpoint
            by_source.setdefault(key, (device, mountpoint, fstype))
    return sorted(by_source.values(), key=lambda entry: entry[1])


# ------------------------------------------------ Linux sources


def _linux_gauges(root, errors):
    samples = []  # type: list
    _extend(samples, errors, "uptime", _linux_uptime, root)
    _extend(samples, errors, "loadavg", _linux_load, root)
    _extend(samples, errors, "stat", _linux_stat, root)
    _extend(samples, errors, "meminfo", _linux_memory, root)
    _extend(samples, errors, "processes", _linux_procs, root)
    return samples


def _linux_uptime(root):
    return [["uptime_sec", {}, parse_uptime(_read(root, "proc", "uptime"))]]


def _linux_load(root):
    # On the live system getloadavg() keeps the kernel's precision; /proc/loadavg
    # rounds to 0.01.  Both come from the same kernel counters.
    if os.path.realpath(root) == "/" and hasattr(os, "getloadavg"):
        return _load_samples(os.getloadavg())
    return _load_samples(parse_loadavg(_read(root, "proc", "loadavg")))


def _linux_memory(root):
    return memory_samples(parse_meminfo(_read(root, "proc", "meminfo")))


def _linux_stat(root):
    stat = parse_stat(_read(root, "proc", "stat"))
    if not stat["cpu_count"] or "procs_running" not in stat:
        raise ValueError("no cpuN or procs_running lines")
    return [["cpu_count", {}, stat["cpu_count"]], ["procs_running", {}, stat["procs_running"]]]


def _linux_procs(root):
    """procs_total: one numeric /proc directory per process, as ps -e and psutil count."""
    names = os.listdir(os.path.join(root, "proc"))
    return [["procs_total", {}, sum(1 for name in names if name.isdigit())]]


def _linux_counters(root, errors):
    """Return {"cpu": {"all": [total, busy]}, "net": {...}, "disk": {...}} as of now."""
    return _read_counters(
        errors,
        (
            "cpu",
            "stat",
            lambda: {"all": cpu_counter(parse_stat(_read(root, "proc", "stat"))["cpu"])},
        ),
        ("net", "net/dev", lambda: parse_net_dev(_read(root, "proc", "net", "dev"))),
        ("disk", "diskstats", lambda: parse_diskstats(_read(root, "proc", "diskstats"))),
    )


def _read_counters(errors, *readers):
    """Return {group: read()} for each (group, what, read) that succeeds."""
    counters = {}
    for group, what, read in readers:
        got = _attempt(errors, what, read)
        if got is not None:
            counters[group] = got
    return counters


def _linux_mounts(root):
    """[(mountpoint, fstype, path to statvfs)] from root's /proc/mounts."""
    try:
        text = _read(root, "proc", "mounts")
    except OSError:  # /proc/mounts is a link into self/, which a copied tree may lack
        text = _read(root, "proc", "self", "mounts")
    return [
        (mp, fstype, os.path.join(root, mp.lstrip("/"))) for _, mp, fstype in parse_mounts(text)
    ]


# ------------------------------------------------ psutil and bare sources


def _psutil_gauges(psutil, now, errors):
    samples = []  # type: list
    _extend(samples, errors, "uptime", lambda: [["uptime_sec", {}, now - psutil.boot_time()]])
    _extend(
        samples,
        errors,
        "loadavg",
        lambda: _load_samples(getattr(psutil, "getloadavg", os.getloadavg)()),
    )
    _extend(samples, errors, "cpu_count", lambda: [["cpu_count", {}, psutil.cpu_count()]])
    _extend(samples, errors, "memory", _psutil_memory, psutil)
    _extend(samples, errors, "processes", _psutil_procs, psutil)
    return samples


def _load_samples(load):
    return [["load1", {}, load[0]], ["load5", {}, load[1]], ["load15", {}, load[2]]]


def _psutil_memory(psutil):
    memory = psutil.virtual_memory()
    return [
        ["mem_total_bytes", {}, memory.total],
        ["mem_available_bytes", {}, memory.available],
        ["mem_percent", {}, _percent(memory.total - memory.available, memory.total)],
        ["swap_percent", {}, psutil.swap_memory().percent],
    ]


def _psutil_procs(psutil):
    running = sum(
        1
        for proc in psutil.process_iter(["status"])
        if proc.info["status"] == psutil.STATUS_RUNNING
    )
    return [["procs_total", {}, len(psutil.pids())], ["procs_running", {}, running]]


def _psutil_counters(psutil, errors):
    """Return the same counters as _linux_counters, from psutil."""
    return _read_counters(
        errors,
        ("cpu", "cpu_times", lambda: {"all": _psutil_cpu(psutil.cpu_times()._asdict())}),
        ("net", "net_io_counters", lambda: _psutil_net(psutil.net_io_counters(pernic=True))),
        ("disk", "disk_io_counters", lambda: _psutil_disks(psutil.disk_io_counters(perdisk=True))),
    )


def _psutil_net(counters):
    return {
        name: [c.bytes_recv, c.bytes_sent] for name, c in counters.items() if not is_loopback(name)
    }


def _psutil_disks(counters):
    counters = counters or {}  # None on hosts without disk counters
    return {
        name: [counters[name].read_bytes, counters[name].write_bytes]
        for name in whole_disks(counters)
    }


def _psutil_cpu(times):
    """[total, busy] CPU seconds, counted like cpu_counter."""
    total = sum(times.values()) - times.get("guest", 0) - times.get("guest_nice", 0)
    return [total, total - times.get("idle", 0) - times.get("iowait", 0)]


def _psutil_mounts(psutil):
    entries = [(p.device, p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=True)]
    return [(mp, fstype, mp) for _, mp, fstype in select_mounts(entries)]


def _psutil_usage(psutil):
    def usage(path):
        got = psutil.disk_usage(path)
        return got.total, got.used, got.free

    return usage


def _bare_gauges(errors):
    """What the standard library alone tells on a host without /proc or psutil."""
    samples = []  # type: list
    _extend(samples, errors, "loadavg", lambda: _load_samples(os.getloadavg()))
    _extend(samples, errors, "cpu_count", lambda: [["cpu_count", {}, os.cpu_count()]])
    return samples


# ------------------------------------------------ rates and the state file


def _rate_samples(kind, read_counters, state_path, now, uptime, errors, memory=None):
    """cpu_percent and *_per_sec since the previous run, else over SAMPLE_WINDOW.

    The state keeps this run's first reading, stamped ``now``, for the next run:
    in the state file, or in ``memory`` when streaming (no disk write per tick).
    """
    current = read_counters()
    if memory:
        previous = _usable_state(memory, kind, now, uptime)
    else:
        previous = _load_state(state_path, kind, now, uptime)
    if previous is not None and _is_baseline(previous[1], current):
        samples = rates(previous[1], current, now - previous[0])
    else:
        first = time.monotonic()
        time.sleep(SAMPLE_WINDOW)
        second = time.monotonic()
        samples = rates(current, read_counters(), second - first)
    state = {"v": STATE_VERSION, "kind": kind, "time": now, "uptime": uptime}
    state["counters"] = current
    if memory is not None:
        memory.clear()
        memory.update(state)
    elif state_path is not None:
        _attempt(errors, "state %s" % state_path, _save_state, state_path, state)
    return samples


def rates(before, after, elapsed):
    """Return samples for the change from ``before`` to ``after`` over ``elapsed`` seconds.

    Series missing from ``before`` or whose counter went backwards are left out.
    """
    if elapsed <= 0:
        return []
    samples = []
    if "cpu" in after and "cpu" in before:
        (total, busy), (total0, busy0) = after["cpu"]["all"], before["cpu"]["all"]
        percent = min(100.0, max(0.0, _percent(busy - busy0, total - total0)))
        samples.append(["cpu_percent", {}, percent])
    for group, label, metrics in (
        ("net", "interface", ("net_rx_bytes_per_sec", "net_tx_bytes_per_sec")),
        ("disk", "device", ("disk_read_bytes_per_sec", "disk_write_bytes_per_sec")),
    ):
        for name, values in sorted(after.get(group, {}).items()):
            base = before.get(group, {}).get(name)
            for index, metric in enumerate(metrics if base else ()):
                if values[index] >= base[index]:
                    samples.append([metric, {label: name}, (values[index] - base[index]) / elapsed])
    return samples


def _is_baseline(previous, current):
    """True when ``previous`` has every current counter, none larger than now.

    A counter that went backwards means a reboot or a re-created device; a new
    device has no baseline.  Either way a short sample is the honest answer.
    """
    try:
        for group, items in current.items():
            for name, values in items.items():
                old = previous[group][name]
                if len(old) != len(values) or not all(old[i] <= values[i] for i in range(len(old))):
                    return False
    except (KeyError, TypeError, AttributeError):  # a damaged state file
        return False
    return True


def _load_state(path, kind, now, uptime):
    """(time, counters) of the previous run, or None when there is no usable one."""
    if path is None:
        return None
    try:
        # UnsafeFile is not caught: a planted state would make up every rate
        with open_private(path) as handle:
            state = json.load(handle)
    except (OSError, ValueError):  # missing or corrupt
        return None
    return _usable_state(state, kind, now, uptime)


def _usable_state(state, kind, now, uptime):
    """(time, counters) of a previous reading, or None when it says nothing about now."""
    try:
        then, counters = float(state["time"]), state["counters"]
        old_uptime = state.get("uptime")
        rebooted = uptime is not None and old_uptime is not None and uptime < old_uptime
        fresh = 0 < now - then <= MAX_STATE_AGE
        usable = (
            state.get("v") == STATE_VERSION
            and state.get("kind") == kind
            and isinstance(counters, dict)
        )
    except (ValueError, TypeError, KeyError, AttributeError):  # a damaged state
        return None
    return (then, counters) if usable and fresh and not rebooted else None


def _save_state(path, state):
    """Write the state atomically (temp file, then rename), readable by its owner only.

    The rename replaces whatever ``path`` is, a symlink included, never writing through it.
    """
    directory, name = os.path.split(os.path.abspath(path))
    # O_CREAT | O_EXCL | O_NOFOLLOW, mode 0600, a random name in the same directory
    fd, temp = tempfile.mkstemp(prefix="." + name + ".", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state, handle, sort_keys=True, separators=(",", ":"))
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


# ------------------------------------------------ disk space


def _disk_samples(mounts, usage, errors):
    """Return disk_* samples for [(mountpoint, fstype, path)]; remote mounts get a deadline."""
    mounts = _labelable(mounts, errors)
    found = []
    for mountpoint, fstype, path in mounts:
        if not is_remote(fstype):
            found.append((mountpoint, _attempt(errors, "disk %s" % mountpoint, usage, path)))
    remote = [mount for mount in mounts if is_remote(mount[1])]
    if remote:
        found += _remote_usage(remote, usage, errors)
    samples = []
    for mountpoint, got in sorted(found, key=lambda item: item[0]):
        if got is not None and got[0] > 0:  # size 0: a pseudo filesystem not in PSEUDO_FS
            total, used, free = got
            labels = {"mount": mountpoint}
            samples.append(["disk_total_bytes", labels, total])
            samples.append(["disk_used_bytes", labels, used])
            samples.append(["disk_percent", labels, _percent(used, used + free)])
    return samples


def _labelable(mounts, errors):
    """Return the mounts whose path fits in a label; note the others in ``errors``."""
    kept = []
    for mount in mounts:
        if len(mount[0]) <= MAX_LABEL:
            kept.append(mount)
        else:
            errors.append("disk %s...: mount path over %d characters" % (mount[0][:60], MAX_LABEL))
    return kept


def _statvfs_usage(path):
    """(total, used, free to non-root users) bytes of the filesystem at ``path``, as psutil."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    return total, total - st.f_bfree * st.f_frsize, st.f_bavail * st.f_frsize


def _remote_usage(mounts, usage, errors):
    """[(mountpoint, usage)] for network/FUSE mounts, each in a daemon thread.

    A dead NFS server hangs statvfs, possibly forever: the threads get
    REMOTE_DEADLINE seconds in all, and the ones still stuck are abandoned.
    """
    results = _run_with_deadline([(usage, mount[2]) for mount in mounts], REMOTE_DEADLINE)
    found = []
    for index, (mountpoint, fstype, _) in enumerate(mounts):
        result = results[index]
        if result is None:
            errors.append(
                "disk %s (%s): no answer within %g s" % (mountpoint, fstype, REMOTE_DEADLINE)
            )
        elif not result[0]:
            errors.append(("disk %s: %s" % (mountpoint, _describe(result[1])))[:200])
        else:
            found.append((mountpoint, result[1]))
    return found


def _run_with_deadline(calls, seconds):
    """Run each (func, arg) in its own daemon thread; wait ``seconds`` in all.

    Returns, per call, (True, result) or (False, exception), or None if unfinished.
    """
    results = [None] * len(calls)  # type: list

    def run(index, func, arg):
        try:
            results[index] = (True, func(arg))
        except Exception as exc:
            results[index] = (False, exc)

    threads = [
        threading.Thread(target=run, args=(index, func, arg), name="statvfs", daemon=True)
        for index, (func, arg) in enumerate(calls)
    ]
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return list(results)


# ---------------------------------------------------------------- Nagios perfdata

# UOM -> (unit label, factor to the base unit).  Bytes by 1024, as the monitoring
# plugins (check_disk, check_swap) count them; times in seconds, as Prometheus does.
PERF_UNITS = {
    "": ("", 1.0),
    "s": ("s", 1.0),
    "ms": ("s", 1e-3),
    "us": ("s", 1e-6),
    "%": ("%", 1.0),
    "B": ("B", 1.0),
    "KB": ("B", 1024.0),
    "MB": ("B", 1024.0**2),
    "GB": ("B", 1024.0**3),
    "TB": ("B", 1024.0**4),
    "c": ("c", 1.0),
}
_PERF_NUMBER = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_PERF_VALUE = re.compile(r"(%s)([A-Za-z%%]*)\Z" % _PERF_NUMBER)
_PERF_BOUND = re.compile(r"(?:%s)?\Z" % _PERF_NUMBER)
MAX_PERF_ITEMS = 100  # perfdata items kept per check


def parse_range(text, factor=1.0):
    # type: (str, float) -> tuple | None
    """A threshold range as (low, high, inside) in base units, None when empty.

    Nagios' grammar: ``10`` is 0..10, ``10:`` 10..inf, ``~:20`` -inf..20,
    ``10:20``; a leading ``@`` alerts inside the range instead of outside.
    Raises ValueError for anything else.
    """
    text = text.strip()
    if not text:
        return None
    inside = text.startswith("@")
    body = text[1:] if inside else text
    if not body:
        raise ValueError("bad range %r" % text)
    if ":" in body:
        start, end = body.split(":", 1)
    else:
        start, end = "0", body
    if start == "~":
        low = -float("inf")
    elif _PERF_BOUND.match(start):
        low = float(start) * factor if start else 0.0
    else:
        raise ValueError("bad range %r" % text)
    if not _PERF_BOUND.match(end):
        raise ValueError("bad range %r" % text)
    high = float(end) * factor if end else float("inf")
    if low > high:
        raise ValueError("range %r starts after it ends" % text)
    return (low, high, inside)


def _perf_tokens(text):
    """Split perfdata into (label, rest) pairs; yields (None, problem) for what cannot be split."""
    pos, size = 0, len(text)
    while pos < size:
        if text[pos].isspace():
            pos += 1
            continue
        if text[pos] == "'":
            label, pos = _quoted_label(text, pos)
            if label is None:
                yield None, "unterminated quoted label at %r" % text[pos:][:40]
                return
        else:
            end = pos
            while end < size and text[end] != "=" and not text[end].isspace():
                end += 1
            label, pos = text[pos:end], end
        if pos >= size or text[pos] != "=":
            yield None, "no '=' after label %r" % label[:40]
            while pos < size and not text[pos].isspace():  # skip the broken item
                pos += 1
            continue
        end = pos + 1
        while end < size and not text[end].isspace():
            end += 1
        yield label, text[pos + 1 : end]
        pos = end


def _quoted_label(text, pos):
    """(label, position after its closing quote) of a 'quoted' label; '' is a quote."""
    chars = []
    pos += 1
    while pos < len(text):
        if text[pos] == "'":
            if text[pos + 1 : pos + 2] == "'":
                chars.append("'")
                pos += 2
                continue
            return "".join(chars), pos + 1
        chars.append(text[pos])
        pos += 1
    return None, pos


def parse_perfdata(text):
    # type: (str) -> tuple[list, list]
    """Parse a plugin's perfdata: (items, warnings); never raises on any input.

    An item is a dict: label, value and unit (base units, see PERF_UNITS),
    warn and crit (``parse_range`` tuples or None), min and max (or None).
    What cannot be parsed is left out with a warning naming it.
    """
    items, warnings = [], []  # type: list, list
    for label, rest in _perf_tokens(text):
        if label is None:
            warnings.append("perfdata: %s" % rest)
            continue
        if len(items) >= MAX_PERF_ITEMS:
            warnings.append("perfdata: more than %d items; the rest ignored" % MAX_PERF_ITEMS)
            break
        try:
            item = _perf_item(label, rest)
        except (ValueError, OverflowError) as exc:
            warnings.append(("perfdata %r: %s" % (label[:40], exc))[:200])
            continue
        if item is not None:
            items.append(item)
    return items, warnings


def _perf_item(label, rest):
    """One ``label=value[UOM];warn;crit;min;max`` item (None: the value is U, unknown)."""
    if not label:
        raise ValueError("empty label")
    if len(label) > MAX_LABEL:
        raise ValueError("label longer than %d characters" % MAX_LABEL)
    fields = (rest.split(";") + [""] * 5)[:5]
    if fields[0] == "U":
        return None  # the plugin could not determine it: nothing to report
    match = _PERF_VALUE.match(fields[0])
    if match is None:
        raise ValueError("bad value %r" % fields[0][:40])
    number, uom = match.groups()
    if uom not in PERF_UNITS:
        raise ValueError("unknown unit %r" % uom[:20])
    unit, factor = PERF_UNITS[uom]
    value = float(number) * factor
    if not math.isfinite(value):
        raise ValueError("value out of range")
    return {
        "label": label,
        "value": value,
        "unit": unit,
        "warn": parse_range(fields[1], factor),
        "crit": parse_range(fields[2], factor),
        "min": _perf_bound(fields[3], factor),
        "max": _perf_bound(fields[4], factor),
    }


def _perf_bound(text, factor):
    """min or max: a number in base units, or None when not given."""
    text = text.strip()
    if not text:
        return None
    if not _PERF_BOUND.match(text):
        raise ValueError("bad min/max %r" % text[:40])
    return float(text) * factor


# ---------------------------------------------------------------- custom checks (Nagios plugins)

CHECKS_SUFFIX = ".checks"  # <script>.<collector>.checks: the collector's signed list
CACHE_SUFFIX = ".checks-cache"  # <script>.<collector>.checks-cache: results of every= checks
CHECKS_VERSION = 1
CHECK_STATES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
UNKNOWN = 3
MAX_CHECK_OUTPUT = 64 * 1024  # bytes of a plugin's stdout read; a flood is cut and killed
MAX_CHECK_TEXT = 1000  # characters of the first line kept as the check's text
MAX_CHECKS_FILE = 1 << 20
CHECK_MARGIN = 1.0  # seconds kept, before the probe's deadline, to seal and answer
CHECK_POLL = 0.05  # seconds between looks at a plugin that has stopped writing
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
ORPHAN_ROUNDS = 20  # kill-and-reap rounds: each can orphan one more level of a process tree


def checks_path(script, collector=None):
    # type: (str, str | None) -> str
    """The signed checks file of one collector beside the probe file ``script``."""
    return file_names(script, collector)[0][: -len(".key")] + CHECKS_SUFFIX


def checks_mac(key, body):
    # type: (bytes, bytes) -> str
    """The MAC that proves the collector holding ``key`` wrote the checks file ``body``."""
    return b64e(hmac.new(subkey(key, b"checks"), body, hashlib.sha256).digest())


def checks_file_text(key, plan):
    # type: (bytes, dict) -> bytes
    """The checks file: the plan as one JSON line, then its MAC (the collector writes it)."""
    body = json.dumps(plan, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return body + b"\n" + checks_mac(key, body).encode("ascii") + b"\n"


def read_checks(path, host, key):
    # type: (str, str, bytes) -> dict | None
    """The verified plan in the checks file ``path``, None when there is none.

    Raises UnsafeFile, OSError or ValueError (a file whose MAC does not verify
    with this host's key is refused: the probe runs only what the collector
    holding the key configured).
    """
    try:
        handle = open_private(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    with handle:
        text = handle.read(MAX_CHECKS_FILE + 1)
    lines = text.split("\n")
    if len(text) > MAX_CHECKS_FILE or len(lines) < 2:
        raise ValueError("not a checks file")
    body = lines[0].encode("utf-8")
    if not hmac.compare_digest(checks_mac(key, body), lines[1].strip()):
        raise ValueError("its MAC does not verify with this host's key (run upload)")
    plan = json.loads(lines[0])
    if not isinstance(plan, dict) or plan.get("v") != CHECKS_VERSION or plan.get("host") != host:
        raise ValueError("not a checks file for host %r" % host)
    return plan


def run_plan(plan, cache_path, started, deadline):
    # type: (dict, str | None, float, float | None) -> tuple[list, list, list]
    """Run the plan's checks in parallel: (samples, check results, warnings).

    ``deadline``: seconds after ``started`` (wall clock) by which the probe
    must answer; every check ends CHECK_MARGIN before it whatever its own timeout.
    """
    warnings = []  # type: list
    checks = [c for c in plan.get("checks", []) if _valid_check(c, warnings)]
    cache = _load_cache(cache_path, warnings)
    now = time.time()
    end = None if deadline is None else started + deadline - CHECK_MARGIN
    due, results = [], {}  # type: list, dict
    for check in checks:
        cached = cache.get(check["name"])
        if _fresh(cached, check, now):
            results[check["name"]] = cached
        else:
            due.append(check)
    ran = _run_checks(due, end)
    for index, check in enumerate(due):
        results[check["name"]] = dict(ran[index], argv=check["argv"])
    if cache_path is not None and any(c.get("every") for c in due):
        _save_cache(cache_path, dict((c["name"], results[c["name"]]) for c in checks), warnings)
    samples, reports = [], []  # type: list, list
    for check in checks:
        _check_samples(check["name"], results[check["name"]], samples, reports, warnings)
    specs = [t for t in plan.get("textfiles", []) if _valid_textfile(t, warnings)]
    if specs:
        found, problems = textfile_samples(specs)
        samples.extend(found)
        warnings.extend(problems)
    return samples, reports, warnings


def _valid_textfile(spec, warnings):
    """A textfile entry the probe can read: a directory and three integer limits."""
    ok = isinstance(spec, dict) and isinstance(spec.get("dir"), str)
    ok = ok and all(isinstance(spec.get(k), int) for k in ("files", "samples", "bytes"))
    if not ok:
        warnings.append("checks file: a textfile entry the probe cannot read: %r" % (spec,))
    return ok


def _valid_check(check, warnings):
    """A plan entry the probe can run: a name, a non-empty argv of strings, a timeout."""
    ok = (
        isinstance(check, dict)
        and isinstance(check.get("name"), str)
        and isinstance(check.get("argv"), list)
        and check["argv"]
        and all(isinstance(word, str) for word in check["argv"])
        and isinstance(check.get("timeout"), (int, float))
    )
    if not ok:
        warnings.append("checks file: an entry the probe cannot run: %r" % (check,))
    return ok


def _fresh(cached, check, now):
    """Whether a cached result of an ``every=`` check may be reported again."""
    every = check.get("every") or 0
    return (
        isinstance(cached, dict)
        and cached.get("argv") == check["argv"]
        and isinstance(cached.get("at"), (int, float))
        and 0 <= now - cached["at"] < every
    )


def _run_checks(checks, end):
    """Run ``checks`` in threads at once; their outcomes, in order."""
    outcomes = [None] * len(checks)  # type: list

    def work(index, check):
        timeout = float(check["timeout"])
        if end is not None:
            timeout = max(0.0, min(timeout, end - time.time()))
        outcomes[index] = run_check(check["argv"], timeout)

    threads = [
        threading.Thread(target=work, args=(i, c), name="check", daemon=True)
        for i, c in enumerate(checks)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()  # each ends by its own deadline (run_check kills what overruns)
    return outcomes


def run_check(argv, timeout):
    # type: (list, float) -> dict
    """Run one plugin (no shell) for at most ``timeout`` seconds: its outcome.

    {"status": 0-3, "output": stdout text (capped), "reason": why it is UNKNOWN
    beyond its own word or "", "at": start (unix s), "duration": seconds}.
    Its process group is killed when it ends, times out or floods, so a
    plugin that forks a daemon or hangs leaves nothing behind.
    """
    import subprocess  # only when there are checks: it costs the probe's start-up

    at, began = time.time(), time.monotonic()
    env = dict(os.environ, LC_ALL="C")  # numbers with a decimal point, English words
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    except OSError as exc:
        reason = "cannot run %s: %s" % (argv[0], exc.strerror or exc)
        return _outcome(UNKNOWN, "", reason, at, began)
    try:
        output, reason = _read_capped(proc, began + timeout, timeout)
    finally:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)  # what it forked, and itself if it overran
        if proc.stdout is not None:
            proc.stdout.close()
        proc.wait()
    if reason:
        return _outcome(UNKNOWN, output, reason, at, began)
    status = proc.returncode
    if status not in (0, 1, 2, 3):
        return _outcome(UNKNOWN, output, "exit status %d" % status, at, began)
    return _outcome(status, output, "", at, began)


def _outcome(status, output, reason, at, began):
    # type: (int, str, str, float, float) -> dict
    return {
        "status": status,
        "output": output,
        "reason": reason,
        "at": at,
        "duration": time.monotonic() - began,
    }


def _read_capped(proc, end, timeout):
    """(stdout text, reason it was cut or "") of a running plugin, until it exits or ``end``.

    Stops at the exit even if a child it forked still holds stdout open.
    """
    chunks, size = [], 0  # type: list, int
    fd = proc.stdout.fileno()
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return _text(chunks), "timed out after %gs" % round(timeout, 1)
        ready = select.select([fd], [], [], min(left, CHECK_POLL))[0]
        if ready:
            data = os.read(fd, 65536)
            if data:
                chunks.append(data)
                size += len(data)
                if size > MAX_CHECK_OUTPUT:
                    return _text(chunks), "output over %d bytes; cut" % MAX_CHECK_OUTPUT
                continue
            if proc.poll() is not None or _exited(proc, end):
                return _text(chunks), ""
            return _text(chunks), "timed out after %gs" % round(timeout, 1)
        if proc.poll() is not None:
            if select.select([fd], [], [], 0)[0]:
                continue  # what it wrote just before exiting
            return _text(chunks), ""


def _exited(proc, end):
    """Wait (to ``end``) for a plugin that closed its stdout to exit."""
    import subprocess

    try:
        proc.wait(max(0.0, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        return False
    return True


def _text(chunks):
    return b"".join(chunks)[:MAX_CHECK_OUTPUT].decode("utf-8", "replace")


def split_output(output):
    # type: (str) -> tuple[str, str]
    """A plugin's output as (first line's text, all perfdata), per the plugin API.

    ``TEXT | perfdata`` on the first line; more lines are long text, and
    anything after a ``|`` in them is more perfdata.
    """
    lines = output.splitlines() or [""]
    text, _, perf = lines[0].partition("|")
    more = [line.partition("|")[2].strip() for line in lines[1:] if "|" in line]
    return text.strip(), " ".join(part for part in [perf.strip(), *more] if part)


def _check_samples(name, result, samples, reports, warnings):
    """The samples and the report of one check's outcome."""
    status = result.get("status", UNKNOWN)
    text, perf = split_output(result.get("output", ""))
    reason = result.get("reason", "")
    if reason:
        text = "UNKNOWN: %s%s" % (reason, " (%s)" % text if text else "")
    elif not text:
        text = "%s: no output" % CHECK_STATES[status]
    labels = {"check": name}
    samples.append(["check_status", labels, float(status)])
    samples.append(["check_duration_seconds", labels, float(result.get("duration", 0.0))])
    items, problems = parse_perfdata(perf)
    warnings.extend("check %s: %s" % (name, problem) for problem in problems)
    for item in items:
        _perf_samples(name, item, samples)
    reports.append(
        {
            "name": name,
            "status": status,
            "text": text[:MAX_CHECK_TEXT],
            "at": result.get("at", 0.0),
            "duration": result.get("duration", 0.0),
        }
    )


def _perf_samples(name, item, samples):
    """check_perf for one perfdata item, and its thresholds' finite edges."""
    labels = {"check": name, "label": item["label"], "unit": item["unit"]}
    samples.append(["check_perf", labels, item["value"]])
    for which in ("warn", "crit"):
        bounds = item[which]
        if bounds is None:
            continue
        low, high, inside = bounds
        prefix = "inside_" if inside else ""
        for edge, value in (("low", low), ("high", high)):
            # "10" means 0..10: its implied 0 is no threshold anyone wrote
            if math.isfinite(value) and (inside or edge == "high" or value != 0):
                edged = dict(labels, edge=prefix + edge)
                samples.append(["check_perf_" + which, edged, value])


def _load_cache(path, warnings):
    """The cached results of ``every=`` checks by name ({} when none or unusable)."""
    if path is None:
        return {}
    try:
        with open_private(path) as handle:
            cache = json.load(handle)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            warnings.append("checks cache %s: %s" % (path, _describe(exc)))
        return {}
    except (UnsafeFile, ValueError) as exc:
        warnings.append(("checks cache %s: %s" % (path, exc))[:200])
        return {}
    return cache if isinstance(cache, dict) else {}


def _save_cache(path, cache, warnings):
    """Keep the results for the next run (atomically: temp file, then rename)."""
    try:
        _save_state(path, cache)
    except (OSError, ValueError, TypeError) as exc:
        warnings.append(("checks cache %s: %s" % (path, exc))[:200])


def custom_checks(me, collector, host, key, started, deadline):
    # type: (str, str | None, str, bytes, float, float | None) -> tuple[list, list, list]
    """Run the collector's checks for this run: (samples, check reports, warnings)."""
    path = checks_path(me, collector)
    try:
        plan = read_checks(path, host, key)
    except (UnsafeFile, OSError, ValueError) as exc:
        return [], [], [("checks file %s refused: %s" % (path, exc))[:300]]
    if plan is None:
        return [], [], []
    cache = path[: -len(CHECKS_SUFFIX)] + CACHE_SUFFIX
    adopting = plan.get("checks") and adopt_orphans()
    try:
        return run_plan(plan, cache, started, deadline)
    finally:
        if adopting:
            end_orphans()


def adopt_orphans():
    # type: () -> bool
    """Become the reaper of what the checks leave behind (Linux 3.4+): a daemon a plugin
    starts with setsid and a double fork leaves the plugin's process group, so killing
    the group misses it, but it is re-parented to this process, which ``end_orphans``
    then kills.  Only the probe's own process does this: its only children are plugins."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes  # only when there are checks: it costs the probe's start-up

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except Exception:  # no libc prctl (musl is fine; a stripped build is not): group kill only
        return False


def end_orphans():
    # type: () -> int
    """Kill and reap every process left as this one's child; how many there were.

    Bounded: a tree is killed a level a round (its children are re-parented here once
    their parent dies), and a process stuck in the kernel is left after a moment.
    """
    me, ended = os.getpid(), 0
    for _ in range(ORPHAN_ROUNDS):
        children = _children_of(me)
        if not children:
            break
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        _reap(children, time.monotonic() + 1.0)
        ended += len(children)
    return ended


def _children_of(parent):
    # type: (int) -> list
    """PIDs whose parent is ``parent``, from /proc/PID/stat (the field after ``(comm)``)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):  # it ended meanwhile
            continue
        if len(fields) > 1 and fields[1] == str(parent).encode("ascii"):
            found.append(int(name))
    return found


def _reap(pids, until):
    # type: (list, float) -> None
    left = set(pids)
    while left and time.monotonic() < until:
        for pid in list(left):
            try:
                done = os.waitpid(pid, os.WNOHANG)[0]
            except OSError:  # not ours (any more): nothing to reap
                done = pid
            if done:
                left.discard(pid)
        if left:
            time.sleep(0.01)


# ---------------------------------------------------------------- node_exporter textfiles

TEXTFILE_PREFIX = "textfile_"  # so a textfile metric can never shadow a built-in one
TEXTFILE_DEADLINE = 5.0  # seconds to read all textfile directories (one may be on NFS)
MAX_TEXTFILE_LABELS = 15  # the collector takes 16 labels, and a textfile's own names
MAX_VALUE = 2.0**63  # the collector refuses anything beyond a 64-bit counter
MAX_TEXTFILE_NAME = 128 - len(TEXTFILE_PREFIX)  # the collector takes names of 128 characters
MAX_TEXTFILE_LABEL_NAME = 64  # ... and label names of 64
MAX_TEXTFILE_SAMPLES = 5000  # in all directories: the collector takes 10000 samples a message
_PROM_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PROM_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_PROM_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def parse_prom(text, where="", seen=None):
    # type: (str, str, set | None) -> tuple[list, list]
    """Parse Prometheus text format: (samples, warnings); never raises on any input.

    Samples are [name, {labels}, value]; HELP, TYPE and comments are skipped,
    timestamps ignored, histogram and summary series kept as their own series.
    A line that cannot be parsed, a value that is not a finite number, or a
    series already seen (``seen``: shared between files) is a warning naming
    ``where``:line.
    """
    seen = set() if seen is None else seen
    samples, warnings = [], []  # type: list, list
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            name, labels, value = _prom_line(line)
        except ValueError as exc:
            warnings.append(("%s:%d: %s" % (where, number, exc))[:300])
            continue
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            warnings.append(
                ("%s:%d: duplicate series %s; the first kept" % (where, number, name))[:300]
            )
            continue
        seen.add(key)
        samples.append([name, labels, value])
    return samples, warnings


def _prom_line(line):
    """(name, labels, value) of one sample line; raises ValueError saying what is wrong."""
    match = _PROM_NAME.match(line)
    if match is None:
        raise ValueError("not a metric name: %r" % line[:40])
    name, pos = match.group(), match.end()
    if len(name) > MAX_TEXTFILE_NAME:
        raise ValueError("metric name longer than %d characters" % MAX_TEXTFILE_NAME)
    labels = {}  # type: dict
    if line[pos : pos + 1] == "{":
        labels, pos = _prom_labels(line, pos + 1)
    rest = line[pos:].split()
    if not rest or len(rest) > 2:
        raise ValueError("%s: expected a value (and a timestamp)" % name)
    try:
        value = float(rest[0])
    except ValueError:
        raise ValueError("%s: bad value %r" % (name, rest[0][:40])) from None
    if not math.isfinite(value) or abs(value) > MAX_VALUE:
        raise ValueError(
            "%s: value %s is not a finite number the collector keeps" % (name, rest[0][:40])
        )
    if len(labels) > MAX_TEXTFILE_LABELS:
        raise ValueError("%s: more than %d labels" % (name, MAX_TEXTFILE_LABELS))
    return name, labels, value


def _prom_labels(line, pos):
    """({labels}, position after the closing brace) from just after ``{``."""
    labels = {}  # type: dict
    while True:
        pos = _skip_space(line, pos)
        if line[pos : pos + 1] == "}":
            return labels, pos + 1
        label, value, pos = _prom_label(line, pos)
        if label in labels:
            raise ValueError("label %s twice" % label)
        labels[label] = value
        pos = _skip_space(line, pos)
        if line[pos : pos + 1] == ",":
            pos += 1
        elif line[pos : pos + 1] != "}":
            raise ValueError("expected , or } after label %s" % label)


def _skip_space(line, pos):
    while line[pos : pos + 1].isspace():
        pos += 1
    return pos


def _prom_label(line, pos):
    """(name, value, position after it) of one ``name="value"`` pair."""
    match = _PROM_LABEL.match(line, pos)
    if match is None:
        raise ValueError("bad label name at %r" % line[pos : pos + 20])
    label, pos = match.group(), _skip_space(line, match.end())
    if len(label) > MAX_TEXTFILE_LABEL_NAME:
        raise ValueError("label name longer than %d characters" % MAX_TEXTFILE_LABEL_NAME)
    if line[pos : pos + 1] == "=":
        pos = _skip_space(line, pos + 1)
        if line[pos : pos + 1] == '"':
            value, pos = _prom_string(line, pos + 1)
            return _checked_label(label, value, pos)
    raise ValueError('label %s: expected ="' % label)


def _checked_label(label, value, pos):
    if len(value) > MAX_LABEL:
        raise ValueError("label %s longer than %d characters" % (label, MAX_LABEL))
    return label, value, pos


def _prom_string(line, pos):
    """An escaped label value (\\\\, \\", \\n) and the position after its closing quote."""
    chars = []  # type: list
    while pos < len(line):
        char = line[pos]
        if char == '"':
            return "".join(chars), pos + 1
        if char == "\\":
            escaped = _PROM_ESCAPES.get(line[pos + 1 : pos + 2])
            if escaped is None:
                raise ValueError("bad escape %r in a label value" % line[pos : pos + 2])
            chars.append(escaped)
            pos += 2
            continue
        chars.append(char)
        pos += 1
    raise ValueError("unterminated label value")


def read_textfiles(spec, seen=None):
    # type: (dict, set | None) -> tuple[list, list]
    """The samples of the ``*.prom`` files in one textfile directory, prefixed, within limits.

    ``spec``: {"dir", "files", "samples", "bytes"} (limits on files, samples and
    bytes read from this directory).  Warnings name the file (and line).
    """
    directory = spec["dir"]
    seen = set() if seen is None else seen
    samples, warnings = [], []  # type: list, list
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".prom"))
    except OSError as exc:
        return [], ["textfile directory %s: %s" % (directory, exc.strerror or exc)]
    if len(names) > spec["files"]:
        warnings.append(
            "textfile directory %s: %d files, over the limit of %d; %s and later skipped"
            % (directory, len(names), spec["files"], names[spec["files"]])
        )
        names = names[: spec["files"]]
    budget = spec["bytes"]
    for name in names:
        path = os.path.join(directory, name)
        text, problem = _read_textfile(path, budget)
        if problem:
            warnings.append(problem)
        if text is None and problem.endswith(_OVER_BYTES):
            break  # the later files are not read at all
        if text is None:
            continue
        budget -= len(text.encode("utf-8", "replace"))
        found, problems = parse_prom(text, path, seen)
        warnings.extend(problems)
        room = spec["samples"] - len(samples)
        if len(found) > room:
            warnings.append(
                "%s: over the limit of %d samples per directory; the rest skipped"
                % (path, spec["samples"])
            )
            found = found[: max(0, room)]
        samples.extend([TEXTFILE_PREFIX + n.replace(":", "_"), ls, v] for n, ls, v in found)
        if len(samples) >= spec["samples"]:
            break  # the later files are not read at all
    return samples, warnings


_OVER_BYTES = ": over the limit of bytes read per directory; it and later files skipped"


def _read_textfile(path, budget):
    """(text or None, warning or ""): a regular file's text, at most ``budget`` bytes.

    O_NONBLOCK and a regular-file check: a FIFO named *.prom cannot hang the probe.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        return None, "%s: %s" % (path, exc.strerror or exc)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, "%s: not a regular file; skipped" % path
        data = handle.read(max(0, budget) + 1)
    if len(data) > budget:
        return None, "%s%s" % (path, _OVER_BYTES)
    return data.decode("utf-8", "replace"), ""


def textfile_samples(specs):
    # type: (list) -> tuple[list, list]
    """Every textfile directory's samples, read in a thread with a deadline."""
    seen = set()  # type: set
    samples, warnings = [], []  # type: list, list

    def read_all(_arg):
        for spec in specs:
            found, problems = read_textfiles(spec, seen)
            room = MAX_TEXTFILE_SAMPLES - len(samples)
            if len(found) > room:
                problems.append(
                    "textfile directory %s: over %d textfile samples in all; the rest skipped"
                    % (spec["dir"], MAX_TEXTFILE_SAMPLES)
                )
                found = found[:room]
            samples.extend(found)
            warnings.extend(problems)
        return True

    result = _run_with_deadline([(read_all, None)], TEXTFILE_DEADLINE)[0]
    if result is None:
        return [], ["textfile directories: no answer within %g s" % TEXTFILE_DEADLINE]
    if not result[0]:
        return [], ["textfile directories: %s" % _describe(result[1])]
    return list(samples), list(warnings)


# ---------------------------------------------------------------- main


def build_payload(samples, errors, started, now, checks=()):
    """The payload bytes sealed into the envelope (``checks``: reports of custom checks)."""
    payload = {
        "probe": PROBE_VERSION,
        "python": "%d.%d.%d" % sys.version_info[:3],
        "time": now,
        "duration": max(0.0, time.time() - started),
        "samples": samples,
        "errors": errors,
    }
    if checks:  # absent otherwise: a collector older than checks reads the message as before
        payload["checks"] = list(checks)
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")


def deadline_seconds(text):
    # type: (str | None) -> float | None
    """The deadline in ``text`` (NETMETRIX_DEADLINE) as float seconds, or None if unusable."""
    try:
        seconds = float(text or "")
    except ValueError:
        return None
    return seconds if 0 < seconds < float("inf") else None


def start_watchdog(seconds):
    # type: (float) -> threading.Timer
    """End this run when ``seconds`` have passed, even if the main thread never returns.

    A daemon thread, not SIGALRM: a signal handler runs only when the main
    thread gets back to Python code, which a hung statvfs never does.
    """
    timer = threading.Timer(seconds, _deadline_passed, args=(seconds,))
    timer.daemon = True
    timer.start()
    return timer


def _deadline_passed(seconds):
    # type: (float) -> None
    with contextlib.suppress(OSError):  # os.write: the stuck main thread may hold sys.stderr
        os.write(2, b"netmetrix probe: still running after its %gs deadline; ending\n" % seconds)
    with contextlib.suppress(OSError):
        # Our group is this run's alone when it is our session's (sshd starts one per
        # channel); under an interactive shell it is a job that may hold more.
        if os.getpgrp() == os.getsid(0):
            os.killpg(0, signal.SIGKILL)  # background children holding stdout too
    os._exit(EXIT_DEADLINE)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [WATCH_FLAG]:
        return watch_main(argv[1:])
    started = time.time()
    deadline = deadline_seconds(os.environ.get(DEADLINE_ENV))
    if deadline is not None:
        start_watchdog(deadline)
    if not 1 <= len(argv) <= 2 or len(argv[0]) != CHALLENGE_HEX:
        return _usage()
    challenge = argv[0]
    collector = argv[1] if len(argv) == 2 else None
    if collector is not None and not COLLECTOR_ID.match(collector):
        return _usage()
    me = os.path.abspath(__file__)
    opened = _open_files(me, collector)
    if isinstance(opened, int):
        return opened
    host, key = opened
    samples, errors = collect("/", file_names(me, collector)[1], started)
    extra, checks, warnings = custom_checks(me, collector, host, key, started, deadline)
    _answer(
        key, host, challenge, samples + _valid(extra, warnings), errors + warnings, started, checks
    )
    return 0


def _usage():
    # type: () -> int
    sys.stderr.write("usage: %s %s\n" % (sys.argv[0], USAGE))
    return EXIT_USAGE


def _open_files(me, collector):
    # type: (str, str | None) -> tuple[str, bytes] | int
    """(host, key) from the collector's key file, or the exit status after saying why not."""
    try:
        return load_files(me, collector)
    except UnsafeFile as exc:
        sys.stderr.write("%s%s\n" % (UNSAFE_PREFIX, exc))
        return EXIT_UNSAFE
    except (OSError, ValueError) as exc:
        key_path = file_names(me, collector)[0]
        sys.stderr.write("netmetrix probe: cannot read key %s: %s\n" % (key_path, exc))
        return EXIT_KEY


def _answer(key, host, challenge, samples, errors, started, checks=()):
    """Write one envelope line to stdout, at once (the collector is waiting for it)."""
    now = time.time()
    payload = build_payload(samples, errors, started, now, checks)
    sys.stdout.write(seal(key, host, challenge, payload, now) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- streaming (watch)

WATCH_FLAG = "--watch"
WATCH_USAGE = "--watch COLLECTOR, then one line per tick on stdin: CHALLENGE IDLE DEADLINE"
FIRST_LINE_WAIT = 60.0  # seconds to wait for the first request line
MAX_REQUEST = 256  # bytes of one request line; "<32 hex> <idle> <deadline>" is about 50
MAX_WAIT = 3 * 3600.0  # no request line may ask the probe to wait longer than this


class Request(object):
    """One tick's request: answer ``challenge`` within ``deadline`` seconds, then
    wait at most ``idle`` seconds for the next line before ending."""

    __slots__ = ("challenge", "deadline", "idle")

    def __init__(self, challenge, idle, deadline):
        # type: (str, float, float) -> None
        self.challenge = challenge
        self.idle = idle
        self.deadline = deadline


def parse_request(line):
    # type: (bytes) -> Request
    """Parse ``CHALLENGE IDLE DEADLINE`` (seconds); raises ValueError saying what is wrong."""
    words = line.decode("ascii").split()
    if len(words) < 3:
        raise ValueError("expected CHALLENGE IDLE DEADLINE")
    challenge = words[0]
    if len(challenge) != CHALLENGE_HEX or not all(c in "0123456789abcdef" for c in challenge):
        raise ValueError("challenge is not %d lowercase hex digits" % CHALLENGE_HEX)
    idle, deadline = float(words[1]), float(words[2])
    for value in (idle, deadline):
        if not 0 < value <= MAX_WAIT:
            raise ValueError("%r is not a number of seconds in (0, %g]" % (value, MAX_WAIT))
    return Request(challenge, idle, deadline)


class LineReader(object):
    """Lines from a file descriptor, each waited for at most a given time.

    select() and os.read() rather than sys.stdin: a buffered file object
    cannot say whether a read would block, and we must notice silence.
    """

    def __init__(self, fd, limit=MAX_REQUEST):
        # type: (int, int) -> None
        self.fd = fd
        self.limit = limit
        self.buffer = b""
        self.eof = False

    def next_line(self, timeout):
        # type: (float) -> bytes | None
        """The next line without its newline; None at EOF or after ``timeout`` seconds
        of silence; ValueError for a line over the limit."""
        end = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if len(self.buffer) > self.limit:
                raise ValueError("request line over %d bytes" % self.limit)
            left = end - time.monotonic()
            if self.eof or left <= 0 or not _readable(self.fd, left):
                return None
            chunk = os.read(self.fd, 4096)
            self.eof = not chunk
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        if len(line) > self.limit:
            raise ValueError("request line over %d bytes" % self.limit)
        return line


def _readable(fd, timeout):
    # type: (int, float) -> bool
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    except InterruptedError:  # a signal; Python >= 3.5 retries, older ones raise
        return False


class KeyWatch(object):
    """The collector's key, read again when ``upload`` replaced the key file.

    A streaming probe lives for days; a key rotated by upload must take
    effect without waiting for the session to end.
    """

    def __init__(self, script, collector):
        # type: (str, str) -> None
        self.script = script
        self.collector = collector
        self.path = file_names(script, collector)[0]
        self.seen = None  # type: tuple | None
        self.host = ""
        self.key = b""

    def current(self):
        # type: () -> tuple[str, bytes] | int
        """(host, key), or the exit status after saying why there is none."""
        try:
            st = os.lstat(self.path)
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)  # type: tuple | None
        except OSError:
            seen = None
        if seen is not None and seen == self.seen:
            return self.host, self.key
        opened = _open_files(self.script, self.collector)
        if isinstance(opened, int):
            return opened
        self.host, self.key = opened
        self.seen = seen
        return opened


def watch_main(argv):
    """Streaming mode: answer one sealed envelope per request line on stdin.

    Ends by itself, status 0, at EOF (the collector closed the session) or
    when no request line came within the last one's IDLE seconds (the
    collector died without closing it); each tick has its own watchdog.
    """
    if len(argv) != 1 or not COLLECTOR_ID.match(argv[0]):
        sys.stderr.write("usage: %s %s\n" % (sys.argv[0], WATCH_USAGE))
        return EXIT_USAGE
    me = os.path.abspath(__file__)
    keys = KeyWatch(me, argv[0])
    opened = keys.current()
    if isinstance(opened, int):
        return opened
    state_path = file_names(me, argv[0])[1]
    reader = LineReader(sys.stdin.fileno())
    memory = {}  # type: dict
    wait = FIRST_LINE_WAIT
    while True:
        try:
            line = reader.next_line(wait)
            request = None if line is None else parse_request(line)
        except ValueError as exc:
            sys.stderr.write("netmetrix probe: bad request: %s\n" % exc)
            return EXIT_USAGE
        if request is None:
            if not reader.eof:
                sys.stderr.write("netmetrix probe: no request for %gs; ending\n" % wait)
            return 0
        status = _tick(keys, request, state_path, memory)
        if status:
            return status
        wait = request.idle


def _tick(keys, request, state_path, memory):
    """Answer one request under its own deadline; non-zero: the status to end with."""
    watchdog = start_watchdog(request.deadline)
    try:
        started = time.time()
        opened = keys.current()
        if isinstance(opened, int):
            return opened
        host, key = opened
        samples, errors = collect("/", state_path, started, memory=memory)
        extra, checks, warnings = custom_checks(
            keys.script, keys.collector, host, key, started, request.deadline
        )
        samples += _valid(extra, warnings)
        _answer(key, host, request.challenge, samples, errors + warnings, started, checks)
        return 0
    finally:
        watchdog.cancel()


if __name__ == "__main__":
    sys.exit(main())
