"""Packaging: the version is written once, optional features name their extra."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from netmetrix import probe

ROOT = Path(__file__).resolve().parent.parent


def test_the_version_is_the_probes_everywhere() -> None:
    """pyproject reads it from the probe; `--version` and the package agree."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "netmetrix.probe.PROBE_VERSION"
    }
    shown = subprocess.run(
        [sys.executable, "-m", "netmetrix", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert shown == f"netmetrix, version {probe.PROBE_VERSION}\n"
    import netmetrix

    assert netmetrix.__version__ == probe.PROBE_VERSION


def test_optional_packages_are_extras_not_requirements() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = " ".join(project["dependencies"])
    for module, extra in (("aiosmtpd", "demo"), ("plotext", "plot"), ("psycopg", "postgres")):
        assert module not in required
        assert any(module in spec for spec in project["optional-dependencies"][extra])
