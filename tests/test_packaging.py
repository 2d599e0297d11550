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


def _without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter in which ``module`` cannot be imported."""
    code = (
        "import sys; sys.modules[sys.argv[1]] = None\n"
        "from netmetrix.cli import main\n"
        "sys.exit(main(sys.argv[2:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, module, *args], capture_output=True, text=True, timeout=120
    )


def test_demo_without_aiosmtpd_names_the_extra() -> None:
    ran = _without("aiosmtpd", "demo", "--hosts", "1")
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr == (
        "netmetrix demo needs the Python package aiosmtpd, which is not installed:"
        " pip install 'netmetrix[demo]'\n"
    )


def test_plot_without_plotext_names_the_extra(tmp_path: Path) -> None:
    config = tmp_path / "config.xml"
    config.write_text('<netmetrix><hosts><host name="a"/></hosts></netmetrix>\n')
    ran = _without(
        "plotext", "--config", str(config), "metrics", "history", "-h", "a", "-m", "load1", "--plot"
    )
    assert ran.returncode == 2, ran.stderr
    assert "pip install 'netmetrix[plot]'" in ran.stderr
    assert "Traceback" not in ran.stderr
