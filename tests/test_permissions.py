"""Secure defaults (#11 items 1-2): owner-only files here, a private probe directory there.

The attacks of issue #11 are replayed against real sshd as the unprivileged
``nmx-test`` login; the "other local user" who plants files is root, which
can put a file anywhere (the tests run as root).
"""

from __future__ import annotations

import configparser
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Fleet, Run

Cli = Callable[..., Run]

README = Path(__file__).resolve().parent.parent / "README.md"
SERVICE = Path(__file__).resolve().parent.parent / "contrib" / "netmetrix.service"


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The common umask, under which files would otherwise be created world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# ---------------------------------------------------------------- item 1: files here


def test_existing_readable_store_warns_once_per_run(tmp_path: Path, netmetrix: Cli) -> None:
    config = tmp_path / "config.xml"
    config.write_text('<netmetrix><hosts><host name="f4"/></hosts></netmetrix>\n')
    assert netmetrix("--config", config, "hosts").code == 0
    database = tmp_path / "netmetrix.db"
    database.chmod(0o644)  # as an older netmetrix left it under umask 022
    ran = netmetrix("--config", config, "hosts")
    assert ran.code == 0
    warnings = [line for line in ran.err.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, ran.err
    assert warnings[0].endswith(
        f" WARNING database {database} (mode 0644) can be read by other users, and it holds"
        f" every host's key: run chmod 600 {database}"
    )


def test_systemd_unit_keeps_the_state_directory_private() -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    text = SERVICE.read_text(encoding="utf-8")
    parser.read_string(text, source=SERVICE.name)
    assert parser["Service"]["UMask"] == "0077"
    assert parser["Service"]["StateDirectoryMode"] == "0700"
    assert f"```ini\n{text}```" in README.read_text(encoding="utf-8")  # shown verbatim


@pytest.mark.usefixtures("umask_022")
def test_accept_new_writes_an_owner_only_known_hosts(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.settings["policy"] = "accept-new"
    fleet.known_hosts.unlink()
    fleet.host("f1", 0)
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 0, ran.err
    assert "Permanently added host key" in ran.err
    assert mode_of(fleet.known_hosts) == 0o600


@pytest.mark.usefixtures("umask_022")
def test_demo_keeps_its_files_private(tmp_path: Path, netmetrix: Cli) -> None:
    keep = tmp_path / "demo"
    ran = netmetrix("demo", "--hosts", "1", "--keep", keep)
    assert ran.code == 0, ran.err
    modes = {path.name: mode_of(path) for path in keep.iterdir()}
    assert mode_of(keep) == 0o700
    assert modes == {
        "config.xml": 0o644,  # no secrets: the SMTP password would come from the environment
        "demo_key": 0o600,
        "demo_key.pub": 0o644,
        "known_hosts": 0o600,
        "netmetrix.db": 0o600,
    }
