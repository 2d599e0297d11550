"""The benchmark farm: real OpenSSH sshd processes on 127.0.0.1 and N named hosts on them.

Every "host" is an entry with its own name and remote directory, spread
round-robin over a few sshd processes (MaxStartups raised), so each collector
treats them as N separate machines.  All of them share this machine's cores.

Login account (``--login``):

``bench``   (default as root) a dedicated unprivileged user, ``netmetrix-bench``,
            with ``/bin/sh`` as its shell and no rc files, created once by the
            harness (remove it with ``userdel netmetrix-bench``).  Each command
            then costs one ``sh -c`` (dash) instead of an interactive-grade
            bash whose rc file may run tools (root's ``~/.bashrc`` here runs
            ``pyenv init``, about 130 ms of CPU per command).  Its probes run
            on a venv of the system Python (``/usr/bin/python3``) with psutil
            and cryptography, made once in the user's home.
``current`` whoever runs the harness, with their own shell and rc files, and
            this interpreter as the hosts' Python (fast to set up: the smoke test).

Every contender logs in the same way, runs the same interpreter and finds its
probe in the same per-host directory.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from netmetrix import configxml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import sshd

BENCH_USER = "netmetrix-bench"
BENCH_HOME = Path("/var/lib/netmetrix-bench")
SYSTEM_PYTHON = "/usr/bin/python3"
REMOTE_PACKAGES = ("psutil", "cryptography")  # what the spec's probe imports
NMX_SCRIPT = "client.py"  # netmetrix's probe on every host
SPEC_SCRIPT = "spec_client.py"  # the spec design's probe (also run by ansible and pssh)


@dataclass(frozen=True)
class Login:
    user: str
    uid: int
    gid: int
    shell: str
    python: str  # the hosts' interpreter, as an absolute path
    kind: str  # "bench" or "current"


@dataclass(frozen=True)
class Host:
    name: str
    port: int
    directory: Path


@dataclass
class BenchFarm:
    root: Path
    farm: sshd.Farm
    login: Login
    hosts: list[Host]

    @property
    def client_key(self) -> Path:
        return self.farm.client_key

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def reaper_pids(self) -> list[int]:
        """Each sshd runs under bench/reaper.py, which reaps (and so counts) all its sessions."""
        return [s.process.pid for s in self.farm.servers if s.process is not None]

    def config(self, count: int, concurrency: int) -> Path:
        """config.xml for the first ``count`` hosts (read by netmetrix and the spec baseline)."""
        path = self.root / f"config-{count}.xml"
        hosts = [
            configxml.Host(
                name=h.name,
                address="127.0.0.1",
                port=h.port,
                user=self.login.user,
                key=self.client_key,
                directory=h.directory,
                python=self.login.python,
            )
            for h in self.hosts[:count]
        ]
        # One rule, evaluated for every host on every run, that never fires
        # (no mail server here): both netmetrix and the spec design check it.
        never = configxml.Alert(metric="cpu_percent", op=">", limit=1000, email="ops@example.com")
        config = configxml.ConfigXml(
            script=NMX_SCRIPT,
            concurrency=concurrency,
            database=f"netmetrix-{count}.db",
            ssh=configxml.SSH(
                known_hosts="known_hosts",
                host_key_policy="strict",
                connect_timeout=60,
                command_timeout=60,
            ),
            hosts=hosts,
            alerts=[never],
        )
        path.write_text(configxml.render(config))
        return path

    def inventory(self, count: int) -> Path:
        """An Ansible INI inventory of the same hosts."""
        path = self.root / f"inventory-{count}.ini"
        rows = [
            f"{h.name} ansible_host=127.0.0.1 ansible_port={h.port} probe_dir={h.directory}"
            for h in self.hosts[:count]
        ]
        ssh_args = f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes"
        path.write_text(
            "[fleet]\n" + "\n".join(rows) + "\n\n[fleet:vars]\n"
            f"ansible_user={self.login.user}\n"
            f"ansible_ssh_private_key_file={self.client_key}\n"
            f"ansible_ssh_common_args='{ssh_args}'\n"
            f"probe_python={self.login.python}\n"
        )
        return path

    def sshd_cpu(self) -> float:
        """CPU seconds reaped so far by the reapers: sshd listeners, sessions, shells, probes."""
        total = 0.0
        for pid in self.reaper_pids:
            reaper = psutil.Process(pid)
            t = reaper.cpu_times()
            total += t.children_user + t.children_system  # sessions orphaned, then reaped here
            for listener in reaper.children():  # sshd: itself and the sessions it reaped
                with contextlib.suppress(psutil.Error):
                    t = listener.cpu_times()
                    total += t.user + t.system + t.children_user + t.children_system
        return total

    def wait_sessions_closed(self, budget: float = 10.0) -> bool:
        """Wait until only the sshd listeners are left (every session reaped); bounded."""
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline:
            if all(len(psutil.Process(p).children(recursive=True)) <= 1 for p in self.reaper_pids):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Kill what the reapers still run (sessions, sshd), then the reapers: our PIDs only."""
        for pid in self.reaper_pids:
            with contextlib.suppress(psutil.Error):
                for child in reversed(psutil.Process(pid).children(recursive=True)):
                    with contextlib.suppress(psutil.Error):
                        child.kill()
        self.farm.stop()


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def _ensure_bench_user(python_base: str) -> Login:
    try:
        entry = pwd.getpwnam(BENCH_USER)
    except KeyError:
        print(f"bench: creating user {BENCH_USER} (shell /bin/sh, home {BENCH_HOME})", flush=True)
        _run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                str(BENCH_HOME),
                "--shell",
                "/bin/sh",
                "--password",
                "*",
                BENCH_USER,
            ]
        )
        entry = pwd.getpwnam(BENCH_USER)
    BENCH_HOME.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chown(BENCH_HOME, entry.pw_uid, entry.pw_gid)
    venv = BENCH_HOME / "venv"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import " + ", ".join(REMOTE_PACKAGES)]
    if not python.exists() or subprocess.run(probe, capture_output=True).returncode != 0:
        print(f"bench: making the hosts' Python {venv} ({', '.join(REMOTE_PACKAGES)})", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        _run([python_base, "-m", "venv", "--without-pip", str(venv)])
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(python),
                "install",
                "-q",
                "--disable-pip-version-check",
                *REMOTE_PACKAGES,
            ]
        )
    return Login(
        user=BENCH_USER,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        shell=entry.pw_shell,
        python=str(python),
        kind="bench",
    )


def _current_login() -> Login:
    entry = pwd.getpwuid(os.getuid())
    return Login(
        user=getpass.getuser(),
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        shell=entry.pw_shell,
        python=sys.executable,
        kind="current",
    )


def login_for(kind: str, python_base: str = SYSTEM_PYTHON) -> Login:
    """The account the hosts are logged into; see the module docstring."""
    if kind == "auto":
        kind = "bench" if os.getuid() == 0 and os.access(python_base, os.X_OK) else "current"
    if kind == "bench":
        if os.getuid() != 0:
            raise SystemExit("--login bench needs root (it creates a user); use --login current")
        return _ensure_bench_user(python_base)
    return _current_login()


@contextlib.contextmanager
def bench_farm(root: Path, hosts: int, servers: int, login: Login) -> Iterator[BenchFarm]:
    """Start ``servers`` sshd processes with ``hosts`` named hosts; stop them on exit."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # the login user reads authorized_keys and owns remote/
    remote = root / "remote"
    remote.mkdir(exist_ok=True)
    wrapper = root / "sshd-reaped"
    wrapper.write_text(
        f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve().with_name('reaper.py')}"
        f' {sshd.SSHD} "$@"\n'
    )
    wrapper.chmod(0o755)
    real_sshd, sshd.SSHD = sshd.SSHD, str(wrapper)  # tests/sshd.py starts sshd by this path
    try:
        with sshd.farm(root / "farm", servers) as farm:
            sshd.SSHD = real_sshd
            result = BenchFarm(root=root, farm=farm, login=login, hosts=[])
            try:
                for path in (root / "farm", farm.client_key.parent):
                    path.chmod(0o755)
                os.chown(remote, login.uid, login.gid)
                (root / "known_hosts").write_text(farm.known_hosts_text())
                for i in range(hosts):
                    name = f"h{i:04d}"
                    port = farm.servers[i % servers].port
                    result.hosts.append(Host(name=name, port=port, directory=remote / name))
                yield result
            finally:
                result.stop()
    finally:
        sshd.SSHD = real_sshd
