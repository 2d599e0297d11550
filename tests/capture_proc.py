#!/usr/bin/env python3
"""Capture, from a running Linux system, exactly the files netmetrix's probe reads.

The probe's tests read these captures instead of a hand-written /proc (as
prometheus' client keeps a real tree in tests/proc and node_exporter in
collector/fixtures).  The test suite never runs this script: it needs root and
namespaces.  Run it by hand, then commit what it wrote:

    sudo python3 tests/capture_proc.py all --what "a Firecracker microVM"
    sudo python3 tests/capture_proc.py vm|container|many [DIR] [--what TEXT]
    python3 tests/capture_proc.py snapshot DIR [--what TEXT]   # as it is; no root

--what says what the machine is (the kernel cannot tell a Firecracker microVM
from another); the script adds the CPU count and kernel release.  The tests
pin the values each capture must give, so a new capture means new expected
values in tests/test_probe.py, worked out again from its files.

``all`` replaces, under tests/data/captures/:

vm/         this machine as it is (the project's CI machine: a Firecracker
            microVM; whatever it is, its capture.json says so in "what").
container/  a container built the way Docker builds one, captured from inside:
            new pid, mount, network, uts and ipc namespaces; an overlay root
            over "/"; /proc, /dev, /sys and Docker's masks; /etc/hosts,
            /etc/hostname and /etc/resolv.conf bind-mounted from the host's
            disk; a volume at /capture (where the capture is written); eth0 a
            veth whose other end is in a second namespace standing for the
            host's docker0; two processes (the capture, as pid 1, and a sleep).
many/       a machine with many disks and interfaces, built in namespaces:
            before/ and after/, two snapshots of one network namespace with
            13 interfaces (veth pairs to a peer namespace, a bridge with a
            port, a VXLAN over eth0, and idle docker0, ifb0 and tap0) and one
            mount namespace with 10 loop-device filesystems (ext2/3/4; one
            with a space in its path, one bind-mounted elsewhere, one hidden
            under a tmpfs, one read-only, an overlay inside one), with UDP
            traffic of known size sent over each interface and 8 MiB written
            to one filesystem between the two.  after/capture.json
            "generated" lists what was sent, per interface, and written.

What the CI machine could not give, and the tests feed the parsers as
synthetic lines instead: more whole disks in /proc/diskstats (its kernel has
no device-mapper, md, scsi_debug or null_blk, and loop devices are images the
probe leaves out, so many/ has disk I/O for vda alone); dummy and VLAN
interfaces (no such modules: veth, bridge, VXLAN, ifb and tap instead); Docker
itself (no daemon, and nothing is pulled: the container is built by hand, as
Docker builds one); network filesystems (no server).

Each capture is a root the probe reads as ``proc_root``:

    <root>/proc/{stat,uptime,loadavg,meminfo,diskstats,mounts,net/dev}
                       byte for byte as read (mounts and net/dev as the
                       capturing process sees them: its mount and network
                       namespaces)
    <root>/proc/<pid>/comm   one directory per process, as the probe counts
                       them; comm (the name ps shows every user) only so that
                       git keeps the directory
    <root>/capture.json  what it is ("what"), when ("time", unix seconds, the
                       clock the probe stamps rates with), "kernel", and
                       "statvfs": {mountpoint: the 10 fields of os.statvfs}
                       for every mount but network and FUSE ones (the tests
                       answer the probe's statvfs calls from it)

Nothing secret is read: no environ, cmdline, fd or maps of any process, no
host name, addresses or keys.  Everything the namespaced captures create
(namespaces, veths, loop devices and the loop devices the kernel added for
them, mounts, image files under /var/tmp) is removed on the way out, failed
runs included; the namespaces are held by processes this script starts and
ends by PID, so no /run/netns entry is left either.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

CAPTURES = Path(__file__).resolve().parent / "data" / "captures"
PROC_FILES = ("stat", "uptime", "loadavg", "meminfo", "diskstats", "mounts", "net/dev")
# statvfs on these may hang on a dead server: the probe reads them in threads
# with a deadline; a capture just leaves them out.
REMOTE_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "ceph", "glusterfs", "9p"}
LOOP_CTL_REMOVE = 0x4C81  # linux/loop.h
MIB = 1024 * 1024


# ---------------------------------------------------------------- the snapshot


def snapshot(out: Path, what: str, proc: str = "/proc", **extra: object) -> None:
    """Copy what the probe reads from ``proc`` into ``out``/proc, and statvfs into capture.json."""
    (out / "proc" / "net").mkdir(parents=True)
    mounts = Path(proc, "mounts").read_bytes()
    statvfs = {mountpoint: _statvfs(mountpoint) for mountpoint in _mountpoints(mounts)}
    for name in PROC_FILES:
        data = mounts if name == "mounts" else Path(proc, name).read_bytes()
        (out / "proc" / name).write_bytes(data)
    for pid in sorted(os.listdir(proc)):
        if pid.isdigit():
            (out / "proc" / pid).mkdir()
            comm = b""  # a process that ended since listdir: the probe would have counted it
            with contextlib.suppress(OSError):
                comm = Path(proc, pid, "comm").read_bytes()
            (out / "proc" / pid / "comm").write_bytes(comm)
    meta = {"what": what, "time": time.time(), "kernel": os.uname().release, "statvfs": statvfs}
    text = json.dumps({**meta, **extra}, indent=1, sort_keys=True)
    # one line per statvfs: [bsize, frsize, blocks, bfree, bavail, files, ffree, favail, flag, max]
    text = re.sub(r"\[\n\s+([-\d,\s]+?)\n\s+\]", lambda m: f"[{' '.join(m[1].split())}]", text)
    (out / "capture.json").write_text(text + "\n")


def _mountpoints(mounts: bytes) -> list[str]:
    """Mountpoints of local filesystems in /proc/mounts, unescaped (\\040 is a space)."""
    found = []
    for line in mounts.decode("utf-8", "replace").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] not in REMOTE_FS and "fuse" not in fields[2]:
            found.append(_unescape(fields[1]))
    return list(dict.fromkeys(found))


def _unescape(field: str) -> str:
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field


def _statvfs(path: str) -> list[int] | str:
    try:
        return list(os.statvfs(path))
    except OSError as exc:
        return str(exc)


# ---------------------------------------------------------------- plumbing


def run(*command: str) -> str:
    """Run ``command``; its stdout, or SystemExit naming it and its stderr."""
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def in_netns(pid: int, *command: str) -> str:
    return run("nsenter", "-t", str(pid), "-n", *command)


def mount(*args: str) -> None:
    run("mount", "-n", *args)  # -n: no /run/mount/utab entry outside the namespace


@contextlib.contextmanager
def netns_holder() -> Iterator[int]:
    """A process in a new network namespace (its PID names the namespace); ended on exit."""
    mine = os.readlink("/proc/self/ns/net")
    holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
    try:
        for _ in range(200):  # unshare(2) happens just after the fork
            if os.readlink(f"/proc/{holder.pid}/ns/net") != mine:
                break
            time.sleep(0.05)
        else:
            raise SystemExit("unshare --net: no new network namespace after 10 s")
        in_netns(holder.pid, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
        in_netns(holder.pid, "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1")
        yield holder.pid
    finally:
        holder.terminate()
        holder.wait(30)


@contextlib.contextmanager
def loop_devices(images: list[Path]) -> Iterator[list[str]]:
    """Attach each image to a loop device; detach them, and remove the ones the kernel added."""
    before = {name for name in os.listdir("/sys/block") if name.startswith("loop")}
    attached: list[str] = []
    try:
        for image in images:
            attached.append(run("losetup", "--find", "--show", str(image)).strip())
        yield attached
    finally:
        for device in attached:
            subprocess.run(["losetup", "-d", device], check=False, timeout=60)
        added = {name for name in os.listdir("/sys/block") if name.startswith("loop")} - before
        _remove_loops(sorted(added))


def _remove_loops(names: list[str]) -> None:
    with open("/dev/loop-control", "rb") as control:
        for name in names:
            for _ in range(100):  # EBUSY while the last mount of a gone namespace is let go
                try:
                    fcntl.ioctl(control, LOOP_CTL_REMOVE, int(name[4:]))
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise
                    time.sleep(0.1)


def send(sends: list[tuple[str, int, int]]) -> None:
    """Send, for each (address, count, size), ``count`` UDP datagrams of ``size`` bytes."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        # ARP first: datagrams queued behind an unresolved neighbour beyond its
        # small queue are dropped, and the counters would miss them.
        for address, _, _ in sends:
            sock.sendto(b"", (address, 9))
        time.sleep(0.5)
        for address, count, size in sends:
            for _ in range(count):
                sock.sendto(b"n" * size, (address, 9))  # the discard port


def send_from(pid: int, sends: list[tuple[str, int, int]]) -> None:
    in_netns(pid, sys.executable, __file__, "_send", json.dumps(sends))


def replace_dir(target: Path, build: Callable[[Path, str], None], what: str) -> None:
    """Run ``build(directory, what)`` into a fresh directory, then put it at ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(fresh, what)
        shutil.rmtree(target, ignore_errors=True)
        fresh.rename(target)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def scratch() -> contextlib.AbstractContextManager[str]:
    """A temporary directory on the root disk (not tmpfs: images and overlay layers live there)."""
    return tempfile.TemporaryDirectory(prefix="nmx-capture-", dir="/var/tmp")


# ---------------------------------------------------------------- vm


def capture_vm(out: Path, what: str) -> None:
    snapshot(out, f"{what}, as it is; {machine_facts()}")


def machine_facts() -> str:
    """What the kernel says about the machine (--what says what it is)."""
    flags = Path("/proc/cpuinfo").read_text()
    hypervisor = "hypervisor" in flags.split()
    return (
        f"{os.cpu_count()} CPUs, kernel {os.uname().release}"
        f"{', cpu flag hypervisor' if hypervisor else ''}"
    )


# ---------------------------------------------------------------- container

CONTAINER_ID = "3f2a1c9b7d10"  # a made-up Docker container id, for its host name and veth


def capture_container(out: Path, what: str) -> None:
    with scratch() as tmp, netns_holder() as host, netns_holder() as container:
        _container_network(host, container)
        send_from(container, [("172.17.0.1", 30, 1000)])  # what an apt-get would leave behind
        send_from(host, [("172.17.0.2", 60, 1400)])
        config = {"tmp": tmp, "out": str(out), "what": what}
        in_netns(
            container,
            "unshare",
            "--pid",
            "--fork",
            "--mount",
            "--uts",
            "--ipc",
            "--propagation",
            "private",
            sys.executable,
            __file__,
            "_container",
            json.dumps(config),
        )


def _container_network(host: int, container: int) -> None:
    """eth0 in the container, its veth peer on a docker0 bridge in the host's namespace."""
    veth = "veth" + CONTAINER_ID[:7]
    in_netns(container, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", veth)
    in_netns(container, "ip", "link", "set", veth, "netns", str(host))
    _address(container, "eth0", "172.17.0.2/16")
    in_netns(container, "ip", "link", "set", "lo", "up")
    in_netns(host, "ip", "link", "add", "docker0", "type", "bridge")
    in_netns(host, "ip", "link", "set", veth, "master", "docker0", "up")
    _address(host, "docker0", "172.17.0.1/16")


def container_init(config: dict[str, str]) -> None:
    """Pid 1 of the container: build its root as Docker does, chroot, capture."""
    tmp, out = Path(config["tmp"]), Path(config["out"])
    root = tmp / "merged"
    for name in ("upper", "work", "merged"):
        (tmp / name).mkdir()
    layers = f"lowerdir=/,upperdir={tmp}/upper,workdir={tmp}/work"
    mount("-t", "overlay", "overlay", "-o", layers, str(root))
    mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", f"{root}/proc")
    mount("-t", "tmpfs", "-o", "nosuid,size=65536k,mode=755", "tmpfs", f"{root}/dev")
    for name in ("pts", "shm", "mqueue"):
        (root / "dev" / name).mkdir()
    mount(
        "-t",
        "devpts",
        "-o",
        "newinstance,ptmxmode=0666,mode=620,gid=5",
        "devpts",
        f"{root}/dev/pts",
    )
    mount("-t", "tmpfs", "-o", "nosuid,nodev,noexec,size=65536k", "shm", f"{root}/dev/shm")
    mount("-t", "mqueue", "-o", "nosuid,nodev,noexec", "mqueue", f"{root}/dev/mqueue")
    mount("-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", f"{root}/sys")
    _container_files(tmp, root)
    (root / "capture").mkdir()
    mount("--bind", str(out), f"{root}/capture")
    _docker_masks(root)
    socket.sethostname(CONTAINER_ID)  # its own uts namespace
    app = subprocess.Popen(["sleep", "infinity"])  # the container's second process
    try:
        os.chroot(root)
        os.chdir("/")
        snapshot(
            Path("/capture"),
            "a container built as Docker builds one, captured from inside (pid 1):"
            " overlay root, its own pid, mount, network, uts and ipc namespaces,"
            " eth0 a veth to a docker0 bridge, a volume at /capture; on "
            f"{config['what']} ({machine_facts()})",
        )
    finally:
        app.kill()
        app.wait()


# What Docker hides (masked paths) and makes read-only, when the kernel has them
MASKED = ("acpi", "asound", "interrupts", "kcore", "keys", "latency_stats", "timer_list", "scsi")
READ_ONLY = ("bus", "fs", "irq", "sys", "sysrq-trigger")


def _docker_masks(root: Path) -> None:
    for name in MASKED:
        path = root / "proc" / name
        if path.is_dir():
            mount("-t", "tmpfs", "-o", "ro", "tmpfs", str(path))
        elif path.exists():
            mount("--bind", "/dev/null", str(path))
    for name in READ_ONLY:
        path = root / "proc" / name
        if path.exists():
            mount("--bind", str(path), str(path))
            mount("-o", "remount,bind,ro", str(path))


def _container_files(tmp: Path, root: Path) -> None:
    files = {
        "hosts": f"127.0.0.1\tlocalhost\n172.17.0.2\t{CONTAINER_ID}\n",
        "hostname": CONTAINER_ID + "\n",
        "resolv.conf": "nameserver 192.0.2.53\n",
    }
    (tmp / "etc").mkdir()
    for name, text in files.items():
        (tmp / "etc" / name).write_text(text)
        mount("--bind", str(tmp / "etc" / name), f"{root}/etc/{name}")


# ---------------------------------------------------------------- many disks and interfaces

# (name on the machine, name on the peer, subnet 10.77.N.0/24)
VETHS = (
    ("eth0", "p-eth0", 0),
    ("eth1", "p-eth1", 1),
    ("eth2", "p-eth2", 2),
    ("eth3", "p-eth3", 3),
    ("ens1f0", "p-ens1f0", 4),
    ("ens1f1", "p-ens1f1", 5),
    ("enp129s0f1np1", "p-enp129", 6),  # 13 characters: /proc/net/dev pads names to 6 only
)
BRIDGE_SUBNET, VXLAN_SUBNET = 20, 30
# (mountpoint, filesystem, MiB, share of the free space to fill, % reserved for root)
FILESYSTEMS = (
    ("/home", "ext4", 128, 0.3, 5),
    ("/opt", "ext4", 64, 0.3, 0),
    ("/var/lib/postgresql", "ext4", 96, 0.7, 5),
    ("/var/lib/docker", "ext4", 64, 0.2, 5),  # an overlay inside it, as Docker makes
    ("/srv/data", "ext4", 96, 0.5, 1),  # /srv/data/export bind-mounted at /mnt/export
    ("/srv/backup", "ext3", 80, 0.1, 5),
    ("/srv/media library", "ext4", 32, 0.97, 5),  # a space: \040 in /proc/mounts
    ("/mnt/archive", "ext2", 24, 0.15, 5),
    ("/mnt/scratch", "ext4", 16, 0.0, 5),  # then hidden by a tmpfs mounted over it
    ("/mnt/usb", "ext4", 24, 0.5, 0),  # remounted read-only
)
WRITTEN = 8 * MIB  # written to /srv/data between the two snapshots


def traffic(index: int) -> tuple[int, int, int, int]:
    """(datagrams out, bytes each, datagrams in, bytes each) for interface number ``index``."""
    return 40 * (index + 1), 1200, 15 * (index + 1), 600


def capture_many(out: Path, what: str) -> None:
    with scratch() as tmp, netns_holder() as peer, netns_holder() as machine:
        images = []
        for number, (_, fstype, size, _, reserved) in enumerate(FILESYSTEMS):
            image = Path(tmp, f"disk{number}.img")
            run("truncate", "-s", f"{size}M", str(image))
            run(f"mkfs.{fstype}", "-q", "-F", "-m", str(reserved), str(image))
            images.append(image)
        skipped = _many_network(peer, machine)
        with loop_devices(images) as devices:
            config = {"tmp": tmp, "out": str(out), "peer": peer, "devices": devices}
            config.update(skipped=skipped, what=what)
            in_netns(
                machine,
                "unshare",
                "--mount",
                "--propagation",
                "private",
                sys.executable,
                __file__,
                "_many",
                json.dumps(config),
            )


def _many_network(peer: int, machine: int) -> list[str]:
    """Build the machine's interfaces; the ones this kernel cannot make are returned."""
    for name, peer_name, subnet in VETHS:
        in_netns(machine, "ip", "link", "add", name, "type", "veth", "peer", "name", peer_name)
        in_netns(machine, "ip", "link", "set", peer_name, "netns", str(peer))
        _address(machine, name, f"10.77.{subnet}.1/24")
        _address(peer, peer_name, f"10.77.{subnet}.2/24")
    port = "vethb1a2c3d"
    in_netns(machine, "ip", "link", "add", port, "type", "veth", "peer", "name", "p-br0")
    in_netns(machine, "ip", "link", "set", "p-br0", "netns", str(peer))
    in_netns(machine, "ip", "link", "add", "br0", "type", "bridge")
    in_netns(machine, "ip", "link", "set", port, "master", "br0", "up")
    _address(machine, "br0", f"10.77.{BRIDGE_SUBNET}.1/24")
    _address(peer, "p-br0", f"10.77.{BRIDGE_SUBNET}.2/24")
    skipped = []
    try:
        for pid, (local, remote, dev) in (
            (machine, ("10.77.0.1", "10.77.0.2", "eth0")),
            (peer, ("10.77.0.2", "10.77.0.1", "p-eth0")),
        ):
            vxlan = ("vxlan100", "type", "vxlan", "id", "100", "dstport", "4789")
            in_netns(pid, "ip", "link", "add", *vxlan, "local", local, "remote", remote, "dev", dev)
            octet = local.rsplit(".", 1)[1]
            _address(pid, "vxlan100", f"10.77.{VXLAN_SUBNET}.{octet}/24")
    except SystemExit as exc:
        skipped.append(f"vxlan100: {exc}")
    in_netns(machine, "ip", "link", "add", "docker0", "type", "bridge")  # idle, down
    in_netns(machine, "ip", "link", "add", "ifb0", "type", "ifb")
    in_netns(machine, "ip", "tuntap", "add", "tap0", "mode", "tap")
    in_netns(machine, "ip", "link", "set", "lo", "up")
    return skipped


def _address(pid: int, device: str, address: str) -> None:
    in_netns(pid, "ip", "addr", "add", address, "dev", device)
    in_netns(pid, "ip", "link", "set", device, "up")


def many_init(config: dict[str, object]) -> None:
    """In the machine's network namespace and a mount namespace of its own: mount, capture twice."""
    out, peer = Path(str(config["out"])), int(str(config["peer"]))
    devices = [str(device) for device in config["devices"]]  # type: ignore[attr-defined]
    for parent in ("/srv", "/mnt"):
        mount("-t", "tmpfs", "-o", "mode=755,size=1m", "tmpfs", parent)
    for (mountpoint, _, _, fill, _), device in zip(FILESYSTEMS, devices, strict=True):
        Path(mountpoint).mkdir(parents=True, exist_ok=True)
        mount(device, mountpoint)
        _fill(Path(mountpoint), fill)
    _many_special_mounts()
    what = (
        f"a machine with many disks and interfaces, built in namespaces on {config['what']}"
        f" ({machine_facts()}): 13 interfaces in a network namespace, 10 loop filesystems"
        " in a mount namespace"
    )
    snapshot(out / "before", what + "; before the traffic")
    generated = _generate(peer)
    snapshot(
        out / "after", what + "; after the traffic", generated=generated, skipped=config["skipped"]
    )
    _check(out / "before", out / "after", generated)


def _fill(mountpoint: Path, share: float) -> None:
    """Allocate ``share`` of the space free to users, so each filesystem is used differently."""
    st = os.statvfs(mountpoint)
    size = int(st.f_bavail * st.f_frsize * share) // MIB * MIB
    if size:
        fd = os.open(mountpoint / "data.bin", os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)


def _many_special_mounts() -> None:
    """A bind mount, a hidden mount, a read-only one and an overlay, as real hosts have."""
    Path("/srv/data/export").mkdir()
    Path("/mnt/export").mkdir()
    mount("--bind", "/srv/data/export", "/mnt/export")
    mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", "/mnt/scratch")
    mount("-o", "remount,ro", "/mnt/usb")
    layer = Path("/var/lib/docker/overlay2/9c1e4f")
    for name in ("lower", "diff", "work", "merged"):
        (layer / name).mkdir(parents=True)
    options = f"lowerdir={layer}/lower,upperdir={layer}/diff,workdir={layer}/work"
    mount("-t", "overlay", "overlay", "-o", options, str(layer / "merged"))


def _generate(peer: int) -> dict[str, object]:
    """Send the traffic and write the bytes the after/ snapshot must show; return what was done."""
    sent: dict[str, dict[str, int]] = {}
    outgoing, incoming = [], []
    subnets = [(name, subnet) for name, _, subnet in VETHS]
    subnets += [("br0", BRIDGE_SUBNET), ("vxlan100", VXLAN_SUBNET)]
    for index, (name, subnet) in enumerate(subnets):
        out_count, out_size, in_count, in_size = traffic(index)
        outgoing.append((f"10.77.{subnet}.2", out_count, out_size))
        incoming.append((f"10.77.{subnet}.1", in_count, in_size))
        sent[name] = {"tx_payload": out_count * out_size, "rx_payload": in_count * in_size}
    send(outgoing)
    send_from(peer, incoming)
    with open("/srv/data/export/burst.bin", "wb") as handle:
        handle.write(os.urandom(WRITTEN))
        handle.flush()
        os.fsync(handle.fileno())
    os.sync()  # twice: the loop device's writes land in its image's page cache first
    os.sync()
    disk = disk_of("/var/tmp")  # where the loop devices' images are
    return {"udp": sent, "written_bytes": WRITTEN, "written_to_disk": disk}


def disk_of(path: str) -> str:
    """The whole disk holding ``path`` (vda for /dev/vda1 too), by /sys/dev/block."""
    dev = os.stat(path).st_dev
    block = Path(os.path.realpath(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"))
    return block.parent.name if (block / "partition").exists() else block.name


def _check(before: Path, after: Path, generated: dict[str, object]) -> None:
    """Refuse a capture whose counters do not show the traffic and writes generated."""
    old, new = _net_dev(before), _net_dev(after)
    udp: dict[str, dict[str, int]] = generated["udp"]  # type: ignore[assignment]
    for name, payload in udp.items():
        rx, tx = new[name][0] - old[name][0], new[name][1] - old[name][1]
        if rx < payload["rx_payload"] or tx < payload["tx_payload"]:
            raise SystemExit(f"{name}: rx +{rx}, tx +{tx} bytes, but sent {payload}")
    disk, sectors = str(generated["written_to_disk"]), {}
    for root in (before, after):
        for line in (root / "proc" / "diskstats").read_text().splitlines():
            fields = line.split()
            if fields[2] == disk:
                sectors[root] = int(fields[9])
    written = (sectors[after] - sectors[before]) * 512
    if written < WRITTEN:
        raise SystemExit(f"{disk}: {written} bytes written, but wrote {WRITTEN}")


def _net_dev(root: Path) -> dict[str, tuple[int, int]]:
    counters = {}
    for line in (root / "proc" / "net" / "dev").read_text().splitlines()[2:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        counters[name.strip()] = (int(fields[0]), int(fields[8]))
    return counters


# ---------------------------------------------------------------- main


STEPS: dict[str, Callable[[Path, str], None]] = {
    "vm": capture_vm,
    "container": capture_container,
    "many": capture_many,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("step", choices=("all", *STEPS, "snapshot"))
    parser.add_argument("dir", nargs="?", type=Path, help="output (default: tests/data/captures)")
    parser.add_argument(
        "--what", default="this machine", help='what the machine is, e.g. "a Firecracker microVM"'
    )
    args = parser.parse_args()
    if args.step == "snapshot":
        if args.dir is None:
            parser.error("snapshot needs a directory")
        snapshot(args.dir, f"{args.what}; {machine_facts()}")
        return
    if os.geteuid() != 0:
        raise SystemExit("capture_proc.py: the namespaced captures need root")
    if args.step == "all":
        targets = {step: (args.dir or CAPTURES) / step for step in STEPS}
    else:
        targets = {args.step: args.dir or CAPTURES / args.step}
    for step, target in targets.items():
        replace_dir(target, STEPS[step], args.what)
        print(f"captured {target}")


def internal() -> bool:
    """Run the steps this script starts itself inside namespaces (``_name JSON``)."""
    if len(sys.argv) != 3 or not sys.argv[1].startswith("_"):
        return False
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # run finally blocks
    argument = json.loads(sys.argv[2])
    if sys.argv[1] == "_send":
        send([(address, count, size) for address, count, size in argument])
    elif sys.argv[1] == "_container":
        container_init(argument)
    elif sys.argv[1] == "_many":
        many_init(argument)
    else:
        raise SystemExit(f"unknown step {sys.argv[1]}")
    return True


if __name__ == "__main__":
    if not internal():
        main()
