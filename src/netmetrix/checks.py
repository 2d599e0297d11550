"""Custom checks (#17): Nagios plugins the probe runs on the hosts, configured here.

``<checks>`` in config.xml names each plugin's command line; ``upload`` writes,
beside every host's probe, the list of the commands meant for that host,
signed with the host's key (``probe.checks_file_text``).  The probe runs only
what that file lists and only when its MAC verifies, so a host cannot be made
to run a command the collector did not configure.  Commands are split here
with shlex and run without a shell.  The probe seals each check's results
with the built-in metrics: ``check_status``, ``check_duration_seconds``,
``check_perf`` and the first line of the plugin's output (``CheckReport``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_TIMEOUT = 10.0  # seconds a plugin may run, as Nagios' default service_check_timeout is 60
MAX_TIMEOUT = 3600.0
# As the probe has them (a test keeps them equal); the core never imports the probe.
STATES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")  # by exit status
CHECKS_VERSION = 1
CHECK_STATUS = "check_status"
# The metrics checks report and their labels (alert rules may name them).
CHECK_METRICS = {
    CHECK_STATUS: ("check",),
    "check_duration_seconds": ("check",),
    "check_perf": ("check", "label", "unit"),
    "check_perf_warn": ("check", "label", "unit", "edge"),
    "check_perf_crit": ("check", "label", "unit", "edge"),
}
NAME_PATTERN = r"[A-Za-z0-9_.:-]{1,64}"  # a check's name (config.py checks it)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckConfig:
    """One ``<check>``: a Nagios plugin run on the hosts it names."""

    name: str
    argv: tuple[str, ...]  # the command, split with shlex; run without a shell
    timeout: float = DEFAULT_TIMEOUT  # seconds; the probe's own deadline cuts it shorter
    every: float = 0.0  # seconds between runs; 0: every run. In between, the last result
    hosts: tuple[str, ...] = ()  # host selectors as written (web*, @db, role=db); empty: all
    selected: frozenset[str] | None = None  # the hosts they select; None: every host
    line: int = 0


TEXTFILE_PREFIX = "textfile_"  # probe.TEXTFILE_PREFIX: textfile metrics never shadow built-ins


@dataclass(frozen=True, slots=True, kw_only=True)
class TextfileConfig:
    """One ``<textfile>``: a node_exporter textfile directory the probe reads ``*.prom`` in."""

    dir: str  # on the host
    hosts: tuple[str, ...] = ()  # host selectors as written (web*, @db, role=db); empty: all
    selected: frozenset[str] | None = None  # the hosts they select; None: every host
    max_files: int = 100  # *.prom files read, at most (by name)
    max_samples: int = 1000  # samples taken from the directory, at most
    max_bytes: int = 1 << 20  # bytes read from the directory, at most
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ChecksConfig:
    """``<checks>``: the custom checks of the fleet, and the textfile directories."""

    checks: tuple[CheckConfig, ...] = ()
    textfiles: tuple[TextfileConfig, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckReport:
    """One check's result as a host reported it: its state and the plugin's first line."""

    name: str
    status: int  # 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    text: str
    at: float  # unix seconds when the plugin ran (earlier than the run for an every= check)
    duration: float  # seconds


def state_name(status: int) -> str:
    """OK, WARNING, CRITICAL or UNKNOWN for an exit status 0-3 (UNKNOWN otherwise)."""
    return STATES[status] if 0 <= status < len(STATES) else "UNKNOWN"


def _applies(selected: frozenset[str] | None, host: str) -> bool:
    return selected is None or host in selected


def plan_for(config: ChecksConfig, host: str) -> dict[str, Any]:
    """The checks file's content for ``host``: the commands meant for it, no others."""
    checks = [
        {"name": c.name, "argv": list(c.argv), "timeout": c.timeout, "every": c.every}
        for c in config.checks
        if _applies(c.selected, host)
    ]
    textfiles = [
        {"dir": t.dir, "files": t.max_files, "samples": t.max_samples, "bytes": t.max_bytes}
        for t in config.textfiles
        if _applies(t.selected, host)
    ]
    return {"v": CHECKS_VERSION, "host": host, "checks": checks, "textfiles": textfiles}


def checks_file(config: ChecksConfig, host: str, key: bytes) -> bytes:
    """The signed checks file ``upload`` puts beside ``host``'s probe (sealed by ``key``)."""
    from netmetrix import probe

    return bytes(probe.checks_file_text(key, plan_for(config, host)))
