"""Host keys as OpenSSH means them: @revoked, @cert-authority, jump hosts, hints that work.

Everything runs against real sshd servers; every recovery hint netmetrix
prints is run as printed (real ssh-keygen / ssh-keyscan) and must fix the run.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sshd
from conftest import Fleet, Run

pytestmark = pytest.mark.sshd

Cli = Callable[..., Run]


def hints(message: str) -> list[str]:
    """The commands a message suggests, in order (each is quoted in backticks)."""
    return re.findall(r"`([^`]+)`", message)


def run_hint(command: str, cwd: Path) -> None:
    """Run a suggested command as a shell would: argv, and an optional ``>> FILE``."""
    argv = shlex.split(command)
    if ">>" not in argv:
        subprocess.run(argv, cwd=cwd, check=True, capture_output=True, timeout=120)
        return
    at = argv.index(">>")
    assert len(argv) == at + 2, command  # nothing after the file
    with open(argv[at + 1], "ab") as out:  # relative paths resolve in cwd, as in a shell
        subprocess.run(
            argv[:at], cwd=cwd, stdout=out, stderr=subprocess.PIPE, check=True, timeout=120
        )


def user_known_hosts(home: Path, text: str) -> Path:
    path = home / ".ssh" / "known_hosts"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def failure(ran: Run, host: str) -> str:
    """The one-line reason ``host`` failed, from the log."""
    found = re.findall(rf"ERROR \[{re.escape(host)}\] FAILED: (.*)", ran.err)
    assert len(found) == 1, ran.err
    return str(found[0])


# ---------------------------------------------------------------- @revoked


@pytest.mark.parametrize("where", ["ours", "user's"])
def test_revoked_key_is_refused_under_strict(
    fleet: Fleet, netmetrix: Cli, isolated_home: Path, where: str
) -> None:
    server = fleet.farm.servers[0]
    fleet.host("f1", 0)
    revoked = f"@revoked [127.0.0.1]:{server.port} {server.host_key_line}\n"
    if where == "ours":
        fleet.known_hosts.write_text(fleet.farm.known_hosts_text() + revoked)
        marked = f"{fleet.known_hosts}:{len(fleet.farm.servers) + 1}"
    else:  # trusted in our file, revoked in the user's: revocation wins, as in OpenSSH
        marked = f"{user_known_hosts(isolated_home, revoked)}:1"
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 1
    assert failure(ran, "f1") == (
        f"REVOKED HOST KEY for [127.0.0.1]:{server.port}: {marked} marks its key @revoked: "
        "the key has been revoked; netmetrix refuses it (a stolen key may be impersonating "
        "the host)"
    )
    assert not fleet.remote_dir("f1").exists()  # no probe, no key sent


@pytest.mark.parametrize("where", ["ours", "user's"])
def test_accept_new_never_trusts_a_revoked_key(
    fleet: Fleet, netmetrix: Cli, isolated_home: Path, where: str
) -> None:
    """The host is otherwise unknown: accept-new must not record it or send it a probe key."""
    fleet.settings["policy"] = "accept-new"
    server = fleet.farm.servers[0]
    fleet.host("f1", 0)
    revoked = f"@revoked [127.0.0.1]:{server.port} {server.host_key_line}\n"
    target = fleet.known_hosts if where == "ours" else isolated_home / ".ssh" / "known_hosts"
    fleet.known_hosts.write_text("")
    target.parent.mkdir(exist_ok=True)
    target.write_text(revoked)
    for verb in ("upload", "execute"):
        ran = netmetrix("--config", fleet.config, verb)
        assert ran.code == 1
        assert failure(ran, "f1").startswith(f"REVOKED HOST KEY for [127.0.0.1]:{server.port}: ")
        assert "Permanently added" not in ran.err
    assert target.read_text() == revoked  # never recorded
    assert fleet.known_hosts.read_text() == ("" if where != "ours" else revoked)
    assert not fleet.remote_dir("f1").exists()  # no probe key was sent


# ---------------------------------------------------------------- @cert-authority


class CertServers:
    """sshd servers whose host keys are certified by one CA (made with ssh-keygen -s)."""

    def __init__(self, root: Path, farm: sshd.Farm) -> None:
        self.root, self.farm = root, farm
        self.ca_line = sshd.keygen(root / "ca", "netmetrix-test-ca")
        self.started: list[sshd.Sshd] = []

    def start(self, principal: str = "127.0.0.1") -> sshd.Sshd:
        workdir = self.root / f"sshd{len(self.started)}"
        workdir.mkdir()
        sshd.keygen(workdir / "host_key", "netmetrix-test-host")
        subprocess.run(
            [
                *("ssh-keygen", "-q", "-s", str(self.root / "ca"), "-h", "-I", "nmx-test-host"),
                *("-n", principal, str(workdir / "host_key.pub")),
            ],
            check=True,
            capture_output=True,
        )
        server = sshd.start_sshd(
            workdir,
            self.farm.root / "authorized_keys",
            extra_config=[f"HostCertificate {workdir / 'host_key-cert.pub'}"],
        )
        self.started.append(server)
        return server

    def stop(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture
def certified(farm: sshd.Farm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertServers]:
    servers = CertServers(tmp_path_factory.mktemp("cert"), farm)
    try:
        yield servers
    finally:
        servers.stop()


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_a_host_certified_by_a_trusted_ca_is_accepted(
    fleet: Fleet, netmetrix: Cli, certified: CertServers, policy: str
) -> None:
    server = certified.start()
    fleet.settings["policy"] = policy
    fleet.host("c1", 0, port=str(server.port))
    kh = f"@cert-authority [127.0.0.1]:* {certified.ca_line}\n"
    fleet.known_hosts.write_text(kh)
    for verb in ("upload", "execute"):
        ran = netmetrix("--config", fleet.config, verb)
        assert ran.code == 0, ran.err
    assert fleet.known_hosts.read_text() == kh  # trusted through the CA: nothing to record


def test_a_ca_in_the_users_known_hosts_counts(
    fleet: Fleet, netmetrix: Cli, certified: CertServers, isolated_home: Path
) -> None:
    server = certified.start()
    fleet.host("c1", 0, port=str(server.port))
    fleet.known_hosts.write_text("")
    user_known_hosts(isolated_home, f"@cert-authority [127.0.0.1]:* {certified.ca_line}\n")
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 0, ran.err


def test_a_certificate_for_another_host_is_refused(
    fleet: Fleet, netmetrix: Cli, certified: CertServers
) -> None:
    server = certified.start(principal="other.example")
    fleet.host("c1", 0, port=str(server.port))
    fleet.known_hosts.write_text(f"@cert-authority [127.0.0.1]:* {certified.ca_line}\n")
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 1
    reason = failure(ran, "c1")
    assert reason.startswith(f"host key not verified for [127.0.0.1]:{server.port}: ")
    assert "principal" in reason.lower()
    assert "ssh-keygen" not in reason  # deleting the CA line would be the wrong fix


def test_a_revoked_ca_is_refused(fleet: Fleet, netmetrix: Cli, certified: CertServers) -> None:
    server = certified.start()
    fleet.host("c1", 0, port=str(server.port))
    fleet.known_hosts.write_text(
        f"@cert-authority [127.0.0.1]:* {certified.ca_line}\n@revoked * {certified.ca_line}\n"
    )
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 1
    assert failure(ran, "c1") == (
        f"REVOKED HOST KEY for [127.0.0.1]:{server.port}: {fleet.known_hosts}:2 marks the CA "
        "that signed its key @revoked: the key has been revoked; netmetrix refuses it "
        "(a stolen key may be impersonating the host)"
    )


def test_accept_new_learns_the_plain_key_of_a_host_with_an_unknown_ca(
    fleet: Fleet, netmetrix: Cli, certified: CertServers
) -> None:
    """As OpenSSH does: with no CA to check the certificate, the plain key is recorded."""
    server = certified.start()
    fleet.settings["policy"] = "accept-new"
    fleet.host("c1", 0, port=str(server.port))
    fleet.known_hosts.unlink()
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 0, ran.err
    assert fleet.known_hosts.read_text() == server.known_hosts_line + "\n"
    assert netmetrix("--config", fleet.config, "execute").code == 0


# ---------------------------------------------------------------- jump hosts


def jump_fleet(fleet: Fleet, home: Path) -> tuple[sshd.Sshd, sshd.Sshd]:
    """Host "target" (farm server 1) reached through "jump" (farm server 0) by ~/.ssh/config."""
    jump, target = fleet.farm.servers[0], fleet.farm.servers[1]
    (home / ".ssh").mkdir(exist_ok=True)
    (home / ".ssh" / "config").write_text(
        "Host target\n"
        "  HostName 127.0.0.1\n"
        f"  Port {target.port}\n"
        "  User root\n"
        f"  IdentityFile {fleet.farm.client_key}\n"
        "  ProxyJump jump\n"
        "Host jump\n"
        "  HostName 127.0.0.1\n"
        f"  Port {jump.port}\n"
        "  User root\n"
        f"  IdentityFile {fleet.farm.client_key}\n"
    )
    fleet.hosts.append(
        {"name": "target", "directory": str(fleet.remote_dir("target")), "python": sys.executable}
    )
    fleet.write()
    return jump, target


def test_jump_host_known_in_our_known_hosts(
    fleet: Fleet, netmetrix: Cli, isolated_home: Path
) -> None:
    jump_fleet(fleet, isolated_home)  # our known_hosts knows both; ~/.ssh/known_hosts is absent
    for verb in ("upload", "execute"):
        ran = netmetrix("--config", fleet.config, verb)
        assert ran.code == 0, ran.err


def test_unknown_jump_host_is_named_and_its_hint_works(
    fleet: Fleet, netmetrix: Cli, isolated_home: Path, tmp_path: Path
) -> None:
    jump, target = jump_fleet(fleet, isolated_home)
    fleet.known_hosts.write_text(target.known_hosts_line + "\n")
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 1
    reason = failure(ran, "target")
    assert reason == (
        f"jump host jump: host key unknown: add it with "
        f"`ssh-keyscan -p {jump.port} 127.0.0.1 >> {fleet.known_hosts}` "
        'or set <ssh host_key_policy="accept-new"/>'
    )
    run_hint(hints(reason)[0], cwd=tmp_path)
    assert netmetrix("--config", fleet.config, "upload").code == 0


def test_unknown_target_behind_a_known_jump_host_is_named(
    fleet: Fleet, netmetrix: Cli, isolated_home: Path
) -> None:
    jump, target = jump_fleet(fleet, isolated_home)
    fleet.known_hosts.write_text(jump.known_hosts_line + "\n")
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 1
    assert failure(ran, "target") == (
        f"host key unknown: add it with "
        f"`ssh-keyscan -p {target.port} 127.0.0.1 >> {fleet.known_hosts}` "
        'or set <ssh host_key_policy="accept-new"/>'
    )
    assert "jump" not in ran.err


def test_changed_jump_host_key_is_named(fleet: Fleet, netmetrix: Cli, isolated_home: Path) -> None:
    jump, target = jump_fleet(fleet, isolated_home)
    fleet.known_hosts.write_text(
        f"[127.0.0.1]:{jump.port} {fleet.farm.servers[2].host_key_line}\n"
        + target.known_hosts_line
        + "\n"
    )
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 1
    assert failure(ran, "target").startswith(
        f"jump host jump: host key changed: [127.0.0.1]:{jump.port} does not match known_hosts"
    )


def test_accept_new_records_jump_host_and_target(
    fleet: Fleet, netmetrix: Cli, isolated_home: Path
) -> None:
    fleet.settings["policy"] = "accept-new"
    jump, target = jump_fleet(fleet, isolated_home)
    fleet.known_hosts.unlink()
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 0, ran.err
    assert sorted(fleet.known_hosts.read_text().splitlines()) == sorted(
        [jump.known_hosts_line, target.known_hosts_line]
    )
    assert not (isolated_home / ".ssh" / "known_hosts").exists()


# ---------------------------------------------------------------- hints run as printed


def test_unknown_key_hint_works_as_printed(fleet: Fleet, netmetrix: Cli, tmp_path: Path) -> None:
    server = fleet.farm.servers[0]
    fleet.host("f1", 0)
    fleet.known_hosts.write_text("")
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 1
    (hint,) = hints(failure(ran, "f1"))
    assert hint == f"ssh-keyscan -p {server.port} 127.0.0.1 >> {fleet.known_hosts}"
    run_hint(hint, cwd=tmp_path)  # another directory: the hint names the file, not ./known_hosts
    assert netmetrix("--config", fleet.config, "upload").code == 0
    assert netmetrix("--config", fleet.config, "execute").code == 0


@pytest.mark.parametrize("stale_in", [("ours",), ("user's",), ("ours", "user's")])
def test_changed_key_hints_work_as_printed(
    fleet: Fleet, netmetrix: Cli, isolated_home: Path, tmp_path: Path, stale_in: tuple[str, ...]
) -> None:
    server, other = fleet.farm.servers[0], fleet.farm.servers[1]
    fleet.host("f1", 0)
    stale = f"[127.0.0.1]:{server.port} {other.host_key_line}\n"
    user_file = user_known_hosts(isolated_home, stale if "user's" in stale_in else "")
    fleet.known_hosts.write_text(stale if "ours" in stale_in else "")
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 1
    reason = failure(ran, "f1")
    assert reason.startswith(f"host key changed: [127.0.0.1]:{server.port} does not match")
    files = {"ours": fleet.known_hosts, "user's": user_file}
    removes = [f"ssh-keygen -f {files[w]} -R '[127.0.0.1]:{server.port}'" for w in stale_in]
    add = f"ssh-keyscan -p {server.port} 127.0.0.1 >> {fleet.known_hosts}"
    assert hints(reason) == [*removes, add]
    for hint in hints(reason):
        run_hint(hint, cwd=tmp_path)
    assert other.host_key_line not in fleet.known_hosts.read_text() + user_file.read_text()
    assert netmetrix("--config", fleet.config, "upload").code == 0
    assert netmetrix("--config", fleet.config, "execute").code == 0


def test_changed_key_hint_under_accept_new(fleet: Fleet, netmetrix: Cli, tmp_path: Path) -> None:
    """Under accept-new, removing the stale key is enough: the next run records the new one."""
    server, other = fleet.farm.servers[0], fleet.farm.servers[1]
    fleet.settings["policy"] = "accept-new"
    fleet.host("f1", 0)
    fleet.known_hosts.write_text(f"[127.0.0.1]:{server.port} {other.host_key_line}\n")
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 1
    reason = failure(ran, "f1")
    assert reason.endswith("then the next run records the new one")
    (hint,) = hints(reason)
    run_hint(hint, cwd=tmp_path)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    assert fleet.known_hosts.read_text().splitlines()[-1] == server.known_hosts_line
