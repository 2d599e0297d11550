"""`config check` checks the local files a run needs before any host is touched (#11)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import sshd
from conftest import Run, line_of

from netmetrix.configxml import ConfigXml, Host, render

Cli = Callable[..., Run]


def write_config(path: Path, keys: list[str], database: str = "netmetrix.db") -> Path:
    """A config with hosts h0, h1..., each with the given key= file."""
    hosts = [Host(name=f"h{i}", key=key) for i, key in enumerate(keys)]
    path.write_text(render(ConfigXml(database=database, hosts=hosts)))
    return path


def at(config: Path, host: str) -> str:
    """``FILE:LINE``, the line of ``<host name="host">``: where its problem is reported."""
    element = f'<host name="{host}"'
    return f"{config}:{line_of(config, element)}"


@pytest.fixture(scope="module")
def good_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "id_ed25519"
    sshd.keygen(path)
    return path


def test_usable_keys_pass(tmp_path: Path, netmetrix: Cli, good_key: Path) -> None:
    config = write_config(tmp_path / "config.xml", [str(good_key), str(good_key)])
    ran = netmetrix("config", "check", config)
    assert (ran.code, ran.out, ran.err) == (0, f"{config}: OK, 2 hosts, 0 alert rules\n", "")


def test_every_unusable_key_file_is_named(tmp_path: Path, netmetrix: Cli, good_key: Path) -> None:
    (tmp_path / "garbage").write_text("not a key\n")
    (tmp_path / "keydir").mkdir()
    config = write_config(
        tmp_path / "config.xml",
        [str(good_key), "missing_key", "garbage", "keydir", "missing_key", "missing_key", "keydir"],
    )
    ran = netmetrix("config", "check", config)
    assert ran.code == 2
    assert ran.out == ""
    assert ran.err == (
        f'{at(config, "h1")}: <host name="h1">: key "{tmp_path / "missing_key"}": '
        "No such file or directory (also the key of 2 more hosts)\n"
        f'{at(config, "h2")}: <host name="h2">: key "{tmp_path / "garbage"}": '
        "not a private key netmetrix can read: Invalid private key\n"
        f'{at(config, "h3")}: <host name="h3">: key "{tmp_path / "keydir"}": '
        "is a directory, not a private key file (also the key of 1 more host)\n"
    )


def test_a_passphrase_protected_key_points_to_the_agent(tmp_path: Path, netmetrix: Cli) -> None:
    key = tmp_path / "id_locked"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(key)], check=True
    )
    config = write_config(tmp_path / "config.xml", [str(key)])
    ran = netmetrix("config", "check", config)
    assert ran.code == 2
    assert ran.err == (
        f'{at(config, "h0")}: <host name="h0">: key "{key}": the key is protected by a passphrase, '
        "which netmetrix cannot ask for: load it into ssh-agent (ssh-add) and leave out key=, "
        "so that the agent is used\n"
    )


def test_a_missing_database_directory_is_noted_not_refused(
    tmp_path: Path, netmetrix: Cli, good_key: Path
) -> None:
    config = write_config(tmp_path / "config.xml", [str(good_key)], "var/lib/netmetrix.db")
    ran = netmetrix("config", "check", config)
    assert ran.code == 0
    assert ran.out == f"{config}: OK, 1 host, 0 alert rules\n"
    assert ran.err == (
        f"{config}: <database>: directory {tmp_path / 'var' / 'lib'} does not exist yet; "
        "netmetrix creates it on first use\n"
    )
    assert not (tmp_path / "var").exists()  # checking creates nothing


def test_a_database_directory_that_is_a_file_is_refused(
    tmp_path: Path, netmetrix: Cli, good_key: Path
) -> None:
    (tmp_path / "var").write_text("")
    config = write_config(tmp_path / "config.xml", [str(good_key)], "var/netmetrix.db")
    ran = netmetrix("config", "check", config)
    assert ran.code == 2
    assert ran.err == f"{config}: <database>: {tmp_path / 'var'} is not a directory\n"


def test_execute_says_the_same_about_a_locked_key(tmp_path: Path, netmetrix: Cli) -> None:
    """The per-host error of upload/execute gives the same advice as `config check`."""
    key = tmp_path / "id_locked"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(key)], check=True
    )
    config = write_config(tmp_path / "config.xml", [str(key)])
    ran = netmetrix("--config", config, "upload")
    assert ran.code == 1
    assert (
        f"[h0] FAILED: cannot read private key {key}: the key is protected by a passphrase"
        in ran.err
    )
