"""How `netmetrix` ends: one line per expected error, exit codes by kind, tracebacks on --debug."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Run

from netmetrix.configxml import ConfigXml, Host, render
from netmetrix.errors import ExitStatus, StoreError

Cli = Callable[..., Run]
CONFIG = render(ConfigXml(database="netmetrix.db", hosts=[Host(name="f4")]))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.xml"
    path.write_text(CONFIG)
    return path


def _corrupt(path: Path) -> Path:
    path.write_bytes(b"this is not a database" * 100)
    path.chmod(0o600)  # owner-only, as netmetrix makes it: no permission warning
    return path


def _a_bug(*args: object, **kwargs: object) -> None:
    raise ZeroDivisionError("division by zero\nin a second line")


def test_unexpected_error_is_one_line_and_a_hint(
    config: Path, netmetrix: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake, because a real unexpected error is a bug we do not know of yet:
    # Store.hosts raising ZeroDivisionError stands in for one.
    monkeypatch.setattr("netmetrix.store.Store.hosts", _a_bug)
    run = netmetrix("--config", config, "hosts")
    assert run.code == ExitStatus.HOST_FAILED
    assert run.out == ""
    assert run.err == (
        "Error: unexpected ZeroDivisionError: division by zero in a second line\n"
        "This is a bug in netmetrix: run the command again with --debug"
        " (netmetrix --debug ...) to see the traceback, and report it.\n"
    )


def test_debug_shows_the_traceback_of_an_unexpected_error(
    config: Path, netmetrix: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("netmetrix.store.Store.hosts", _a_bug)  # a stand-in bug, as above
    run = netmetrix("--debug", "--config", config, "hosts")
    assert run.code == ExitStatus.HOST_FAILED
    assert run.err.startswith("Traceback (most recent call last):\n")
    assert "in _a_bug" in run.err
    assert run.err.endswith(
        "Error: unexpected ZeroDivisionError: division by zero in a second line\n"
    )


def test_debug_shows_the_traceback_of_an_expected_error_too(config: Path, netmetrix: Cli) -> None:
    _corrupt(config.parent / "netmetrix.db")
    run = netmetrix("--debug", "--config", config, "hosts")
    assert run.code == ExitStatus.STORE
    assert run.err.startswith("Traceback (most recent call last):\n")
    assert run.err.splitlines()[-1].startswith("Error: database sqlite:///")


def test_a_corrupt_database_is_a_store_failure_not_a_host_failure(
    config: Path, netmetrix: Cli
) -> None:
    db = _corrupt(config.parent / "netmetrix.db")
    run = netmetrix("--config", config, "hosts")
    assert run.code == ExitStatus.STORE
    assert int(ExitStatus.STORE) == 3  # documented
    assert run.err == (
        f"Error: database sqlite:///{db}: cannot read the schema version: file is not a database\n"
    )


def test_store_errors_have_their_own_exit_status() -> None:
    assert StoreError("x").exit_code == ExitStatus.STORE
    assert len({int(s) for s in ExitStatus}) == len(ExitStatus)


def test_expected_errors_keep_one_line_without_debug(config: Path, netmetrix: Cli) -> None:
    run = netmetrix("--config", config, "metrics", "latest", "-h", "f44")
    assert run.code == ExitStatus.USAGE
    assert "Traceback" not in run.err
    assert len(run.err.splitlines()) == 1
