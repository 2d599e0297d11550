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
from conftest import Run

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
