"""Real OpenSSH sshd processes on 127.0.0.1 high ports, for tests and benchmarks.

Each server gets a throwaway host key; one client key is authorised on all of
them.  Servers are started by absolute path (`/usr/sbin/sshd -D -e -f CFG`),
waited for by connecting to their port, and stopped by PID.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ports import free_port

SSHD = "/usr/sbin/sshd"
TEST_USER = "nmx-test"  # an unprivileged login for tests that must not run as root
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by every user, unlike root's pyenv


def keygen(path: Path, comment: str = "netmetrix-test") -> str:
    """Create an ed25519 key pair at ``path``; return the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return Path(f"{path}.pub").read_text().strip()


@dataclass
class Sshd:
    """One running sshd."""

    port: int
    host_key_line: str  # "ssh-ed25519 AAAA..."
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.workdir / "sshd.log"

    @property
    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key_line}"

    def stop(self, *, sessions: bool = False) -> None:
        """Stop listening; ``sessions``: end its open connections too (their sshd
        processes outlive the listener otherwise), as a host going down would."""
        if self.process is None or self.process.poll() is not None:
            return
        if sessions:
            import psutil

            for child in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def _config_text(
    workdir: Path,
    port: int,
    authorized_keys: Path,
    sftp: bool,
    max_startups: str,
    extra: Sequence[str] = (),
    log_level: str = "ERROR",
) -> str:
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {workdir / 'host_key'}",
        f"PidFile {workdir / 'sshd.pid'}",
        # the farm's file for root; the test user's own file (written by ensure_user)
        f"AuthorizedKeysFile {authorized_keys} .ssh/authorized_keys",
        "StrictModes no",
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password",
        f"MaxStartups {max_startups}",
        "MaxSessions 1000",
        f"LogLevel {log_level}",
        "UseDNS no",
        "PrintMotd no",
    ]
    if sftp:
        lines.append("Subsystem sftp internal-sftp")
    lines += extra
    return "\n".join(lines) + "\n"


def start_sshd(
    workdir: Path,
    authorized_keys: Path,
    *,
    sftp: bool = True,
    max_startups: str = "1000:100:1000",
    port: int | None = None,
    extra_config: Sequence[str] = (),
    log_level: str = "ERROR",
) -> Sshd:
    """Start one sshd in ``workdir`` and wait until it accepts connections.

    ``extra_config``: more sshd_config lines (``HostCertificate ...``); a
    ``workdir/host_key`` made beforehand (to certify it) is used as is, so a
    server restarted in the same ``workdir`` and ``port`` has the same key.
    ``log_level`` INFO logs every accepted login to ``Sshd.log``.
    """
    if not os.access(SSHD, os.X_OK):
        raise RuntimeError(
            f"{SSHD} not found: run `make system-deps` (apt-get install openssh-server)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir, needed as root
    key_file = workdir / "host_key"
    host_key = (
        Path(f"{key_file}.pub").read_text()
        if key_file.exists()
        else keygen(key_file, "netmetrix-test-host")
    )
    port = port or free_port()
    cfg = workdir / "sshd_config"
    text = _config_text(workdir, port, authorized_keys, sftp, max_startups, extra_config, log_level)
    cfg.write_text(text)
    server = Sshd(port=port, host_key_line=" ".join(host_key.split()[:2]), workdir=workdir)
    with server.log.open("ab") as log:  # a restarted server adds to its log
        server.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stderr=log)
    try:
        _wait_listening(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_listening(server: Sshd, budget: float = 10.0) -> None:
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        assert server.process is not None
        if server.process.poll() is not None:
            raise RuntimeError(f"sshd exited {server.process.returncode}: {server.log.read_text()}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", server.port), 0.2),
        ):
            return
        time.sleep(0.02)
    raise RuntimeError(f"sshd on port {server.port} not listening after {budget}s")


@dataclass
class Farm:
    """Several sshd servers sharing one authorised client key."""

    root: Path
    client_key: Path
    servers: list[Sshd]

    def known_hosts_text(self) -> str:
        return "".join(s.known_hosts_line + "\n" for s in self.servers)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@contextlib.contextmanager
def farm(root: Path, count: int = 2, *, sftp: tuple[bool, ...] = ()) -> Iterator[Farm]:
    """Start ``count`` sshd servers under ``root``; stop them on exit, even on failure."""
    root.mkdir(parents=True, exist_ok=True)
    client_key = root / "client_key"
    authorized = root / "authorized_keys"
    authorized.write_text(keygen(client_key) + "\n")
    servers: list[Sshd] = []
    result = Farm(root=root, client_key=client_key, servers=servers)
    try:
        for i in range(count):
            has_sftp = sftp[i] if i < len(sftp) else True
            servers.append(start_sshd(root / f"sshd{i}", authorized, sftp=has_sftp))
        yield result
    finally:
        result.stop()


@dataclass(frozen=True)
class User:
    """An unprivileged local account that can log in to a farm with the farm's client key."""

    name: str
    uid: int
    gid: int
    home: Path
    python: str = SYSTEM_PYTHON

    def make_dir(self, path: Path, mode: int = 0o700) -> Path:
        """Create ``path`` (and missing parents inside the home) owned by this user."""
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        os.chown(path, self.uid, self.gid)
        return path


def ensure_user(farm: Farm, name: str = TEST_USER) -> User:
    """The unprivileged test user, created once (useradd; remove with ``userdel -r nmx-test``).

    Its home is /home/NAME; the farm's client key is appended to its
    ~/.ssh/authorized_keys, which sshd reads as that user.  Needs root.
    Several pytest-xdist workers may call it at once: a lock file serialises them.
    """
    with open(Path(tempfile.gettempdir()) / f"{name}.netmetrix-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_user(farm, name)


def _ensure_user(farm: Farm, name: str) -> User:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if os.geteuid() != 0:
            raise RuntimeError(f"user {name} is missing and only root can create it") from None
        # "*": no password login, but not a locked account (sshd refuses those without PAM)
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", name],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        entry = pwd.getpwnam(name)
    user = User(name=name, uid=entry.pw_uid, gid=entry.pw_gid, home=Path(entry.pw_dir))
    user.make_dir(user.home, 0o755)
    ssh_dir = user.make_dir(user.home / ".ssh")
    authorized = ssh_dir / "authorized_keys"
    line = Path(f"{farm.client_key}.pub").read_text().strip()
    lines = authorized.read_text().splitlines() if authorized.exists() else []
    if line not in lines:
        authorized.write_text("".join(f"{x}\n" for x in [*lines, line]))
    os.chown(authorized, user.uid, user.gid)
    authorized.chmod(0o600)
    if not os.access(user.python, os.X_OK):
        raise RuntimeError(f"{user.python} missing: the test user's probe needs it")
    return user


def remove_tree(path: Path) -> None:
    """rm -rf, for a test user's directories (files it made are owned by it)."""
    shutil.rmtree(path, ignore_errors=True)
