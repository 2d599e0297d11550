"""The probe's metrics: parsers on captured /proc files, rates and state, psutil parity."""

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
from pathlib import Path
from typing import Any

import psutil
import pytest
import sshd
from hypothesis import given
from hypothesis import strategies as st

from netmetrix import envelope, probe

DATA = Path(__file__).parent / "data"  # DATA/proc is a captured /proc tree
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


# ---------------------------------------------------------------- parsers


def test_parse_small_files() -> None:
    assert probe.parse_uptime((DATA / "proc/uptime").read_text()) == 86400.25
    assert probe.parse_loadavg((DATA / "proc/loadavg").read_text()) == (0.52, 0.34, 0.2)
    parsed = probe.parse_stat((DATA / "proc/stat").read_text())
    assert parsed == {
        "cpu": [10000, 200, 3000, 80000, 1000, 50, 150, 100, 400, 0],
        "cpu_count": 4,
        "procs_running": 3,
    }
    # guest (400) is inside user already; idle and iowait are not busy
    assert probe.cpu_counter(parsed["cpu"]) == [94500, 13500]


def test_parse_meminfo() -> None:
    info = probe.parse_meminfo((DATA / "proc/meminfo").read_text())
    assert info["MemTotal"] == 16384000 * 1024
    assert info["Active(file)"] == 3686400 * 1024
    assert info["HugePages_Total"] == 0  # a count, not kB
    assert probe.memory_samples(info) == [
        ["mem_total_bytes", {}, 16777216000],
        ["mem_available_bytes", {}, 12582912000],
        ["mem_percent", {}, 25.0],
        ["swap_percent", {}, 25.0],
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
    assert probe.parse_net_dev((DATA / "proc/net/dev").read_text()) == {
        "eth0": [64788215, 1246730],
        "eth0.100": [5000, 7000],
        "docker0": [0, 2500],
        "ppp0": [9876543210, 1234567890],  # old kernels: no space after the colon
    }


def test_parse_diskstats_keeps_whole_disks() -> None:
    got = probe.parse_diskstats((DATA / "proc/diskstats").read_text())
    assert {name: [r // 512, w // 512] for name, (r, w) in got.items()} == {
        "sda": [2141226, 755112],
        "sr0": [96, 0],
        "nvme0n1": [400000, 900000],
        "dm-0": [2000, 4000],
        "dm-1": [1000, 2000],
        "dm-10": [3000, 6000],  # not a partition of dm-1
        "md127": [80, 160],
        "mmcblk0": [480, 240],
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


def test_parse_mounts_skips_pseudo_shadowed_and_bind_mounts() -> None:
    assert probe.parse_mounts((DATA / "proc/mounts").read_text()) == [
        ("/dev/sda2", "/", "ext4"),  # rootfs underneath is hidden and pseudo anyway
        ("/dev/sda1", "/boot/efi", "vfat"),
        ("server:/export", "/mnt/nfs", "nfs4"),
        ("//fs/share", "/mnt/smb", "cifs"),
        ("alice@host:/", "/mnt/ssh", "fuse.sshfs"),
        ("/dev/nvme0n1p1", "/srv/data backup", "xfs"),  # shorter than its bind mount
        ("overlay", "/var/lib/docker/overlay2/4f1c/merged", "overlay"),
    ]  # /mnt/usb is hidden by a tmpfs; squashfs, autofs, lxcfs, cgroup2... are not disks


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


# ---------------------------------------------------------------- captured tree


def fake_statvfs(root: Path, table: dict[str, Any]) -> Any:
    """A statvfs answering for root-relative paths from ``table`` of (blocks, bfree, bavail)."""

    def statvfs(path: str) -> os.statvfs_result:
        relative = os.path.relpath(path, root)
        got = table.get("/" if relative == "." else "/" + relative)
        if isinstance(got, Exception):
            raise got
        if got is None:
            raise FileNotFoundError(2, "No such file or directory", path)
        blocks, bfree, bavail = got
        return os.statvfs_result((4096, 4096, blocks, bfree, bavail, 0, 0, 0, 0, 255))

    return statvfs


def test_collect_captured_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {
        "/": (1000, 400, 200),  # 600 used of the 800 a user may fill: 75%, not 60%
        "/boot/efi": (100, 50, 50),
        "/mnt/nfs": (2000, 1500, 1500),
        "/mnt/smb": PermissionError(13, "Permission denied"),
        "/mnt/ssh": (0, 0, 0),  # FUSE filesystems without a size are left out
        "/srv/data backup": (2000, 1000, 1000),
    }
    monkeypatch.setattr(os, "statvfs", fake_statvfs(DATA, table))
    samples, errors = probe.collect(str(DATA))

    assert sorted(errors) == [
        "disk /mnt/smb: [Errno 13] Permission denied",
        f"disk /var/lib/docker/overlay2/4f1c/merged: [Errno 2] No such file or directory: "
        f"'{DATA}/var/lib/docker/overlay2/4f1c/merged'",
    ]
    table = by_key(samples)
    assert 0 < table.pop(("probe_duration_sec", ())) < 5
    disks = {key: table.pop(key) for key in list(table) if key[0].startswith("disk_")}
    assert {(metric, labels[0][1]): value for (metric, labels), value in disks.items()} == {
        ("disk_total_bytes", "/"): 4096000,
        ("disk_used_bytes", "/"): 2457600,
        ("disk_percent", "/"): 75.0,
        ("disk_total_bytes", "/boot/efi"): 409600,
        ("disk_used_bytes", "/boot/efi"): 204800,
        ("disk_percent", "/boot/efi"): 50.0,
        ("disk_total_bytes", "/mnt/nfs"): 8192000,
        ("disk_used_bytes", "/mnt/nfs"): 2048000,
        ("disk_percent", "/mnt/nfs"): 25.0,
        ("disk_total_bytes", "/srv/data backup"): 8192000,
        ("disk_used_bytes", "/srv/data backup"): 4096000,
        ("disk_percent", "/srv/data backup"): 50.0,
        **{
            (metric, device): 0.0  # no previous run: sampled over an unchanging tree
            for metric in ("disk_read_bytes_per_sec", "disk_write_bytes_per_sec")
            for device in ("sda", "sr0", "nvme0n1", "dm-0", "dm-1", "dm-10", "md127", "mmcblk0")
        },
    }
    assert table == {
        ("uptime_sec", ()): 86400.25,
        ("load1", ()): 0.52,
        ("load5", ()): 0.34,
        ("load15", ()): 0.2,
        ("cpu_count", ()): 4,
        ("procs_running", ()): 3,
        ("procs_total", ()): 3,  # the numeric directories 1, 245 and 3071
        ("mem_total_bytes", ()): 16777216000,
        ("mem_available_bytes", ()): 12582912000,
        ("mem_percent", ()): 25.0,
        ("swap_percent", ()): 25.0,
        ("cpu_percent", ()): 0.0,
        **{
            (metric, (("interface", name),)): 0.0
            for metric in ("net_rx_bytes_per_sec", "net_tx_bytes_per_sec")
            for name in ("eth0", "eth0.100", "docker0", "ppp0")
        },
    }


def test_one_broken_source_does_not_stop_the_others(tmp_path: Path) -> None:
    shutil.copytree(DATA / "proc", tmp_path / "proc")
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
    shutil.copytree(DATA / "proc", tmp_path / "proc")
    deep = "/" + "d" * 300
    (tmp_path / "proc/mounts").write_text(
        f"/dev/sda2 / ext4 rw 0 0\n/dev/sdb1 {deep} ext4 rw 0 0\n"
    )
    monkeypatch.setattr(os, "statvfs", fake_statvfs(tmp_path, {"/": (10, 5, 5), deep: (10, 5, 5)}))
    samples, errors = probe.collect(str(tmp_path))
    assert set(labelled(samples, "disk_total_bytes", "mount")) == {"/"}
    assert errors == [f"disk /{'d' * 59}...: mount path over 256 characters"]


# ---------------------------------------------------------------- rates and state


def write_tree(
    root: Path, *, uptime: float, user: int, idle: int, eth0: tuple[int, int], sda: tuple[int, int]
) -> str:
    """A small /proc tree with the given counters; returns it as a proc_root."""
    (root / "proc/net").mkdir(parents=True, exist_ok=True)
    for name in ("loadavg", "meminfo"):
        shutil.copy(DATA / "proc" / name, root / "proc" / name)
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


BEFORE = {"uptime": 100.0, "user": 1000, "idle": 3000, "eth0": (1000, 0), "sda": (100, 0)}
AFTER = {"uptime": 110.0, "user": 1250, "idle": 3750, "eth0": (11000, 5000), "sda": (120, 40)}
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


def _kill(process: subprocess.Popen[str], marker: str) -> None:
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
