"""config.xml -> frozen dataclasses.

The file is parsed safely (defusedxml: no entity expansion, no external
entities, no DTD) and validated completely before any host is touched.  Every
problem becomes one line ``FILE:LINE: <element ...>: field what, got "value"``;
all problems are reported together in one ``ConfigError`` (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

HostKeyPolicy = Literal["strict", "accept-new"]
SmtpSecurity = Literal["none", "starttls", "tls"]
Encryption = Literal["preferred", "required"]
Operator = Literal[">", ">=", "<", "<=", "==", "!="]

DEFAULT_CONFIG = "config.xml"
CONFIG_ENV = "NETMETRIX_CONFIG"


@dataclass(frozen=True, slots=True, kw_only=True)
class HostConfig:
    """One ``<host>``.  ``None`` fields fall back to ~/.ssh/config, then SSH defaults."""

    name: str
    address: str | None = None  # None: connect to `name` (OpenSSH HostName may rewrite it)
    port: int | None = None
    user: str | None = None
    key: Path | None = None  # private key file, "~" expanded
    directory: str = "/tmp"
    python: str = "python3"
    line: int = 0  # line of the element in config.xml, for messages

    @property
    def target(self) -> str:
        """What to connect to: the address, or the name when no address is given."""
        return self.address or self.name


@dataclass(frozen=True, slots=True, kw_only=True)
class SSHConfig:
    known_hosts: Path  # resolved relative to the config file
    host_key_policy: HostKeyPolicy = "strict"
    connect_timeout: float = 10.0  # seconds
    command_timeout: float = 30.0  # seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class SMTPConfig:
    host: str = "localhost"
    port: int = 25
    security: SmtpSecurity = "none"
    sender: str = "netmetrix@localhost"
    user: str = ""
    password_env: str = "SMTP_PASSWORD"  # name of the variable, never the secret


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityConfig:
    encryption: Encryption = "preferred"


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionConfig:
    days: int = 30


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRule:
    metric: str
    op: Operator
    limit: float
    email: tuple[str, ...]
    labels: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs that must match
    hosts: tuple[str, ...] = ()  # names or fnmatch globs; empty: every host
    for_count: int = 1  # consecutive failing samples before firing (`for=`)
    repeat: float | None = None  # seconds between re-notifications while firing
    resolved: bool = True
    severity: str = "warning"
    clear: float | None = None  # hysteresis limit
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertsConfig:
    digest_over: int = 10
    rules: tuple[AlertRule, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    path: Path  # absolute path of the config file
    script: str = "client.py"
    concurrency: int = 50
    database: str  # SQLAlchemy URL; a plain path becomes sqlite:/// relative to `path`
    ssh: SSHConfig
    smtp: SMTPConfig = field(default_factory=SMTPConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    hosts: tuple[HostConfig, ...] = ()
    alerts: AlertsConfig = field(default_factory=AlertsConfig)

    def select(self, names: tuple[str, ...]) -> tuple[HostConfig, ...]:
        """Hosts named on the command line (all when none); unknown names: UsageError."""
        from netmetrix.errors import UsageError

        if not names:
            return self.hosts
        by_name = {h.name: h for h in self.hosts}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            known = ", ".join(sorted(by_name)) or "(none)"
            raise UsageError(
                f"{self.path.name}: unknown host {', '.join(map(repr, unknown))}; known hosts: {known}"
            )
        return tuple(by_name[n] for n in dict.fromkeys(names))


def resolve_config_path(option: str | None, environ: dict[str, str]) -> Path:
    """``--config`` wins, then $NETMETRIX_CONFIG, then ./config.xml."""
    return Path(option or environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(path: Path) -> Config:
    """Parse and validate ``path``; raise ConfigError listing every problem."""
    raise NotImplementedError  # filled in by the config work
