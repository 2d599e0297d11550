"""The probe's metrics: parsers and collect() on real /proc captures, rates, psutil parity.

tests/data/captures/ holds real captures of what the probe reads, made by
tests/capture_proc.py (``sudo python3 tests/capture_proc.py all --what ...``;
it needs root and namespaces, so the suite never runs it; its docstring says
how each capture is built):

vm/          the machine the project's CI runs on, a Firecracker microVM, as it was;
container/   a container built as Docker builds one, captured from inside it;
many/        before/ and after/: a machine with 13 interfaces and 10 loop
             filesystems built in namespaces, with known UDP traffic and 8 MiB
             of writes between the two.

Each holds proc/ (the files the probe reads, and one directory per process) and
capture.json (what, when, and the statvfs of every local mount, which answers
the probe's statvfs calls here).  The values the probe must report for each are
written out below, worked out by hand from the capture's files (the comments say
which fields), or, for disk space, by df's arithmetic on capture.json; never by
the probe's own helpers.  A new capture means working them out again.  What no
capture here has (partitions, NVMe, device-mapper, NFS, old kernels) is fed to
the parsers as inline synthetic lines, named as such.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AnyStr, TypedDict

import psutil
import pytest
import sshd
from hypothesis import given
from hypothesis import strategies as st

from netmetrix import envelope, probe

CAPTURES = Path(__file__).parent / "data" / "captures"  # see the module docstring
NAMES = {metric[0] for metric in probe.METRICS}
RATES = {"cpu_percent"} | {name for name in NAMES if name.endswith("_per_sec")}


@pytest.fixture(autouse=True)
def short_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep fallback rate sampling short; tests never rely on its length."""
    monkeypatch.setattr(probe, "SAMPLE_WINDOW", 0.01)


def by_key(samples: list[Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(metric, sorted labels): value}, failing on a duplicated series."""
    table = {}
    for metric, labels, value in samples:
        key = (metric, tuple(sorted(labels.items())))
        assert key not in table, f"duplicate series {key}"
        table[key] = value
    return table


def labelled(samples: list[Any], metric: str, label: str) -> dict[str, float]:
    return {labels[label]: value for name, labels, value in samples if name == metric}


def single(samples: list[Any], metric: str) -> float:
    values = [value for name, _labels, value in samples if name == metric]
    assert len(values) == 1, f"{metric}: {values}"
    return values[0]


# ---------------------------------------------------------------- catalogue


def test_catalogue_lists_each_metric_once_with_unit_kind_and_help() -> None:
    names = [metric[0] for metric in probe.METRICS]
    assert sorted(names) == sorted(
        (
            "uptime_sec",
            "cpu_percent",
            "mem_percent",
            "load1",
            "load5",
            "load15",
            "cpu_count",
            "mem_total_bytes",
            "mem_available_bytes",
            "swap_percent",
            "disk_percent",
            "disk_used_bytes",
            "disk_total_bytes",
            "net_rx_bytes_per_sec",
            "net_tx_bytes_per_sec",
            "disk_read_bytes_per_sec",
            "disk_write_bytes_per_sec",
            "procs_total",
            "procs_running",
            "probe_duration_sec",
        )
    )
    for name, unit, kind, help_text in probe.METRICS:
        assert isinstance(unit, str)
        assert kind == ("rate" if name in RATES else "gauge"), name
        assert help_text.endswith("."), name


# ---------------------------------------------------------------- this host


@pytest.fixture
def frozen_statvfs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answer each path's statvfs once, so the probe and psutil see the same instant."""
    real, seen = os.statvfs, {}

    def statvfs(path: str) -> os.statvfs_result:
        if path not in seen:
            seen[path] = real(path)
        return seen[path]

    monkeypatch.setattr(os, "statvfs", statvfs)


@pytest.mark.usefixtures("frozen_statvfs")
def test_host_emits_every_metric_and_agrees_with_psutil(tmp_path: Path) -> None:
    load_before = os.getloadavg()
    samples, errors = probe.collect("/", str(tmp_path / "state"))
    load_after = os.getloadavg()

    assert errors == []
    assert {sample[0] for sample in samples} == NAMES
    assert single(samples, "cpu_count") == psutil.cpu_count()
    assert abs(single(samples, "uptime_sec") - (time.time() - psutil.boot_time())) < 2
    memory = psutil.virtual_memory()
    assert single(samples, "mem_total_bytes") == memory.total
    assert abs(single(samples, "mem_percent") - memory.percent) < 2
    assert abs(single(samples, "swap_percent") - psutil.swap_memory().percent) < 2
    load = (single(samples, "load1"), single(samples, "load5"), single(samples, "load15"))
    assert load in (load_before, load_after)  # the kernel updates it every 5 s
    assert abs(single(samples, "procs_total") - len(psutil.pids())) < 20
    assert single(samples, "procs_running") >= 1  # the probe itself runs
    assert 0 <= single(samples, "cpu_percent") <= 100
    assert 0 < single(samples, "probe_duration_sec") < 5


def test_every_series_has_the_label_names_the_catalogue_gives(tmp_path: Path) -> None:
    """config check validates rules' label names against METRIC_LABELS: keep it true."""
    samples, _ = probe.collect("/", str(tmp_path / "state"))
    for metric, labels, _value in samples:
        assert tuple(sorted(labels)) == probe.METRIC_LABELS.get(metric, ()), metric
    assert set(probe.METRIC_LABELS) <= NAMES


@pytest.mark.usefixtures("frozen_statvfs")
def test_host_disks_match_psutil_disk_usage(tmp_path: Path) -> None:
    samples, _ = probe.collect("/", str(tmp_path / "state"))
    totals = labelled(samples, "disk_total_bytes", "mount")
    assert "/" in totals
    assert set(totals) <= {part.mountpoint for part in psutil.disk_partitions(all=True)}
    for mount, total in totals.items():
        usage = psutil.disk_usage(mount)
        assert total == usage.total, mount
        assert labelled(samples, "disk_used_bytes", "mount")[mount] == usage.used, mount
        percent = labelled(samples, "disk_percent", "mount")[mount]
        assert abs(percent - usage.percent) <= 0.05 + 1e-9, mount  # psutil rounds to 0.1


def test_host_interfaces_and_disks_match_psutil(tmp_path: Path) -> None:
    samples, _ = probe.collect("/", str(tmp_path / "state"))
    interfaces = set(labelled(samples, "net_rx_bytes_per_sec", "interface"))
    assert interfaces == set(psutil.net_io_counters(pernic=True)) - {"lo"}
    assert interfaces == set(labelled(samples, "net_tx_bytes_per_sec", "interface"))
    devices = set(labelled(samples, "disk_read_bytes_per_sec", "device"))
    assert devices
    assert devices <= set(psutil.disk_io_counters(perdisk=True))
    assert not any(name.startswith(("loop", "ram", "zram")) for name in devices)
    for name, _labels, value in samples:
        if name in RATES:
            assert value >= 0, name


# ---------------------------------------------------------------- the captures


def capture(name: str) -> tuple[str, dict[str, Any]]:
    """(proc_root, capture.json) of one capture under tests/data/captures."""
    root = CAPTURES / name
    return str(root), json.loads((root / "capture.json").read_text())


def read(name: str, file: str) -> str:
    return (CAPTURES / name / "proc" / file).read_text()


Statvfs = Callable[[str], os.statvfs_result]


def captured_statvfs(root: str, meta: dict[str, Any]) -> Statvfs:
    """A statvfs answering the probe's calls under ``root`` from the capture's statvfs table."""

    def statvfs(path: str) -> os.statvfs_result:
        relative = os.path.relpath(path, root)
        fields = meta["statvfs"].get("/" if relative == "." else "/" + relative)
        if not isinstance(fields, list):  # not captured, or statvfs failed at capture time
            raise FileNotFoundError(2, "No such file or directory", path)
        return os.statvfs_result(fields)

    return statvfs


def df(meta: dict[str, Any], mountpoint: str) -> tuple[int, int, float]:
    """(size, used, use %) from capture.json as df works them out, not as the probe does.

    Used is blocks - bfree; use % is of used + bavail, the space a user can fill
    (root's reserve left out), so it is not used / size.
    """
    _bsize, frsize, blocks, bfree, bavail = meta["statvfs"][mountpoint][:5]
    used = (blocks - bfree) * frsize
    return blocks * frsize, used, 100 * used / (used + bavail * frsize)


def disk_rows(meta: dict[str, Any], mountpoints: list[str]) -> dict[Any, float]:
    """The disk_* series the probe must send for ``mountpoints``, by df()."""
    rows: dict[Any, float] = {}
    for mountpoint in mountpoints:
        labels = (("mount", mountpoint),)
        total, used, percent = df(meta, mountpoint)
        rows["disk_total_bytes", labels] = total
        rows["disk_used_bytes", labels] = used
        rows["disk_percent", labels] = percent
    return rows


def rate_rows(
    interfaces: dict[str, tuple[float, float]], devices: dict[str, tuple[float, float]]
) -> dict[Any, float]:
    """The *_per_sec series for {interface: (rx, tx)} and {device: (read, write)}."""
    rows: dict[Any, float] = {}
    for name, (rx, tx) in interfaces.items():
        rows["net_rx_bytes_per_sec", (("interface", name),)] = rx
        rows["net_tx_bytes_per_sec", (("interface", name),)] = tx
    for name, (read_rate, write_rate) in devices.items():
        rows["disk_read_bytes_per_sec", (("device", name),)] = read_rate
        rows["disk_write_bytes_per_sec", (("device", name),)] = write_rate
    return rows


def collect_capture(
    monkeypatch: pytest.MonkeyPatch, name: str, state: Path | None = None
) -> dict[Any, float]:
    """collect() on one capture, statvfs answered from it: {(metric, labels): value}.

    Also checks there were no errors and takes out probe_duration_sec (the only
    value that is this run's, not the capture's).
    """
    root, meta = capture(name)
    monkeypatch.setattr(os, "statvfs", captured_statvfs(root, meta))
    samples, errors = probe.collect(root, None if state is None else str(state), meta["time"])
    assert errors == []
    table = by_key(samples)
    assert 0 < table.pop(("probe_duration_sec", ())) < 5
    return table


def test_captures_are_what_they_say() -> None:
    """What each capture shows of its machine, so a wrong one is noticed, not trusted."""
    _, vm = capture("vm")
    assert vm["what"].startswith("a Firecracker microVM")
    assert sorted(os.listdir(CAPTURES / "container/proc")) == [
        "1",  # the capture itself: pid 1 of its own pid namespace
        "25",  # the container's second process
        *("diskstats", "loadavg", "meminfo", "mounts", "net", "stat", "uptime"),
    ]
    assert read("container", "1/comm") == "python3\n"
    assert read("container", "mounts").startswith("overlay / overlay ")
    assert len(read("many/after", "net/dev").splitlines()) == 2 + 14  # headers, lo and 13 more
    loops = [line for line in read("many/after", "mounts").splitlines() if "/dev/loop" in line]
    assert len(loops) == 11  # 10 filesystems and a bind mount


# ---------------------------------------------------------------- parsers, on the captures


def test_parse_small_files() -> None:
    assert probe.parse_uptime(read("vm", "uptime")) == 11557.38
    assert probe.parse_loadavg(read("vm", "loadavg")) == (6.4, 4.68, 2.95)
    parsed = probe.parse_stat(read("vm", "stat"))
    assert parsed == {
        "cpu": [1472305, 1, 415686, 379441, 4669, 0, 10252, 28107, 0, 0],
        "cpu_count": 2,  # lines cpu0 and cpu1
        "procs_running": 7,
    }
    total = 1472305 + 1 + 415686 + 379441 + 4669 + 0 + 10252 + 28107  # user..steal
    assert probe.cpu_counter(parsed["cpu"]) == [total, total - 379441 - 4669]  # less idle, iowait


def test_cpu_counter_counts_guest_time_once() -> None:
    """guest and guest_nice are inside user and nice already (a synthetic line: no guests here)."""
    assert probe.cpu_counter([10000, 200, 3000, 80000, 1000, 50, 150, 100, 400, 0]) == [
        94500,  # user..steal; guest (400) is not added again
        13500,  # less idle (80000) and iowait (1000)
    ]


def test_parse_meminfo() -> None:
    info = probe.parse_meminfo(read("vm", "meminfo"))
    assert info["MemTotal"] == 24684092 * 1024
    assert info["Active(file)"] == 653144 * 1024
    assert info["HugePages_Total"] == 0  # a count, not kB
    assert probe.memory_samples(info) == [
        ["mem_total_bytes", {}, 24684092 * 1024],
        ["mem_available_bytes", {}, 23446276 * 1024],  # MemAvailable
        ["mem_percent", {}, pytest.approx(100 * (24684092 - 23446276) / 24684092)],
        ["swap_percent", {}, 0.0],  # SwapTotal 0: no swap, and no division by zero
    ]


@pytest.mark.parametrize(
    ("meminfo", "available", "swap"),
    [
        # no MemAvailable (kernel < 3.14): free + buffers + cached + reclaimable slab
        (
            {"MemTotal": 1000, "MemFree": 100, "Buffers": 50, "Cached": 200, "SReclaimable": 50},
            400,
            0.0,
        ),
        # LXC: available above total is nonsense, use free
        ({"MemTotal": 1000, "MemFree": 300, "MemAvailable": 5000, "SwapTotal": 0}, 300, 0.0),
        ({"MemTotal": 1000, "MemAvailable": 1000, "SwapTotal": 400, "SwapFree": 100}, 1000, 75.0),
    ],
)
def test_memory_edge_cases(meminfo: dict[str, int], available: int, swap: float) -> None:
    got = by_key(probe.memory_samples(meminfo))
    assert got["mem_available_bytes", ()] == available
    assert got["mem_percent", ()] == 100.0 * (1000 - available) / 1000
    assert got["swap_percent", ()] == swap


def test_parse_net_dev_skips_loopback() -> None:
    assert probe.parse_net_dev(read("vm", "net/dev")) == {
        "eth0": [1557413068, 2475083],
        "ifb0": [0, 0],
        "ifb1": [0, 0],
    }  # lo (1752417515 both ways) is left out
    assert probe.parse_net_dev(read("container", "net/dev")) == {"eth0": [89732, 34364]}


def test_parse_net_dev_of_many_interfaces() -> None:
    assert probe.parse_net_dev(read("many/after", "net/dev")) == {
        "eth0": [109658, 521408],  # its tx carries vxlan100's packets too
        "eth1": [22364, 102464],
        "eth2": [31994, 152144],
        "eth3": [41624, 201824],
        "ens1f0": [51254, 251504],
        "ens1f1": [60884, 301184],
        "enp129s0f1np1": [70514, 350864],  # longer than the 6 characters names are padded to
        "vethb1a2c3d": [80144, 400598],  # a port of br0
        "br0": [78352, 400598],
        "vxlan100": [87772, 445072],
        "docker0": [0, 0],
        "ifb0": [0, 0],
        "tap0": [0, 0],
    }


def test_parse_net_dev_of_other_kernels() -> None:
    """Synthetic lines for what no capture here has: a VLAN name, and no space after the colon.

    Kernels before 2.6 printed ``ppp0:9876543210`` once a counter filled the column.
    """
    text = (
        "Inter-|   Receive  |  Transmit\n face |bytes packets|bytes packets\n"
        "eth0.100:    5000      40    0    0    0     0          0         0"
        "     7000      50    0    0    0     0       0          0\n"
        " ppp0:9876543210 1000 0 0 0 0 0 0 1234567890 900 0 0 0 0 0 0\n"
        "   lo0: 5 0 0 0 0 0 0 0 5 0 0 0 0 0 0 0\n"
    )
    assert probe.parse_net_dev(text) == {
        "eth0.100": [5000, 7000],
        "ppp0": [9876543210, 1234567890],
    }


def test_parse_diskstats_keeps_whole_disks() -> None:
    got = probe.parse_diskstats(read("vm", "diskstats"))
    assert got == {"vda": [10990570 * 512, 41896904 * 512]}  # sectors read (6th), written (10th)
    # loop0-loop7 and zram0 are left out; so are many/'s ten loop devices
    assert probe.parse_diskstats(read("many/after", "diskstats")) == {
        "vda": [10990826 * 512, 42072624 * 512]
    }


def test_parse_diskstats_of_other_hardware() -> None:
    """Synthetic lines for disks no capture here has (the VM has one virtio disk, no dm or md).

    Partitions go, and only they: dm-10 is not a partition of dm-1, nor
    mmcblk0boot0 of mmcblk0.  Lines of 14 fields (kernels before 4.18: sda2,
    the dm lines), 18 (4.18: sda) and 20 (5.5 and later) all parse.
    """
    text = """\
   8       0 sda 29398 6845 2141226 7566 4376 13104 755112 3973 0 4220 11999 3338 68 87888 434
   8       1 sda1 300 0 6000 40 10 0 80 5 0 30 45 0 0 0 0 0 0
   8       2 sda2 29000 6845 2135000 7500 4366 13104 755032 3968 0 4190 11954
  11       0 sr0 12 0 96 3 0 0 0 0 0 3 3 0 0 0 0 0 0
 259       0 nvme0n1 5000 10 400000 900 7000 20 900000 1200 0 1500 2100 0 0 0 0 0 0
 259       1 nvme0n1p1 4900 10 399000 890 6990 20 899000 1190 0 1490 2080 0 0 0 0 0 0
 253       0 dm-0 100 0 2000 10 200 0 4000 20 0 30 30
 253       1 dm-1 100 0 1000 10 200 0 2000 20 0 30 30
 253      10 dm-10 300 0 3000 10 400 0 6000 20 0 30 30
   9     127 md127 10 0 80 1 20 0 160 2 0 3 3 0 0 0 0 0 0
 179       0 mmcblk0 60 0 480 5 30 0 240 4 0 9 9 0 0 0 0 0 0
 179       1 mmcblk0p1 50 0 400 4 25 0 200 3 0 7 7 0 0 0 0 0 0
 179       8 mmcblk0boot0 8 0 64 1 0 0 0 0 0 1 1 0 0 0 0 0 0
   1       0 ram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   2       0 fd0 1 0 8 1 0 0 0 0 0 1 1
"""
    got = probe.parse_diskstats(text)
    assert {name: [r // 512, w // 512] for name, (r, w) in got.items()} == {
        "sda": [2141226, 755112],
        "sr0": [96, 0],
        "nvme0n1": [400000, 900000],
        "dm-0": [2000, 4000],
        "dm-1": [1000, 2000],
        "dm-10": [3000, 6000],
        "md127": [80, 160],
        "mmcblk0": [480, 240],
        "mmcblk0boot0": [64, 0],
    }


@pytest.mark.parametrize(
    ("names", "whole"),
    [
        (["sda", "sda1", "sda15", "sdb"], ["sda", "sdb"]),
        (["nvme0n1", "nvme0n1p1", "nvme0n10"], ["nvme0n1", "nvme0n10"]),
        (["dm-1", "dm-10", "dm-1p1"], ["dm-1", "dm-10"]),
        (["loop0", "ram7", "zram0", "fd0", "sr0"], ["sr0"]),
        (["sda1"], ["sda1"]),  # a partition whose disk is unknown stays
        (["mmcblk0", "mmcblk0p2", "mmcblk0boot0"], ["mmcblk0", "mmcblk0boot0"]),
    ],
)
def test_whole_disks(names: list[str], whole: list[str]) -> None:
    assert probe.whole_disks(names) == whole


def test_parse_mounts_of_the_vm_and_the_container() -> None:
    # devtmpfs, tmpfs, devpts, proc, sysfs, cgroup and cgroup2 hold no disk space
    assert probe.parse_mounts(read("vm", "mounts")) == [("/dev/vda", "/", "ext4")]
    assert probe.parse_mounts(read("container", "mounts")) == [
        ("overlay", "/", "overlay"),
        # the same disk at /etc/hosts, /etc/hostname and /etc/resolv.conf: reported once
        ("/dev/vda", "/capture", "ext4"),
    ]  # mqueue, and Docker's masks over /proc (tmpfs, devtmpfs, proc) are not disks


MANY_MOUNTS = [
    ("/dev/vda", "/", "ext4"),
    ("/dev/loop0", "/home", "ext4"),
    ("/dev/loop7", "/mnt/archive", "ext2"),
    ("/dev/loop9", "/mnt/usb", "ext4"),  # read-only
    ("/dev/loop1", "/opt", "ext4"),
    ("/dev/loop5", "/srv/backup", "ext3"),
    ("/dev/loop4", "/srv/data", "ext4"),  # also at /mnt/export: a bind mount, reported once
    ("/dev/loop6", "/srv/media library", "ext4"),  # \040 in the file
    ("/dev/loop3", "/var/lib/docker", "ext4"),
    ("overlay", "/var/lib/docker/overlay2/9c1e4f/merged", "overlay"),
    ("/dev/loop2", "/var/lib/postgresql", "ext4"),
]  # /mnt/scratch (loop8) is hidden by a tmpfs mounted over it


def test_parse_mounts_of_many_disks() -> None:
    assert probe.parse_mounts(read("many/after", "mounts")) == MANY_MOUNTS


def test_parse_mounts_of_other_hosts() -> None:
    """Synthetic lines for mounts no capture here has: a desktop with snaps, NFS, SMB, sshfs, LXC.

    rootfs under / is hidden and pseudo anyway; squashfs images are always
    full; autofs and lxcfs are no disks; remote and FUSE mounts are kept (the
    probe gives their statvfs a deadline).
    """
    text = """\
rootfs / rootfs rw 0 0
/dev/sda2 / ext4 rw,relatime,errors=remount-ro 0 0
/dev/sda1 /boot/efi vfat rw,relatime,fmask=0077,dmask=0077 0 0
/dev/loop3 /snap/core20/2105 squashfs ro,nodev,relatime 0 0
systemd-1 /net autofs rw,relatime,fd=29,pgrp=1,timeout=0,minproto=5,maxproto=5,direct 0 0
server:/export /mnt/nfs nfs4 rw,relatime,vers=4.2,hard,proto=tcp 0 0
//fs/share /mnt/smb cifs rw,relatime,vers=3.1.1 0 0
alice@host:/ /mnt/ssh fuse.sshfs rw,nosuid,nodev,relatime,user_id=1000 0 0
lxcfs /var/lib/lxcfs fuse.lxcfs rw,nosuid,nodev,relatime 0 0
"""
    assert probe.parse_mounts(text) == [
        ("/dev/sda2", "/", "ext4"),
        ("/dev/sda1", "/boot/efi", "vfat"),
        ("server:/export", "/mnt/nfs", "nfs4"),
        ("//fs/share", "/mnt/smb", "cifs"),
        ("alice@host:/", "/mnt/ssh", "fuse.sshfs"),
    ]


def test_overlays_of_several_containers_are_all_kept() -> None:
    entries = [("overlay", "/a/merged", "overlay"), ("overlay", "/b/merged", "overlay")]
    assert probe.select_mounts(entries) == entries


@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z][A-Za-z0-9_()]{0,20}", fullmatch=True),
        st.integers(min_value=0, max_value=2**50),
    )
)
def test_meminfo_round_trip(fields: dict[str, int]) -> None:
    text = "".join(f"{name}: {value:>12} kB\n" for name, value in fields.items())
    assert probe.parse_meminfo(text) == {name: value * 1024 for name, value in fields.items()}


interface_names = st.from_regex(r"[a-z][a-z0-9._-]{0,14}", fullmatch=True).filter(
    lambda name: not probe.is_loopback(name)
)
counter = st.integers(min_value=0, max_value=2**64 - 1)


@given(st.dictionaries(interface_names, st.tuples(counter, counter)))
def test_net_dev_round_trip(interfaces: dict[str, tuple[int, int]]) -> None:
    header = "Inter-|   Receive  |  Transmit\n face |bytes packets|bytes packets\n"
    lines = [
        f"{name:>6}: {rx} 1 2 3 4 5 6 7 {tx} 9 10 11 12 13 14 15\n"
        for name, (rx, tx) in interfaces.items()
    ]
    assert probe.parse_net_dev(
        header + "    lo: 5 0 0 0 0 0 0 0 5 0 0 0 0 0 0 0\n" + "".join(lines)
    ) == {name: list(pair) for name, pair in interfaces.items()}


disk_names = st.from_regex(
    r"sd[a-z]{1,2}|nvme[0-9]n[0-9]|md[0-9]{1,3}|dm-[0-9]{1,2}|mmcblk[0-9]", fullmatch=True
)


@given(st.dictionaries(disk_names, st.sets(st.integers(min_value=1, max_value=20), max_size=4)))
def test_whole_disks_drops_exactly_the_partitions(disks: dict[str, set[int]]) -> None:
    names = set(disks)
    for disk, numbers in disks.items():
        separator = "p" if disk[-1].isdigit() else ""
        names |= {f"{disk}{separator}{number}" for number in numbers}
    assert probe.whole_disks(names) == sorted(disks)


@given(st.text(alphabet="ab /\t\\\u00e9", min_size=1))
def test_mount_paths_with_spaces_round_trip(name: str) -> None:
    mountpoint = "/" + name
    escaped = "".join(f"\\{ord(char):03o}" if char in " \t\n\\" else char for char in mountpoint)
    line = f"/dev/sdz9 {escaped} ext4 rw 0 0\n"
    assert probe.parse_mounts(line) == [("/dev/sdz9", mountpoint, "ext4")]


# ---------------------------------------------------------------- collect(), on the captures


def fake_statvfs(
    root: Path,
    table: Mapping[str, tuple[int, int, int] | OSError],
    fallback: Statvfs | None = None,
) -> Statvfs:
    """A statvfs answering for root-relative paths from ``table`` of (blocks, bfree, bavail).

    Paths not in ``table`` go to ``fallback``, or are missing.
    """

    def statvfs(path: str) -> os.statvfs_result:
        relative = os.path.relpath(path, root)
        got = table.get("/" if relative == "." else "/" + relative)
        if isinstance(got, Exception):
            raise got
        if got is None and fallback is not None:
            return fallback(path)
        if got is None:
            raise FileNotFoundError(2, "No such file or directory", path)
        blocks, bfree, bavail = got
        return os.statvfs_result((4096, 4096, blocks, bfree, bavail, 0, 0, 0, 0, 255))

    return statvfs


def test_collect_vm(monkeypatch: pytest.MonkeyPatch) -> None:
    table = collect_capture(monkeypatch, "vm")
    _, meta = capture("vm")
    assert table == pytest.approx(
        {
            ("uptime_sec", ()): 11557.38,  # uptime, first field
            ("load1", ()): 6.4,  # loadavg
            ("load5", ()): 4.68,
            ("load15", ()): 2.95,
            ("cpu_count", ()): 2,  # stat: cpu0 and cpu1
            ("procs_running", ()): 7,  # stat
            ("procs_total", ()): 139,  # the numeric directories in proc/
            ("mem_total_bytes", ()): 24684092 * 1024,  # meminfo: MemTotal
            ("mem_available_bytes", ()): 23446276 * 1024,  # MemAvailable
            ("mem_percent", ()): 100 * (24684092 - 23446276) / 24684092,
            ("swap_percent", ()): 0.0,  # SwapTotal 0
            # no previous run: rates are sampled over a tree that does not change
            ("cpu_percent", ()): 0.0,
            **rate_rows({"eth0": (0, 0), "ifb0": (0, 0), "ifb1": (0, 0)}, {"vda": (0, 0)}),
            **disk_rows(meta, ["/"]),
        }
    )
    # /: 66053021 blocks of 4096 bytes, 60061279 free, 20605986 of them free to users:
    # 5991742 used of the 26597728 a user may fill, 22.5%, not 9.1% of the size
    assert table["disk_used_bytes", (("mount", "/"),)] == 5991742 * 4096
    assert round(table["disk_percent", (("mount", "/"),)], 2) == 22.53


def test_collect_container(monkeypatch: pytest.MonkeyPatch) -> None:
    """From inside a container: its own processes and interfaces, the host's memory and disks."""
    table = collect_capture(monkeypatch, "container")
    _, meta = capture("container")
    assert table == pytest.approx(
        {
            ("uptime_sec", ()): 11559.43,  # the host's: a pid namespace has no uptime of its own
            ("load1", ()): 6.4,
            ("load5", ()): 4.68,
            ("load15", ()): 2.95,
            ("cpu_count", ()): 2,
            ("procs_running", ()): 7,  # the host's too (stat)
            ("procs_total", ()): 2,  # but only the container's processes: 1 and 25
            ("mem_total_bytes", ()): 24684092 * 1024,  # no lxcfs: the host's meminfo
            ("mem_available_bytes", ()): 23433868 * 1024,
            ("mem_percent", ()): 100 * (24684092 - 23433868) / 24684092,
            ("swap_percent", ()): 0.0,
            ("cpu_percent", ()): 0.0,
            **rate_rows({"eth0": (0, 0)}, {"vda": (0, 0)}),  # diskstats is the host's
            **disk_rows(meta, ["/", "/capture"]),  # the overlay, and the volume
        }
    )
    assert table["disk_total_bytes", (("mount", "/"),)] == 66053021 * 4096  # the host's disk


# many/: what moved between before/ and after/, by hand from their files: (rx, tx) bytes from
# net/dev, (read, written) sectors from diskstats' 6th and 10th fields
MANY_NET_BYTES = {
    "eth0": (109658 - 0, 521408 - 0),
    "eth1": (22364 - 0, 102464 - 0),
    "eth2": (31994 - 0, 152144 - 0),
    "eth3": (41624 - 0, 201824 - 0),
    "ens1f0": (51254 - 0, 251504 - 0),
    "ens1f1": (60884 - 0, 301184 - 0),
    "enp129s0f1np1": (70514 - 0, 350864 - 0),
    "vethb1a2c3d": (80144 - 0, 400598 - 54),
    "br0": (78352 - 0, 400598 - 54),
    "vxlan100": (87772 - 0, 445072 - 0),
    "docker0": (0, 0),
    "ifb0": (0, 0),
    "tap0": (0, 0),
}
MANY_VDA_SECTORS = (10990826 - 10990746, 42072624 - 42001840)


def test_collect_many_disks_and_interfaces_with_rates_between_two_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = tmp_path / "client.py.state"
    collect_capture(monkeypatch, "many/before", state)
    table = collect_capture(monkeypatch, "many/after", state)
    _, before = capture("many/before")
    _, after = capture("many/after")
    elapsed = after["time"] - before["time"]  # what each run was stamped with
    read_sectors, written_sectors = MANY_VDA_SECTORS
    assert table == pytest.approx(
        {
            ("uptime_sec", ()): 11563.55,
            ("load1", ()): 6.37,
            ("load5", ()): 4.7,
            ("load15", ()): 2.97,
            ("cpu_count", ()): 2,
            ("procs_running", ()): 7,
            ("procs_total", ()): 163,
            ("mem_total_bytes", ()): 24684092 * 1024,
            ("mem_available_bytes", ()): 23415352 * 1024,
            ("mem_percent", ()): 100 * (24684092 - 23415352) / 24684092,
            ("swap_percent", ()): 0.0,
            # stat: user, system and softirq moved by 290 + 64 + 4 jiffies; idle and
            # iowait did not (load 6.4 on 2 CPUs): busy all along
            ("cpu_percent", ()): 100.0,
            **rate_rows(
                {name: (rx / elapsed, tx / elapsed) for name, (rx, tx) in MANY_NET_BYTES.items()},
                {"vda": (read_sectors * 512 / elapsed, written_sectors * 512 / elapsed)},
            ),  # lo, and loop0-loop9 under the ten filesystems, are left out
            **disk_rows(after, [mountpoint for _, mountpoint, _ in MANY_MOUNTS]),
        }
    )
    # /srv/media library: 22542 of 25844 1-KiB blocks used, 1009 free to users
    assert round(table["disk_percent", (("mount", "/srv/media library"),)], 1) == 95.7


def test_many_carried_the_traffic_and_writes_it_was_built_with() -> None:
    """The counters moved by at least what capture_proc.py sent and wrote between the two."""
    _, after = capture("many/after")
    generated = after["generated"]
    for name, sent in generated["udp"].items():
        rx, tx = MANY_NET_BYTES[name]
        assert rx >= sent["rx_payload"], name
        assert tx >= sent["tx_payload"], name
    assert generated["written_to_disk"] == "vda"
    assert MANY_VDA_SECTORS[1] * 512 >= generated["written_bytes"]


def test_collect_reports_unreadable_and_sizeless_mounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The VM's capture with mounts it lacks: remote ones, one refused, one sizeless, one gone."""
    shutil.copytree(CAPTURES / "vm", tmp_path, dirs_exist_ok=True)
    with (tmp_path / "proc/mounts").open("a") as mounts:
        mounts.write(
            "server:/export /mnt/nfs nfs4 rw,hard 0 0\n"
            "//fs/share /mnt/smb cifs rw 0 0\n"
            "alice@host:/ /mnt/ssh fuse.sshfs rw 0 0\n"
            "overlay /var/lib/docker/overlay2/4f1c/merged overlay rw 0 0\n"
        )
    table: dict[str, tuple[int, int, int] | OSError] = {
        "/mnt/nfs": (2000, 1500, 1500),  # network mounts are read too (under a deadline)
        "/mnt/smb": PermissionError(13, "Permission denied"),
        "/mnt/ssh": (0, 0, 0),  # FUSE filesystems without a size are left out
    }
    _, meta = capture("vm")
    fallback = captured_statvfs(str(tmp_path), meta)
    monkeypatch.setattr(os, "statvfs", fake_statvfs(tmp_path, table, fallback))
    samples, errors = probe.collect(str(tmp_path))

    assert sorted(errors) == [
        "disk /mnt/smb: [Errno 13] Permission denied",
        f"disk /var/lib/docker/overlay2/4f1c/merged: [Errno 2] No such file or directory: "
        f"'{tmp_path}/var/lib/docker/overlay2/4f1c/merged'",
    ]
    assert labelled(samples, "disk_total_bytes", "mount") == {
        "/": 66053021 * 4096,
        "/mnt/nfs": 2000 * 4096,
    }
    assert labelled(samples, "disk_used_bytes", "mount")["/mnt/nfs"] == 500 * 4096
    assert labelled(samples, "disk_percent", "mount")["/mnt/nfs"] == 25.0


def test_one_broken_source_does_not_stop_the_others(tmp_path: Path) -> None:
    shutil.copytree(CAPTURES / "vm/proc", tmp_path / "proc")
    (tmp_path / "proc/meminfo").unlink()
    (tmp_path / "proc/net/dev").write_text("Inter-|\n face |\n  eth0: 1 2 x\n")  # short: skipped
    (tmp_path / "proc/diskstats").write_text("   8 0 sda one two three four five six seven\n")
    (tmp_path / "proc/mounts").write_text("/dev/sda2 / ext4 rw 0 0\n")
    samples, errors = probe.collect(str(tmp_path))
    assert [error.split(":")[0] for error in errors] == ["meminfo", "diskstats"]
    assert "No such file" in errors[0]
    assert "ValueError" in errors[1]
    emitted = {sample[0] for sample in samples}
    assert emitted == NAMES - {
        "mem_total_bytes",
        "mem_available_bytes",
        "mem_percent",
        "swap_percent",
        "net_rx_bytes_per_sec",
        "net_tx_bytes_per_sec",
        "disk_read_bytes_per_sec",
        "disk_write_bytes_per_sec",
    }


def test_overlong_mount_paths_are_reported_not_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(CAPTURES / "vm/proc", tmp_path / "proc")
    deep = "/" + "d" * 300
    (tmp_path / "proc/mounts").write_text(
        f"/dev/sda2 / ext4 rw 0 0\n/dev/sdb1 {deep} ext4 rw 0 0\n"
    )
    monkeypatch.setattr(os, "statvfs", fake_statvfs(tmp_path, {"/": (10, 5, 5), deep: (10, 5, 5)}))
    samples, errors = probe.collect(str(tmp_path))
    assert set(labelled(samples, "disk_total_bytes", "mount")) == {"/"}
    assert errors == [f"disk /{'d' * 59}...: mount path over 256 characters"]


# ---------------------------------------------------------------- rates and state


class Counters(TypedDict):
    """What ``write_tree`` puts in its /proc: uptime, cpu jiffies, eth0 and sda counters."""

    uptime: float
    user: int
    idle: int
    eth0: tuple[int, int]  # bytes received, sent
    sda: tuple[int, int]  # sectors read, written


def write_tree(
    root: Path, *, uptime: float, user: int, idle: int, eth0: tuple[int, int], sda: tuple[int, int]
) -> str:
    """A small /proc tree with the given counters; returns it as a proc_root."""
    (root / "proc/net").mkdir(parents=True, exist_ok=True)
    for name in ("loadavg", "meminfo"):
        shutil.copy(CAPTURES / "vm/proc" / name, root / "proc" / name)
    (root / "proc/uptime").write_text(f"{uptime} 0.0\n")
    (root / "proc/stat").write_text(
        f"cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 {user} 0 0 {idle} 0 0 0 0 0 0\nprocs_running 1\n"
    )
    (root / "proc/net/dev").write_text(
        "Inter-|\n face |\n    lo: 9 0 0 0 0 0 0 0 9 0 0 0 0 0 0 0\n"
        f"  eth0: {eth0[0]} 0 0 0 0 0 0 0 {eth0[1]} 0 0 0 0 0 0 0\n"
    )
    (root / "proc/diskstats").write_text(
        f"   8 0 sda 0 0 {sda[0]} 0 0 0 {sda[1]} 0 0 0 0\n"
        f"   8 1 sda1 0 0 {sda[0]} 0 0 0 {sda[1]} 0 0 0 0\n"  # a partition: not reported
    )
    (root / "proc/mounts").write_text("/dev/sda1 / ext4 rw 0 0\n")
    return str(root)


def rate_table(samples: list[Any]) -> dict[str, float]:
    return {name: value for name, _labels, value in samples if name in RATES}


BEFORE: Counters = {"uptime": 100.0, "user": 1000, "idle": 3000, "eth0": (1000, 0), "sda": (100, 0)}
AFTER: Counters = {
    "uptime": 110.0,
    "user": 1250,
    "idle": 3750,
    "eth0": (11000, 5000),
    "sda": (120, 40),
}
QUIET = dict.fromkeys(RATES, 0.0)  # what a short sample of an unchanging tree gives


def test_second_run_measures_rates_since_the_first(tmp_path: Path) -> None:
    state = tmp_path / "client.py.state"
    first, errors = probe.collect(write_tree(tmp_path / "a", **BEFORE), str(state), now=1000.0)
    assert errors == []
    assert rate_table(first) == QUIET
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert json.loads(state.read_text())["time"] == 1000.0

    second, errors = probe.collect(write_tree(tmp_path / "b", **AFTER), str(state), now=1010.0)
    assert errors == []
    assert rate_table(second) == {
        "cpu_percent": 25.0,  # 250 busy of 1000 jiffies
        "net_rx_bytes_per_sec": 1000.0,  # 10000 bytes in 10 s
        "net_tx_bytes_per_sec": 500.0,
        "disk_read_bytes_per_sec": 1024.0,  # 20 sectors of 512 bytes in 10 s
        "disk_write_bytes_per_sec": 2048.0,
    }
    assert json.loads(state.read_text())["time"] == 1010.0
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("case", "after", "now"),
    [
        ("stale", AFTER, 1000.0 + 3601),
        ("clock went back", AFTER, 999.0),
        ("counters went back", {**AFTER, "eth0": (999, 5000)}, 1010.0),
        ("rebooted", {**AFTER, "uptime": 5.0}, 1010.0),
    ],
)
def test_unusable_previous_run_falls_back_to_sampling(
    tmp_path: Path, case: str, after: dict[str, Any], now: float
) -> None:
    state = str(tmp_path / "state")
    probe.collect(write_tree(tmp_path / "a", **BEFORE), state, now=1000.0)
    samples, errors = probe.collect(write_tree(tmp_path / "b", **after), state, now=now)
    assert errors == [], case
    assert rate_table(samples) == QUIET, case
    assert json.loads(Path(state).read_text())["time"] == now, case


@pytest.mark.parametrize(
    "content",
    [
        '{"v": 1, "kind": "linux", "time": 990, "uptime": 1, "counters": '
        '{"cpu": {"all": [NaN, NaN]}, "net": {"eth0": [0, 0]}, "disk": {"sda": [0, 0]}}}',
        "{not json",
        "[]",
        '{"v": 1}',
        '{"v": 1, "kind": "linux", "time": "x", "counters": 3}',
        '{"v": 1, "kind": "linux", "time": 990, "counters": {"cpu": {"all": "ab"}}}',
    ],
)
def test_corrupt_state_falls_back_and_is_replaced(tmp_path: Path, content: str) -> None:
    state = tmp_path / "state"
    state.write_text(content)
    samples, errors = probe.collect(write_tree(tmp_path / "a", **AFTER), str(state), now=1000.0)
    assert errors == []
    assert rate_table(samples) == QUIET
    assert json.loads(state.read_text())["counters"]["net"] == {"eth0": [11000, 5000]}


def test_rates_leave_out_series_without_a_baseline() -> None:
    before = {"cpu": {"all": [100, 50]}, "net": {"eth0": [10, 10]}}
    after = {
        "cpu": {"all": [100, 60]},  # no time passed: 0%, not a division by zero
        "net": {"eth0": [5, 30], "eth1": [1, 1]},  # rx went back; eth1 is new
        "disk": {"sda": [0, 0]},
    }
    assert probe.rates(before, after, 2.0) == [
        ["cpu_percent", {}, 0.0],
        ["net_tx_bytes_per_sec", {"interface": "eth0"}, 10.0],
    ]
    assert probe.rates(before, after, 0.0) == []


def test_unwritable_state_is_an_error_not_a_failure(tmp_path: Path) -> None:
    state = tmp_path / "missing-dir" / "state"
    samples, errors = probe.collect(write_tree(tmp_path / "a", **BEFORE), str(state), now=1000.0)
    assert rate_table(samples) == QUIET
    assert len(errors) == 1
    assert errors[0].startswith(f"state {state}: [Errno 2] No such file or directory")


# ---------------------------------------------------------------- hung network mounts


def test_hung_network_mount_does_not_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(write_tree(tmp_path, **BEFORE))
    (root / "proc/mounts").write_text(
        "/dev/sda1 / ext4 rw 0 0\nfiler:/home /home nfs rw,hard 0 0\n"
    )
    hung, release, real = str(root / "home"), threading.Event(), os.statvfs

    def statvfs(path: str) -> os.statvfs_result:
        if path == hung:
            release.wait(30)  # a dead NFS server
        return real(str(root))

    monkeypatch.setattr(os, "statvfs", statvfs)
    monkeypatch.setattr(probe, "REMOTE_DEADLINE", 0.2)
    try:
        started = time.monotonic()
        samples, errors = probe.collect(str(root))
        assert time.monotonic() - started < 2
    finally:
        release.set()
        for thread in threading.enumerate():
            if thread.name == "statvfs":
                thread.join(5)
    assert errors == ["disk /home (nfs): no answer within 0.2 s"]
    assert set(labelled(samples, "disk_total_bytes", "mount")) == {"/"}


# ---------------------------------------------------------------- other platforms


def test_without_proc_psutil_gives_every_metric(tmp_path: Path) -> None:
    samples, errors = probe.collect(str(tmp_path), str(tmp_path / "state"))
    assert errors == []
    assert {sample[0] for sample in samples} == NAMES
    assert single(samples, "cpu_count") == psutil.cpu_count()
    assert abs(single(samples, "mem_percent") - psutil.virtual_memory().percent) < 2
    assert "/" in labelled(samples, "disk_total_bytes", "mount")
    assert json.loads((tmp_path / "state").read_text())["kind"] == "psutil"


def test_without_proc_or_psutil_reports_what_the_stdlib_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(probe, "_import_psutil", lambda: None)
    samples, errors = probe.collect(str(tmp_path), str(tmp_path / "state"))
    assert {sample[0] for sample in samples} == {
        "load1",
        "load5",
        "load15",
        "cpu_count",
        "disk_total_bytes",
        "disk_used_bytes",
        "disk_percent",
        "probe_duration_sec",
    }
    assert labelled(samples, "disk_total_bytes", "mount") == {"/": psutil.disk_usage("/").total}
    assert errors == [
        "uptime, memory, swap and processes: need /proc or psutil",
        "cpu_percent and *_per_sec rates: need /proc or psutil",
    ]


def write_key(path: Path, text: str, mode: int = 0o600) -> Path:
    """A key file as upload leaves it: mode 0600 whatever the umask."""
    path.write_text(text)
    path.chmod(mode)
    return path


BLOCK_PSUTIL = r"""
import runpy, sys

class BlockPsutil:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "psutil":
            sys.stderr.write("psutil import attempted\n")
            raise ImportError("psutil is blocked")

sys.meta_path.insert(0, BlockPsutil())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_probe_script_runs_without_psutil(tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    shutil.copy(probe.__file__, script)
    key = envelope.new_key()
    write_key(tmp_path / "client.py.key", probe.key_file_text("f4", key))
    for run in range(2):  # the second run measures rates from the first's state
        challenge = envelope.new_challenge()
        done = subprocess.run(
            [sys.executable, "-I", "-c", BLOCK_PSUTIL, str(script), challenge],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, ""), run
        message = envelope.open_envelope(
            envelope.find_envelope(done.stdout),
            keys={probe.key_id(key): key},
            host="f4",
            challenge=challenge,
        )
        assert {sample.metric for sample in message.samples} == NAMES
        assert message.errors == ()
    assert stat.S_IMODE((tmp_path / "client.py.state").stat().st_mode) == 0o600


def test_probe_source_runs_on_python_36() -> None:
    vermin = shutil.which("vermin", path=os.path.dirname(sys.executable)) or shutil.which("vermin")
    if vermin is None:
        pytest.skip("vermin is not installed")
    done = subprocess.run(
        [
            vermin,
            "-q",
            "--no-tips",
            "--violations",
            "-t=3.6-",
            "--eval-annotations",
            probe.__file__,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------- files another user controls (#11)


def unsafe_reason(path: Path, secret: bool = False) -> str:
    """probe.open_private's refusal for ``path`` (the test fails if there is none)."""
    with pytest.raises(probe.UnsafeFile) as caught:
        probe.open_private(str(path), secret=secret).close()
    assert caught.value.path == str(path)
    assert str(caught.value) == f"{path}: {caught.value.reason}"
    return caught.value.reason


def test_private_files_are_read(tmp_path: Path) -> None:
    key = envelope.new_key()
    path = write_key(tmp_path / "client.py.key", probe.key_file_text("f4", key))
    assert probe.read_key(str(path)) == ("f4", key)
    state = tmp_path / "client.py.state"
    state.write_text("{}")
    state.chmod(0o644)  # readable is fine for the state: it holds counters, not secrets
    with probe.open_private(str(state)) as handle:
        assert handle.read() == "{}"


@pytest.mark.parametrize(
    ("mode", "secret", "reason"),
    [
        (0o620, False, "writable by group/others (mode 0620)"),
        (0o602, False, "writable by group/others (mode 0602)"),
        (0o640, True, "readable or writable by group/others (mode 0640)"),
        (0o604, True, "readable or writable by group/others (mode 0604)"),
    ],
    ids=["state-0620", "state-0602", "key-0640", "key-0604"],
)
def test_files_others_can_change_are_refused(
    tmp_path: Path, mode: int, secret: bool, reason: str
) -> None:
    path = tmp_path / "file"
    path.write_text("{}")
    path.chmod(mode)
    assert unsafe_reason(path, secret) == reason


def test_files_of_another_user_are_refused(tmp_path: Path, test_user: sshd.User) -> None:
    """As root the tests own every file: chown one to the unprivileged test user instead."""
    path = write_key(tmp_path / "client.py.key", probe.key_file_text("f4", envelope.new_key()))
    os.chown(path, test_user.uid, test_user.gid)
    expected = f"owned by uid {test_user.uid}, not by uid {os.geteuid()} that runs the probe"
    assert unsafe_reason(path, secret=True) == expected
    with pytest.raises(probe.UnsafeFile, match="owned by uid"):
        probe.read_key(str(path))


def test_symlinks_are_refused_not_followed(tmp_path: Path) -> None:
    target = write_key(tmp_path / "real.key", probe.key_file_text("f4", envelope.new_key()))
    link = tmp_path / "client.py.key"
    link.symlink_to(target)
    assert unsafe_reason(link, secret=True) == "is a symbolic link"
    with pytest.raises(probe.UnsafeFile, match="is a symbolic link"):
        probe.check_private_path(str(link))


def test_a_planted_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "client.py.state"
    os.mkfifo(fifo, 0o600)
    assert unsafe_reason(fifo) == "is not a regular file"  # opening it did not wait for a writer


def test_load_files_checks_script_key_and_state(tmp_path: Path, test_user: sshd.User) -> None:
    script = tmp_path / "client.py"
    shutil.copy(probe.__file__, script)
    key = envelope.new_key()
    write_key(tmp_path / "client.py.key", probe.key_file_text("f4", key))
    assert probe.load_files(str(script)) == ("f4", key)  # no state yet: a first run

    state = tmp_path / "client.py.state"
    state.write_text("{}")
    os.chown(state, test_user.uid, test_user.gid)
    with pytest.raises(probe.UnsafeFile) as caught:
        probe.load_files(str(script))
    assert caught.value.path == str(state)
    state.unlink()

    script.chmod(0o775)
    with pytest.raises(probe.UnsafeFile) as caught:
        probe.load_files(str(script))
    assert str(caught.value) == f"{script}: writable by group/others (mode 0775)"


def test_a_planted_state_gives_no_rates(tmp_path: Path, test_user: sshd.User) -> None:
    """Even past load_files (a file swapped in between), collect makes up no rates from it."""
    state = tmp_path / "client.py.state"
    probe.collect(write_tree(tmp_path / "a", **BEFORE), str(state), now=1000.0)
    planted = state.read_text()
    os.chown(state, test_user.uid, test_user.gid)
    samples, errors = probe.collect(write_tree(tmp_path / "b", **AFTER), str(state), now=1010.0)
    assert rate_table(samples) == {}
    assert errors == [
        f"rates: UnsafeFile: {state}: owned by uid {test_user.uid},"
        f" not by uid {os.geteuid()} that runs the probe"
    ]
    assert state.read_text() == planted  # left alone, not trusted and not overwritten


def test_saving_state_replaces_a_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("not yours")
    state = tmp_path / "client.py.state"
    state.symlink_to(target)
    probe._save_state(str(state), {"v": probe.STATE_VERSION})
    assert target.read_text() == "not yours"
    assert not state.is_symlink()
    assert stat.S_IMODE(state.stat().st_mode) == 0o600


@pytest.mark.parametrize("attack", ["another user's", "symlink", "group-writable"])
def test_probe_refuses_a_planted_state_file(
    tmp_path: Path, test_user: sshd.User, attack: str
) -> None:
    script = tmp_path / "client.py"
    shutil.copy(probe.__file__, script)
    write_key(tmp_path / "client.py.key", probe.key_file_text("f4", envelope.new_key()))
    state = tmp_path / "client.py.state"
    reason = {
        "another user's": f"owned by uid {test_user.uid}, not by uid {os.geteuid()} that runs"
        " the probe",
        "symlink": "is a symbolic link",
        "group-writable": "writable by group/others (mode 0664)",
    }[attack]
    if attack == "symlink":
        (tmp_path / "forged").write_text("{}")
        state.symlink_to(tmp_path / "forged")
    else:
        state.write_text("{}")
        state.chmod(0o664 if attack == "group-writable" else 0o644)
        if attack == "another user's":
            os.chown(state, test_user.uid, test_user.gid)
    done = subprocess.run(
        [sys.executable, str(script), envelope.new_challenge()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (probe.EXIT_UNSAFE, "")
    assert done.stderr == f"{probe.UNSAFE_PREFIX}{state}: {reason}\n"


# ---------------------------------------------------------------- deadline (#10)

HUNG = """\
import os, subprocess, sys, time
# A child holding the probe's stdout, as a stray child of a host's python wrapper would
# (-I: without this hook, or it would start a child of its own).
subprocess.Popen([sys.executable, "-I", "-c", "import time; time.sleep(1000)", {marker!r}])
def _hung(path):
    time.sleep(1000)  # a local mount whose disk or server no longer answers
os.statvfs = _hung
"""


def _hung_probe(tmp_path: Path, marker: str) -> tuple[list[str], dict[str, str]]:
    """The probe, with a sitecustomize that hangs its statvfs: (command, environment)."""
    script = tmp_path / "client.py"
    shutil.copy(probe.__file__, script)
    script.chmod(0o700)  # private, as upload makes them: the probe refuses anything else
    key = tmp_path / "client.py.key"
    key.write_text(probe.key_file_text("f4", envelope.new_key()))
    key.chmod(0o600)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HUNG.format(marker=marker))
    env = {**os.environ, "PYTHONPATH": str(hook), probe.DEADLINE_ENV: "1"}
    return [sys.executable, str(script), envelope.new_challenge()], env


def _marked(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if marker in " ".join(process.info["cmdline"] or ()):
            found.append(process)
    return found


def _kill(process: subprocess.Popen[AnyStr], marker: str) -> None:
    """Clean up by PID what the test started, even when it failed."""
    if process.poll() is None:
        process.kill()
        process.wait()
    for child in _marked(marker):
        with contextlib.suppress(psutil.Error):
            child.kill()


def test_watchdog_ends_a_hung_probe_and_its_process_group(tmp_path: Path) -> None:
    marker = f"nmx-hung-probe-{os.getpid()}-{time.monotonic_ns()}"
    command, env = _hung_probe(tmp_path, marker)
    hung = subprocess.Popen(  # a session of its own, as sshd gives every exec channel
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # Returns only once nothing holds stdout: the child went with the probe.
        out, err = hung.communicate(timeout=60)
    finally:
        _kill(hung, marker)
    assert hung.returncode == -signal.SIGKILL
    assert (out, err) == ("", "netmetrix probe: still running after its 1s deadline; ending\n")
    assert _marked(marker) == []


def test_watchdog_run_by_hand_ends_only_the_probe(tmp_path: Path) -> None:
    """In a process group that is not its session's (a shell's job), the group is spared."""
    marker = f"nmx-hand-probe-{os.getpid()}-{time.monotonic_ns()}"
    command, env = _hung_probe(tmp_path, marker)
    with (tmp_path / "out").open("w") as out, (tmp_path / "err").open("w") as err:
        hung = subprocess.Popen(command, env=env, stdout=out, stderr=err, process_group=0)
    try:
        assert hung.wait(timeout=60) == probe.EXIT_DEADLINE
        assert len(_marked(marker)) == 1  # not the watchdog's to kill
    finally:
        _kill(hung, marker)
    assert (tmp_path / "err").read_text().endswith("after its 1s deadline; ending\n")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("27", 27.0),
        ("1.25", 1.25),
        (None, None),
        ("", None),
        ("soon", None),
        ("0", None),
        ("-3", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_deadline_from_the_environment(text: str | None, seconds: float | None) -> None:
    assert probe.deadline_seconds(text) == seconds


# ---------------------------------------------------------------- streaming mode (#13)


def test_streaming_rates_cover_the_previous_tick_kept_in_memory(tmp_path: Path) -> None:
    state = tmp_path / "client.py.state"
    memory: dict[str, Any] = {}
    first, _ = probe.collect(write_tree(tmp_path / "a", **BEFORE), str(state), 1000.0, memory)
    second, errors = probe.collect(write_tree(tmp_path / "b", **AFTER), str(state), 1010.0, memory)
    assert errors == []
    assert rate_table(first) == QUIET
    assert rate_table(second)["cpu_percent"] == 25.0
    assert rate_table(second)["net_rx_bytes_per_sec"] == 1000.0
    assert not state.exists()  # no disk write per tick
    assert memory["time"] == 1010.0


def test_streaming_first_tick_reads_the_state_file(tmp_path: Path) -> None:
    state = str(tmp_path / "client.py.state")
    probe.collect(write_tree(tmp_path / "a", **BEFORE), state, now=1000.0)  # an execute run
    memory: dict[str, Any] = {}
    samples, _ = probe.collect(write_tree(tmp_path / "b", **AFTER), state, 1010.0, memory)
    assert rate_table(samples)["disk_write_bytes_per_sec"] == 2048.0


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"abc 30 10", "challenge is not 32"),
        (b"A" * 32 + b" 30 10", "challenge is not 32"),
        (b"a" * 32 + b" 30", "expected CHALLENGE IDLE DEADLINE"),
        (b"a" * 32 + b" 0 10", "is not a number of seconds"),
        (b"a" * 32 + b" 30 nan", "is not a number of seconds"),
        (b"a" * 32 + b" 30 1e9", "is not a number of seconds"),
        (b"a" * 32 + b" x 10", "could not convert"),
    ],
)
def test_request_lines_are_checked(line: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        probe.parse_request(line)


@dataclass
class Streaming:
    """A streaming probe in a subprocess, fed request lines on a pipe."""

    process: subprocess.Popen[bytes]
    key: bytes

    def ask(self, challenge: str, idle: float = 30, deadline: float = 20) -> envelope.Message:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{challenge} {idle:g} {deadline:g}\n".encode())
        self.process.stdin.flush()
        line = self.process.stdout.readline().decode()
        keys = {probe.key_id(self.key): self.key}
        return envelope.open_envelope(line.strip(), keys=keys, host="f4", challenge=challenge)

    def end(self, timeout: float = 30) -> tuple[int, str]:
        assert self.process.stderr is not None
        status = self.process.wait(timeout=timeout)
        return status, self.process.stderr.read().decode()


@pytest.fixture
def streaming(tmp_path: Path) -> Iterator[Streaming]:
    script = tmp_path / "client.py"
    shutil.copy(probe.__file__, script)
    key = envelope.new_key()
    write_key(tmp_path / "client.py.c1.key", probe.key_file_text("f4", key))
    process = subprocess.Popen(
        [sys.executable, "-I", str(script), "--watch", "c1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield Streaming(process, key)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def test_streaming_probe_answers_each_challenge_and_ends_at_eof(
    streaming: Streaming, tmp_path: Path
) -> None:
    challenges = [envelope.new_challenge() for _ in range(3)]
    messages = [streaming.ask(challenge) for challenge in challenges]
    assert all({s.metric for s in m.samples} >= {"cpu_percent", "uptime_sec"} for m in messages)
    assert [m.errors for m in messages] == [(), (), ()]
    assert not (tmp_path / "client.py.c1.state").exists()
    assert streaming.process.stdin is not None
    streaming.process.stdin.close()
    assert streaming.end() == (0, "")


def test_streaming_probe_ends_when_the_collector_falls_silent(streaming: Streaming) -> None:
    streaming.ask(envelope.new_challenge(), idle=0.5)
    status, stderr = streaming.end()  # stdin stays open: only the silence ends it
    assert status == 0
    assert "no request for 0.5s; ending" in stderr


def test_streaming_probe_refuses_a_bad_request(streaming: Streaming) -> None:
    assert streaming.process.stdin is not None
    streaming.process.stdin.write(b"hello\n")
    streaming.process.stdin.flush()
    status, stderr = streaming.end()
    assert status == probe.EXIT_USAGE
    assert "bad request: expected CHALLENGE IDLE DEADLINE" in stderr


def test_streaming_probe_reads_a_replaced_key(streaming: Streaming, tmp_path: Path) -> None:
    streaming.ask(envelope.new_challenge())
    new_key = envelope.new_key()
    temp = write_key(tmp_path / "new.key", probe.key_file_text("f4", new_key))
    temp.replace(tmp_path / "client.py.c1.key")  # as upload does: a new file, renamed
    streaming.key = new_key
    message = streaming.ask(envelope.new_challenge())
    assert message.samples


def test_streaming_probe_without_a_collector_id_says_usage(tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    shutil.copy(probe.__file__, script)
    done = subprocess.run(
        [sys.executable, "-I", str(script), "--watch"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == probe.EXIT_USAGE
    assert "--watch COLLECTOR" in done.stderr
