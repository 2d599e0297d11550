"""``netmetrix check`` (#18) against real sshd servers: a ready host, one without the probe,
an outdated probe, a wrong key, no python, an unknown host key, and nothing stored."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sshd
from conftest import Fleet, Run

from netmetrix import envelope, probe
from netmetrix.store import Store

pytestmark = pytest.mark.sshd

Cli = Callable[..., Run]
VERSION = ".".join(map(str, sys.version_info[:3]))


def checked(netmetrix: Cli, fleet: Fleet, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    ran = netmetrix("--config", fleet.config, "check", "--format", "json", *args)
    return ran.code, {row["host"]: row for row in json.loads(ran.out)}


def test_a_ready_host(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("a", 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    code, found = checked(netmetrix, fleet)
    assert code == 0
    row = found["a"]
    offset = row.pop("clock_offset")
    assert abs(offset) < 5  # one machine: the same clock, give or take the round trip
    assert row == {
        "host": "a",
        "ready": True,
        "reachable": True,
        "host_key": True,
        "login": True,
        "python": VERSION,
        "probe": "current",
        "key": True,
        "problems": [],
    }
    with Store.open(f"sqlite:///{fleet.database}") as store:
        assert store.latest_rows(("a",)) == []  # nothing stored


def test_no_probe_and_an_outdated_probe(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("none", 0)
    fleet.host("old", 1)
    assert netmetrix("--config", fleet.config, "upload", "-h", "old").code == 0
    with (fleet.remote_dir("old") / "client.py").open("a") as script:
        script.write("# changed on the host\n")
    code, found = checked(netmetrix, fleet)
    assert code == 1
    assert (found["none"]["probe"], found["none"]["key"]) == ("missing", None)
    assert found["none"]["problems"] == [
        f"probe {fleet.remote_dir('none')}/client.py missing: run netmetrix upload -h none"
    ]
    assert found["old"]["probe"] == "outdated"
    assert found["old"]["problems"] == [
        f"probe {fleet.remote_dir('old')}/client.py is not the one this netmetrix uploads:"
        " run netmetrix upload -h old"
    ]


def test_a_wrong_key(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("a", 0)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    [key_file] = fleet.remote_dir("a").glob("*.key")
    key_file.write_text(probe.key_file_text("a", envelope.new_key()))  # not the stored one
    code, found = checked(netmetrix, fleet)
    assert code == 1
    row = found["a"]
    assert (row["probe"], row["key"], row["ready"]) == ("current", False, False)
    assert row["problems"] == ["key: bad message: sealed with an unknown key (run upload again)"]


def test_no_python_on_the_login_users_path(
    fleet: Fleet, netmetrix: Cli, test_user: sshd.User, user_dir: Path
) -> None:
    # nmx-test's PATH (sshd's default) holds no "python3.99": as on a host without python
    fleet.host("bare", 0, user=test_user.name, directory=str(user_dir / "p"), python="python3.99")
    code, found = checked(netmetrix, fleet)
    assert code == 1
    row = found["bare"]
    assert (row["login"], row["python"], row["probe"], row["key"]) == (True, "", None, None)
    [problem] = row["problems"]
    assert problem.startswith("`python3.99` not found or not working on the host (")
    assert problem.endswith(
        "install python3 there (apt-get install python3-minimal, dnf install python3,"
        ' apk add python3) or point <host python="..."> at one; or set probe="sh"'
        " for the basic metrics without python"
    )


def test_an_unknown_host_key_and_a_table(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.known_hosts.write_text("")
    fleet.host("a", 0)
    code, found = checked(netmetrix, fleet)
    assert code == 1
    row = found["a"]
    assert (row["reachable"], row["host_key"], row["login"]) == (True, False, None)
    assert row["problems"][0].startswith("host key unknown")
    assert row["problems"][0].endswith("; or run netmetrix trust")
    table = netmetrix("--config", fleet.config, "check")
    assert table.code == 1
    [header, line] = table.out.splitlines()
    assert header.split()[:9] == [
        *("host", "ready", "reachable", "host_key", "login", "python"),
        *("probe", "key", "clock_offset"),
    ]
    assert line.split()[:9] == ["a", "no", "yes", "no", "-", "-", "-", "-", "-"]


def test_upload_suggests_check_when_a_host_fails(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.known_hosts.write_text("")
    fleet.host("a", 0)
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 1
    assert "upload: `netmetrix check` tells, host by host, what a failed host needs" in ran.err
