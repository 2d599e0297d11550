"""``netmetrix trust`` (#18) against real sshd servers: a host never seen, a known one,
a changed one, one that does not answer, and the question asked on a terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import ports
import pytest
import sshd
from conftest import Fleet, Run

pytestmark = pytest.mark.sshd

Cli = Callable[..., Run]
BUDGET = 120.0  # seconds for the interactive run on a loaded machine


def fingerprint(tmp_path: Path, key_line: str) -> str:
    """``SHA256:...`` of a public key line, as OpenSSH's ssh-keygen prints it."""
    path = tmp_path / "key.pub"
    path.write_text(key_line + "\n")
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return listed.stdout.split()[1]


def rows(ran: Run) -> dict[str, dict[str, str]]:
    return {row["host"]: row for row in json.loads(ran.out)}


def test_yes_records_new_keys_and_they_work(fleet: Fleet, netmetrix: Cli, tmp_path: Path) -> None:
    fleet.known_hosts.unlink()  # never seen
    fleet.host("a", 0)
    fleet.host("b", 1)
    ran = netmetrix("--config", fleet.config, "trust", "--yes", "--format", "json")
    assert ran.code == 0, ran.err
    found = rows(ran)
    for name, server in (("a", fleet.farm.servers[0]), ("b", fleet.farm.servers[1])):
        assert found[name] == {
            "host": name,
            "address": f"[127.0.0.1]:{server.port}",
            "state": "added",
            "key_type": "ssh-ed25519",
            "fingerprint": fingerprint(tmp_path, server.host_key_line),
            "problem": "",
        }
    lines = fleet.known_hosts.read_text().splitlines()
    assert sorted(lines) == sorted(s.known_hosts_line for s in fleet.farm.servers[:2])
    assert fleet.known_hosts.stat().st_mode & 0o777 == 0o600
    assert "trust: 2 keys recorded in" in ran.err
    # strict host key checking now lets upload in
    assert netmetrix("--config", fleet.config, "upload").code == 0


def test_without_a_terminal_new_keys_are_listed_not_recorded(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.known_hosts.unlink()
    fleet.host("a", 0)
    ran = netmetrix("--config", fleet.config, "trust", "--format", "json")
    assert ran.code == 1
    assert rows(ran)["a"]["state"] == "new"
    assert rows(ran)["a"]["fingerprint"].startswith("SHA256:")
    assert not fleet.known_hosts.exists()
    assert (
        "1 new key not recorded: no terminal to ask on; check the fingerprints,"
        " then run `netmetrix trust --yes`"
    ) in ran.err


def test_a_known_host_is_left_as_it_is(fleet: Fleet, netmetrix: Cli) -> None:
    before = fleet.known_hosts.read_bytes()
    fleet.host("a", 0)
    ran = netmetrix("--config", fleet.config, "trust", "--yes", "--format", "json")
    assert ran.code == 0, ran.err
    assert rows(ran)["a"]["state"] == "known"
    assert fleet.known_hosts.read_bytes() == before


def test_a_changed_key_is_listed_and_never_overwritten(
    fleet: Fleet, netmetrix: Cli, tmp_path: Path
) -> None:
    changed = fleet.farm.servers[0]
    other = sshd.keygen(tmp_path / "impostor")  # what known_hosts says a's key is
    fleet.known_hosts.write_text(f"[127.0.0.1]:{changed.port} {other}\n")
    before = fleet.known_hosts.read_bytes()
    fleet.host("a", 0)
    fleet.host("b", 1)  # never seen: still recorded with --yes
    ran = netmetrix("--config", fleet.config, "trust", "--yes", "--format", "json")
    assert ran.code == 1
    found = rows(ran)
    assert found["a"]["state"] == "changed"
    assert found["a"]["problem"] == (
        f"host key changed: [127.0.0.1]:{changed.port} does not match known_hosts"
        " (possible man-in-the-middle); not recorded"
    )
    assert found["b"]["state"] == "added"
    after = fleet.known_hosts.read_bytes()
    assert after.startswith(before)  # a's line kept as it was, b's appended
    assert changed.host_key_line.split()[1] not in after.decode()


def test_a_host_that_does_not_answer_fails_alone(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.known_hosts.unlink()
    fleet.host("a", 0)
    fleet.host("down", 1, port=str(ports.free_port()))  # nothing listens there
    ran = netmetrix("--config", fleet.config, "trust", "--yes", "--format", "json")
    assert ran.code == 1
    found = rows(ran)
    assert found["a"]["state"] == "added"
    assert found["down"]["state"] == "error"
    assert found["down"]["problem"].startswith("connection refused (127.0.0.1:")


def test_on_a_terminal_each_new_key_is_asked_about(fleet: Fleet) -> None:
    """A real pseudo-terminal: the question names the key; y records it."""
    fleet.known_hosts.unlink()
    server = fleet.farm.servers[0]
    fleet.host("a", 0)
    leader, follower = pty.openpty()
    command = [sys.executable, "-m", "netmetrix", "--config", str(fleet.config), "trust"]
    child = subprocess.Popen(
        command, stdin=follower, stdout=subprocess.PIPE, stderr=follower, env=os.environ.copy()
    )
    os.close(follower)
    try:
        seen = b""
        deadline = time.monotonic() + BUDGET
        while b"trust it? [y/N]" not in seen:
            assert time.monotonic() < deadline, seen
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                seen += os.read(leader, 4096)
            assert child.poll() is None or ready, seen
        assert f"a ([127.0.0.1]:{server.port}): ssh-ed25519 SHA256:".encode() in seen
        os.write(leader, b"y\n")
        out, _ = child.communicate(timeout=BUDGET)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(leader)
    assert child.returncode == 0, (seen, out)
    assert b"added" in out
    assert fleet.known_hosts.read_text() == server.known_hosts_line + "\n"


def test_a_host_behind_a_jump_host_is_trusted_through_it(
    fleet: Fleet, netmetrix: Cli, isolated_home: Path, tmp_path: Path
) -> None:
    """~/.ssh/config's ProxyJump: the key asked for is the target's, reached through the
    jump host (whose key our known_hosts already has), and upload then works."""
    from test_hostkeys import jump_fleet

    jump, target = jump_fleet(fleet, isolated_home)
    fleet.known_hosts.write_text("")
    unknown_jump = netmetrix("--config", fleet.config, "trust", "-h", "target", "--yes")
    assert unknown_jump.code == 1
    assert "jump host jump: host key unknown" in unknown_jump.out  # named, with its fix
    fleet.known_hosts.write_text(jump.known_hosts_line + "\n")
    ran = netmetrix("--config", fleet.config, "trust", "-h", "target", "--yes", "--format", "json")
    assert ran.code == 0, ran.out
    assert rows(ran)["target"]["state"] == "added"
    assert rows(ran)["target"]["fingerprint"] == fingerprint(tmp_path, target.host_key_line)
    assert target.known_hosts_line in fleet.known_hosts.read_text().splitlines()
    assert netmetrix("--config", fleet.config, "upload", "-h", "target").code == 0
