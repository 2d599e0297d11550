"""config.xml -> frozen dataclasses.

The file is parsed safely (defusedxml: no entity expansion, no external
entities, no DTD) and validated completely before any host is touched.  Every
problem becomes one line ``FILE:LINE: <element ...>: field what, got "value"``;
all problems are reported together in one ``ConfigError`` (exit 2).
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import json
import math
import os
import posixpath
import re
import shlex
import socket
import time
import urllib.parse
import xml.sax
import xml.sax.handler
import xml.sax.xmlreader
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

# No stubs ship with defusedxml (types-defusedxml is not a dependency): these two
# names are Any to mypy, used only to build the parser and catch its refusal.
from defusedxml.common import DefusedXmlException  # type: ignore[import-untyped]
from defusedxml.sax import make_parser  # type: ignore[import-untyped]

from netmetrix import selector
from netmetrix.checks import (
    CHECK_METRICS,
    CHECK_STATUS,
    TEXTFILE_PREFIX,
    CheckConfig,
    ChecksConfig,
    TextfileConfig,
)
from netmetrix.checks import DEFAULT_TIMEOUT as _DEFAULT_CHECK_TIMEOUT
from netmetrix.checks import MAX_TIMEOUT as _MAX_CHECK_TIMEOUT
from netmetrix.checks import NAME_PATTERN as _CHECK_NAME
from netmetrix.errors import ConfigError
from netmetrix.format import duration, labels_text, number
from netmetrix.receivers import (
    CHANNELS,
    DEFAULT_TIMEOUT,
    Channel,
    Receiver,
    WebhookFormat,
)
from netmetrix.sanitize import clean
from netmetrix.selector import Target
from netmetrix.selector import some as _some
from netmetrix.selector import unknown_name as unknown_name  # re-exported: its old home
from netmetrix.shard import Shard, parse_shard

if TYPE_CHECKING:
    from netmetrix.inventory import InventoryHost

HostKeyPolicy = Literal["strict", "accept-new"]
SmtpSecurity = Literal["none", "starttls", "tls"]
Encryption = Literal["preferred", "required"]
ProbeKind = Literal["python", "sh"]  # <host probe=...>: probe.py or probe.sh (#18)
Operator = Literal[">", ">=", "<", "<=", "==", "!="]
Severity = Literal["info", "warning", "critical"]

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
    # The remote probe's directory: "~/..." is in the login user's home (private, made 0700),
    # never a directory other users can write, like the seed's /tmp.
    directory: str = "~/.cache/netmetrix"
    python: str = "python3"
    # The probe that runs there: python's probe.py, or probe.sh for hosts without python (#18),
    # run by `shell`.
    probe: ProbeKind = "python"
    shell: str = "/bin/sh"
    # Its labels (own over its groups', sorted) and groups: selectors and /metrics read them.
    labels: tuple[tuple[str, str], ...] = ()
    groups: tuple[str, ...] = ()
    line: int = 0  # line of the element in config.xml, for messages
    # An Ansible inventory's "file:line" naming the host, and the fields it gave.
    source: str = field(default="", compare=False)
    from_source: frozenset[str] = field(default=frozenset(), compare=False)
    # The attributes written in config.xml: `config show` says "default" for the others.
    given: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def target(self) -> str:
        """What to connect to: the address, or the name when no address is given."""
        return self.address or self.name

    @property
    def selectable(self) -> Target:
        """What host selectors look at: name, labels, groups."""
        return Target(name=self.name, labels=self.labels, groups=self.groups)


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupConfig:
    """One ``<group>`` of ``<hosts>``: its members by name or glob, and their labels."""

    name: str
    hosts: tuple[str, ...] = ()  # names or globs
    labels: tuple[tuple[str, str], ...] = ()
    line: int = 0
    source: str = ""  # an Ansible inventory's file:line when it comes from one


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
    password_env: str = "SMTP_PASSWORD"  # noqa: S105 -- the variable's name, never the secret
    timeout: float = 10.0  # seconds for the connection and each SMTP reply
    deadline: float = 30.0  # seconds for a whole delivery pass; the rest waits for the next


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityConfig:
    encryption: Encryption = "preferred"


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionConfig:
    days: int = 30


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchConfig:
    interval: float = 10.0  # seconds between ticks of `netmetrix watch`


DEFAULT_LISTEN = "127.0.0.1:8470"  # netmetrix serve; loopback unless config.xml says otherwise


@dataclass(frozen=True, slots=True, kw_only=True)
class WebConfig:
    """``<web>``: where ``serve`` (and ``watch --listen``) listen, and who may read."""

    listen: str = DEFAULT_LISTEN  # HOST:PORT; --listen overrides it
    user: str = ""  # basic auth: this user, with the scrypt hash in password_file
    password_file: Path | None = None  # `netmetrix web hash-password` writes its content
    token_env: str = ""  # bearer token: the environment variable that holds it
    token_file: Path | None = None  # ... or the file that holds it
    tls_cert: Path | None = None  # HTTPS with this certificate chain (PEM) ...
    tls_key: Path | None = None  # ... and its private key
    url: str = ""  # its public address, for links in alerts (Alertmanager's generatorURL)

    @property
    def has_auth(self) -> bool:
        return bool(self.user or self.token_env or self.token_file)


def machine_name() -> str:
    """This machine's host name (``socket.gethostname``), as a collector's default name."""
    return clean(socket.gethostname(), 63) or "localhost"


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorConfig:
    """``<collector>``: who this collector is, and which shard of the hosts it collects."""

    name: str = field(default_factory=machine_name)  # shown in `db info` and the dashboard
    shard: Shard | None = None  # None: every host; --shard K/N overrides it
    workers: int = 1  # processes that run the hosts (auto: the CPUs); --workers overrides it

    @property
    def label(self) -> str:
        """What the store keeps of the collector of a host's run: ``db1 (2/3)``, ``db1``."""
        return self.name if self.shard is None else f"{self.name} ({self.shard})"


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteWriteConfig:
    """``<remote_write>``: push every stored sample to a Prometheus remote-write receiver.

    Secrets come from the environment or a file, never from config.xml; at
    most one of basic auth (``username`` with a password) and a bearer token.
    """

    url: str  # http:// or https://, no user or password in it
    username: str = ""  # basic auth: this user, with the password from ...
    password_env: str = ""  # ... this environment variable
    password_file: Path | None = None  # ... or this file
    token_env: str = ""  # bearer token: the environment variable that holds it
    token_file: Path | None = None  # ... or the file that holds it
    ca_file: Path | None = None  # trust only this CA bundle (PEM) for https, not the system's
    timeout: float = 10.0  # seconds for one request
    deadline: float = 30.0  # seconds for a whole send pass of execute; the rest waits
    batch: int = 5000  # samples per request
    max_backlog: int = 1_000_000  # samples kept queued at most; the oldest go first


WATCH_INTERVAL_MIN = 1.0  # seconds: below this a tick is mostly SSH round trips
WATCH_INTERVAL_MAX = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRule:
    metric: str
    op: Operator
    limit: float
    email: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()  # receiver names (<receivers>), besides `email` (#16)
    labels: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs that must match
    hosts: tuple[str, ...] = ()  # host selectors (netmetrix.selector); empty: every host
    # The configured hosts ``hosts`` selects, resolved at load (None: match by name/glob).
    selected: frozenset[str] | None = field(default=None, compare=False)
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
    watch: WatchConfig = field(default_factory=WatchConfig)
    web: WebConfig = field(default_factory=WebConfig)
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    remote_write: RemoteWriteConfig | None = None  # None: samples are not pushed anywhere
    hosts: tuple[HostConfig, ...] = ()
    groups: tuple[GroupConfig, ...] = ()
    receivers: tuple[Receiver, ...] = ()  # <receivers> (#16)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)  # custom checks (#17)
    # Settings written in config.xml ("script", "ssh.connect_timeout", ...), not defaulted.
    given: frozenset[str] = field(default=frozenset(), compare=False)
    # When load_config read the file (unix s): alerts evaluated since then by another process
    # follow a newer config.xml than this one, and are not this one's to retire.
    read_at: float | None = field(default=None, compare=False)

    def select(self, patterns: Sequence[str]) -> tuple[HostConfig, ...]:
        """The hosts that ``-h`` selectors select (all when none); see ``netmetrix.selector``.

        Raises UsageError, one line per pattern that matches no configured host.
        """
        from netmetrix.errors import UsageError

        if not patterns:
            return self.hosts
        by_name = {h.name: h for h in self.hosts}
        names, problems = selector.select(patterns, self.targets(), self.group_names)
        if problems:
            raise UsageError("\n".join(f"{self.path.name}: {p}" for p in problems))
        return tuple(by_name[n] for n in names)

    def targets(self) -> list[Target]:
        """The configured hosts as host selectors see them."""
        return [host.selectable for host in self.hosts]

    def host_labels(self) -> dict[str, dict[str, str]]:
        """Each labelled host's labels, by host name: what leaves netmetrix with its data
        (/metrics' and remote-write's target labels, webhooks, Alertmanager)."""
        return {host.name: dict(host.labels) for host in self.hosts if host.labels}

    @property
    def group_names(self) -> frozenset[str]:
        return frozenset(group.name for group in self.groups)

    def with_shard(self, shard: Shard | None) -> Config:
        """This config with ``--shard`` in place of <collector shard> (None: as it is)."""
        if shard is None:
            return self
        return dataclasses.replace(self, collector=dataclasses.replace(self.collector, shard=shard))

    def shard_source(self, flag: bool) -> str:
        """Where the collector's shard comes from, for messages: the flag or the file."""
        shard = self.collector.shard
        if flag:
            return f"--shard {shard}"
        return f'{self.path.name}: <collector shard="{shard}">'


def select_names(
    patterns: Sequence[str], known: Sequence[str], kind: str = "host"
) -> tuple[tuple[str, ...], list[str]]:
    """(the names in ``known`` that ``patterns`` match, one problem per pattern matching none).

    A pattern is a name or a shell glob (``web*``, ``db[12]``, ``f?``; case
    matters, as in host names).  The names come pattern by pattern, a glob's
    in the order of ``known``, each once.
    """
    selected: dict[str, None] = {}
    problems: list[str] = []
    for pattern in dict.fromkeys(patterns):
        if _GLOB_CHARS.isdisjoint(pattern):
            found = [pattern] if pattern in known else []
        else:
            found = [name for name in known if fnmatchcase(name, pattern)]
        if found:
            selected.update(dict.fromkeys(found))
        elif _GLOB_CHARS.isdisjoint(pattern):
            problems.append(unknown_name(kind, pattern, known))
        else:
            problems.append(f'no {kind} matches "{pattern}"; known {kind}s: {_some(known)}')
    return tuple(selected), problems


# ---------------------------------------------------------------- loading

T = TypeVar("T")
S = TypeVar("S", bound=str)

_HOST_KEY_POLICIES: tuple[HostKeyPolicy, ...] = ("strict", "accept-new")
_SMTP_SECURITIES: tuple[SmtpSecurity, ...] = ("none", "starttls", "tls")
_ENCRYPTIONS: tuple[Encryption, ...] = ("preferred", "required")
_PROBES: tuple[ProbeKind, ...] = ("python", "sh")
_OPERATORS: tuple[Operator, ...] = (">", ">=", "<", "<=", "==", "!=")
_SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")

_ROOT_CHILDREN = (
    *("script", "concurrency", "database", "ssh", "smtp"),
    *("security", "retention", "watch", "web", "collector", "remote_write", "hosts"),
    *("receivers", "alerts", "checks", "inventory"),
)
_SSH_ATTRS = ("known_hosts", "host_key_policy", "connect_timeout", "command_timeout")
_SMTP_ATTRS = (
    *("host", "port", "security", "sender", "user", "password_env"),
    *("timeout", "deadline"),
)
_HOST_ATTRS = (
    *("name", "address", "port", "user", "key", "directory", "python", "labels"),
    *("probe", "shell"),
)
_GROUP_ATTRS = ("name", "hosts", "labels")
_ALERT_ATTRS = (
    *("metric", "op", "limit", "email", "notify", "labels", "hosts", "check"),
    *("for", "repeat", "resolved", "severity", "clear"),
)
# the attribute shown in messages: <host name="f4">
_IDENTITY = MappingProxyType(
    {
        "host": "name",
        "group": "name",
        "alert": "metric",
        "email": "name",
        "webhook": "name",
        "alertmanager": "name",
    }
)

_DEFAULT_DATABASE = "netmetrix.db"
_UNIT_SECONDS = MappingProxyType({"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400})
_NUMBER = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_DURATION_RE = re.compile(rf"({_NUMBER})([smhd]?)")
_INT_RE = re.compile(r"-?[0-9]{1,30}")
_FLOAT_RE = re.compile(rf"[+-]?{_NUMBER}")
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+._-]*://\S*")
_URL_PASSWORD_RE = re.compile(r"://[^/@?#]*:[^/@?#]*@")
_EMAIL = r"[^@\s,<>\"]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_SAFE = r"[A-Za-z0-9_.+@%:,=-]"  # no whitespace, quotes or shell metacharacters
_GLOB_CHARS = frozenset("*?[")


MAX_DURATION = 100 * 365 * 86400.0  # seconds; anything longer is a typo, and breaks date maths


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number, optionally suffixed s, m, h or d ("30", "1.5m", "4h").

    Raises ValueError, with a message for the user, unless the result is > 0
    and at most 100 years (``MAX_DURATION``).
    """
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"invalid duration {_show(text)}: give seconds, or a number with s, m, h or d"
            ' (e.g. "30", "30s", "1.5m", "4h", "2d")'
        )
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    if not 0 < seconds <= MAX_DURATION:
        raise ValueError(
            f"duration must be greater than 0 and at most 100 years, got {_show(text)}"
        )
    return seconds


WORKERS_AUTO = "auto"  # worker processes: one per CPU this process may run on


def cpus() -> int:
    """The CPUs this process may run on (its affinity, else all the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse_workers(text: str) -> int:
    """Worker processes in ``text``: a number >= 1, or ``auto`` (``cpus()``).

    Raises ValueError, with a message for the user, otherwise.
    """
    if text.strip().lower() == WORKERS_AUTO:
        return cpus()
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"give a number of processes (1 or more) or auto, got {_show(text)}")
    return count


def parse_when(text: str, now: float) -> float:
    """A point in time as unix seconds: a duration before ``now`` (``30m``, ``2d``) or
    ISO 8601 (``2026-11-24T10:00Z``; UTC when no zone is given).  ValueError if neither."""
    import datetime as dt

    text = text.strip()
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration ago (30m, 1h, 2d) nor an ISO 8601 time"
            " (2026-11-24T10:00Z)"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def load_config(path: Path) -> Config:
    """Parse and validate ``path``; raise ConfigError listing every problem.

    Messages name the file as given (``str(path)``); ``Config.path`` is absolute.
    """
    shown = str(path)
    read_at = time.time()
    root = _parse_xml(shown, _read(path, shown))
    if root.tag != "netmetrix":
        raise ConfigError(
            [f"{shown}:{root.line}: <{root.tag}>: the root element must be <netmetrix>"]
        )
    absolute = Path(os.path.abspath(path))
    ctx = _Ctx(file=shown, base=absolute.parent)
    config = _config(ctx, root, absolute)
    if ctx.problems:
        raise ConfigError(ctx.messages())
    return dataclasses.replace(config, read_at=read_at)


# ---------------------------------------------------------------- reading XML


@dataclass(slots=True)
class _Node:
    """One parsed element, with the line its start tag is on."""

    tag: str
    attrs: dict[str, str]
    line: int
    text: list[str] = field(default_factory=list)  # character data directly inside
    children: list[_Node] = field(default_factory=list)


class _TreeBuilder(xml.sax.handler.ContentHandler):
    """SAX handler that builds ``_Node``s (ElementTree has no line numbers)."""

    def __init__(self) -> None:
        super().__init__()
        self.root: _Node | None = None
        self._stack: list[_Node] = []
        self._locator: xml.sax.xmlreader.Locator | None = None

    @property
    def line(self) -> int:
        """The parser's current line."""
        line = self._locator.getLineNumber() if self._locator else None
        return line or 1

    def setDocumentLocator(self, locator: xml.sax.xmlreader.Locator) -> None:
        self._locator = locator

    def startElement(self, name: str, attrs: xml.sax.xmlreader.AttributesImpl[str]) -> None:
        node = _Node(name, {key: value.strip() for key, value in attrs.items()}, self.line)
        if self._stack:
            self._stack[-1].children.append(node)
        else:
            self.root = node
        self._stack.append(node)

    def endElement(self, _name: str) -> None:
        self._stack.pop()

    def characters(self, content: str) -> None:
        if self._stack:
            self._stack[-1].text.append(content)


def _read(path: Path, shown: str) -> bytes:
    """The file's bytes, or a one-line ConfigError saying why not."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        reason = f"no such file (use --config FILE or set {CONFIG_ENV})"
    except IsADirectoryError:
        reason = "is a directory, not a config file"
    except PermissionError:
        reason = "cannot read: permission denied"
    except OSError as err:
        reason = f"cannot read: {err.strerror or err}"
    raise ConfigError([f"{shown}: {reason}"])


def _parse_xml(shown: str, data: bytes) -> _Node:
    """The element tree of ``data``; any DOCTYPE (so any entity) is refused."""
    builder = _TreeBuilder()
    parser = make_parser()
    parser.forbid_dtd = True  # no DTD at all: no entity expansion, no external entities
    parser.forbid_entities = True
    parser.forbid_external = True
    parser.setContentHandler(builder)
    source = xml.sax.xmlreader.InputSource(shown)
    source.setByteStream(io.BytesIO(data))
    try:
        parser.parse(source)
    except xml.sax.SAXParseException as err:
        line, what = err.getLineNumber(), err.getMessage()
        raise ConfigError([f"{shown}:{line}: not well-formed XML: {what}"]) from None
    except DefusedXmlException:
        what = "unsafe XML refused: DOCTYPE, entity declarations and external entities"
        raise ConfigError([f"{shown}:{builder.line}: {what} are not allowed"]) from None
    assert builder.root is not None  # a well-formed document has a root element
    return builder.root


# ---------------------------------------------------------------- checking elements


@dataclass(slots=True)
class _Ctx:
    """What validation carries besides the tree: the file as shown, its directory, problems."""

    file: str
    base: Path
    problems: list[tuple[int, str]] = field(default_factory=list)

    def add(self, line: int, where: str, what: str) -> None:
        self.problems.append((line, f"{self.file}:{line}: {where}: {what}"))

    def messages(self) -> list[str]:
        """Every problem, in line order."""
        return [message for _, message in sorted(self.problems, key=lambda p: p[0])]


class _Refused(ValueError):
    """A value error whose message replaces "must be ..., got ..." (e.g. not to echo a secret)."""


@dataclass(frozen=True, slots=True)
class _Conv(Generic[T]):
    """A value parser: ``parse`` raises ValueError; ``expected`` completes "must be ..."."""

    expected: str
    parse: Callable[[str], T]


class _Element:
    """One element: checks its shape on creation, then reads and converts its values."""

    def __init__(
        self,
        ctx: _Ctx,
        node: _Node,
        *,
        attrs: Collection[str] = (),
        children: Collection[str] = (),
        text: bool = False,
    ) -> None:
        self.ctx, self.node, self.label = ctx, node, _label(node)
        for name in node.attrs:
            if name not in attrs:
                self.problem(_unknown_attr(node.tag, name, attrs))
        for child in node.children:
            if child.tag not in children:
                self.problem(_unknown_child(node.tag, child.tag, children), child.line)
        stray = "".join(node.text).strip()
        if stray and not text:
            self.problem(f"unexpected text {_show(stray)}")

    def problem(self, what: str, line: int | None = None) -> None:
        self.ctx.add(line or self.node.line, self.label, what)

    def all(self, tag: str) -> list[_Node]:
        return [child for child in self.node.children if child.tag == tag]

    def one(self, tag: str) -> _Node | None:
        """The child ``tag`` if present; repeats are problems."""
        found = self.all(tag)
        for repeat in found[1:]:
            self.problem(f"duplicate <{tag}>, first at line {found[0].line}", repeat.line)
        return found[0] if found else None

    def get(self, name: str, conv: _Conv[T], default: T) -> T:
        value = self.opt(name, conv)
        return default if value is None else value

    def opt(self, name: str, conv: _Conv[T]) -> T | None:
        raw = self.node.attrs.get(name)
        return None if raw is None else self._convert(conv, raw, name)

    def required(self, name: str, conv: _Conv[T]) -> T | None:
        if name not in self.node.attrs:
            self.problem(f'missing required attribute "{name}"')
        return self.opt(name, conv)

    def text(self, conv: _Conv[T], default: T) -> T:
        raw = "".join(self.node.text).strip()
        if not raw:
            self.problem(f"missing text, expected {conv.expected}")
            return default
        value = self._convert(conv, raw, None)
        return default if value is None else value

    def _convert(self, conv: _Conv[T], raw: str, name: str | None) -> T | None:
        try:
            return conv.parse(raw)
        except _Refused as err:
            self.problem(f"{name}: {err}" if name else str(err))
        except ValueError:
            subject = f"{name} must" if name else "must"
            self.problem(f"{subject} be {conv.expected}, got {_show(raw)}")
        return None


def _label(node: _Node) -> str:
    """``<host name="f4">``: the tag, with the attribute that identifies it if any."""
    key = _IDENTITY.get(node.tag)
    if key is None or key not in node.attrs:
        return f"<{node.tag}>"
    return f"<{node.tag} {key}={_show(node.attrs[key])}>"


def _show(raw: str) -> str:
    """``raw`` quoted for a one-line message (escaped, shortened)."""
    return json.dumps(raw if len(raw) <= 60 else raw[:57] + "...", ensure_ascii=False)


def _near(name: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, sorted(choices), n=1)
    return close[0] if close else None


def _unknown_attr(tag: str, name: str, allowed: Collection[str]) -> str:
    if "password" in name or "passphrase" in name:
        hint = ' (name an environment variable with password_env="...")'
        hint = hint if "password_env" in allowed else ""
        return f'attribute "{name}" is not allowed: secrets never go in the config file{hint}'
    if not allowed:
        return f'unknown attribute "{name}"; <{tag}> takes no attributes'
    near = _near(name, allowed)
    if near is not None:
        return f'unknown attribute "{name}", did you mean "{near}"?'
    return f'unknown attribute "{name}"; allowed: {", ".join(sorted(allowed))}'


def _unknown_child(tag: str, child: str, allowed: Collection[str]) -> str:
    if not allowed:
        return f"unknown element <{child}>; <{tag}> takes no child elements"
    near = _near(child, allowed)
    if near is not None:
        return f"unknown element <{child}>, did you mean <{near}>?"
    return f"unknown element <{child}>; allowed: " + ", ".join(f"<{a}>" for a in allowed)


# ---------------------------------------------------------------- value parsers


def _matching(pattern: str, expected: str) -> _Conv[str]:
    regex = re.compile(pattern)

    def parse(raw: str) -> str:
        if regex.fullmatch(raw) is None:
            raise ValueError(raw)
        return raw

    return _Conv(expected, parse)


def _integer(low: int, high: int | None = None) -> _Conv[int]:
    def parse(raw: str) -> int:
        value = int(raw) if _INT_RE.fullmatch(raw) else low - 1
        if value < low or (high is not None and value > high):
            raise ValueError(raw)
        return value

    return _Conv(f"an integer {low}-{high}" if high else f"an integer >= {low}", parse)


def _number(raw: str) -> float:
    value = float(raw) if _FLOAT_RE.fullmatch(raw) else math.nan
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


def _choice(choices: tuple[S, ...]) -> _Conv[S]:
    def parse(raw: str) -> S:
        for choice in choices:
            if raw == choice:
                return choice
        raise ValueError(raw)

    return _Conv("one of " + ", ".join(choices), parse)


def _boolean(raw: str) -> bool:
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if raw.lower() not in words:
        raise ValueError(raw)
    return words[raw.lower()]


def _comma_list(pattern: str, expected: str) -> _Conv[tuple[str, ...]]:
    regex = re.compile(pattern)

    def parse(raw: str) -> tuple[str, ...]:
        items = [item.strip() for item in raw.split(",")]
        if not all(regex.fullmatch(item) for item in items):
            raise ValueError(raw)
        return tuple(dict.fromkeys(items))

    return _Conv(expected, parse)


def _labels(raw: str) -> tuple[tuple[str, str], ...]:
    pairs: dict[str, str] = {}
    for item in raw.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not value or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", key):
            raise ValueError(raw)
        if key in pairs:
            raise ValueError(raw)
        pairs[key] = value
    return tuple(sorted(pairs.items()))


def _selectors(raw: str) -> tuple[str, ...]:
    texts = selector.split(raw)
    if not texts or selector.check(texts):
        raise ValueError(raw)
    return texts


def _members(raw: str) -> tuple[str, ...]:
    texts = selector.split(raw)
    if not texts or any(selector.parse(t).kind not in ("name", "glob") for t in texts):
        raise ValueError(raw)
    return texts


def _host_labels(raw: str) -> tuple[tuple[str, str], ...]:
    """Host labels: as a series' (``_labels``), but never ``host`` (netmetrix's own
    label on every series) nor ``__...`` (reserved by Prometheus)."""
    pairs = _labels(raw)
    if any(key == "host" or key.startswith("__") for key, _ in pairs):
        raise ValueError(raw)
    return pairs


def _resolve(base: Path, raw: str) -> Path:
    """``raw`` with ``~`` expanded, taken relative to ``base``, normalised (symlinks kept)."""
    return Path(os.path.normpath(base / os.path.expanduser(raw)))


def _path(base: Path) -> _Conv[Path]:
    def parse(raw: str) -> Path:
        if not raw:
            raise ValueError(raw)
        return _resolve(base, raw)

    return _Conv("a file path", parse)


def _database(base: Path) -> _Conv[str]:
    def parse(raw: str) -> str:
        if "://" not in raw:
            return f"sqlite:///{_resolve(base, raw)}"
        if _URL_PASSWORD_RE.search(raw):
            raise _Refused(
                "the URL contains a password; keep secrets out of the config file"
                " (PostgreSQL reads PGPASSWORD or ~/.pgpass)"
            )
        if not _URL_RE.fullmatch(raw):
            raise ValueError(raw)
        return raw

    return _Conv("a file path or an SQLAlchemy URL (postgresql://host/db)", parse)


def _duration(high: float, high_text: str) -> _Conv[float]:
    """A duration in (0, ``high``] seconds."""

    def parse(raw: str) -> float:
        seconds = parse_duration(raw)
        if seconds > high:
            raise ValueError(raw)
        return seconds

    return _Conv(
        f'a duration > 0 and <= {high_text}: seconds, or with s, m, h or d ("30s", "4h")', parse
    )


# Every number has a range: a value past it is a typo, and would break a later run
# (a 10^12-day retention overflowed the date maths of every execute).
_TIMEOUT = _duration(3600, "1h")
_REPEAT = _duration(365 * 86400, "365d")
_PORT = _integer(1, 65535)
_FLOAT = _Conv("a number", _number)
_BOOLEAN = _Conv("true or false (yes/no, 1/0)", _boolean)
_LABELS = _Conv("comma-separated name=value pairs (mount=/,device=sda)", _labels)
_HOST_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
_HOST_NAME = _matching(r"[A-Za-z0-9._-]+", 'a name of letters, digits, ".", "_", "-"')
_ADDRESS = _matching(r"[A-Za-z0-9._:%\[\]-]+", "a host name or IP address")
_USER = _matching(r"\S+", "a user name without spaces")
_SCRIPT = _matching(
    r"[A-Za-z0-9_][A-Za-z0-9._+-]*",
    'a plain file name of letters, digits, ".", "_", "+", "-" (no "/")',
)
_DIRECTORY = _matching(
    rf"(?:/|~/)(?:{_SAFE}|/)*",
    'an absolute path ("/...") or one in the login\'s home ("~/..."),'
    " without spaces or shell metacharacters",
)
_PYTHON = _matching(
    rf"/(?:{_SAFE}|/)*|[A-Za-z0-9_]{_SAFE}*",
    "a command name or an absolute path, without spaces or shell metacharacters",
)
_METRIC = _matching(r"[a-zA-Z_][a-zA-Z0-9_]*", "a metric name like cpu_percent")
_EMAIL_ONE = _matching(_EMAIL, "an address like netmetrix@example.com")
_EMAILS = _comma_list(_EMAIL, "one or more comma-separated addresses like ops@example.com")
_SELECTORS = _Conv(
    "comma-separated host selectors: names, globs, @group, label=value, label!=value"
    " (db-*,web1,@db,role=db)",
    lambda raw: _selectors(raw),
)
_GROUP_MEMBERS = _Conv("host names or globs separated by spaces (db* pg-*)", lambda r: _members(r))
_GROUP_NAME = _matching(r"[A-Za-z0-9._-]+", 'a name of letters, digits, ".", "_", "-"')
_HOST_LABELS = _Conv(
    'comma-separated name=value pairs (role=db,dc=fra); not "host", no leading "__"',
    lambda raw: _host_labels(raw),
)
_RECEIVER_NAMES = _comma_list(r"[A-Za-z0-9_.-]+", "comma-separated receiver names (ops,chat)")
_ENV_NAME = _matching(r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name")


# ---------------------------------------------------------------- sections


def _config(ctx: _Ctx, root: _Node, path: Path) -> Config:
    el = _Element(ctx, root, children=_ROOT_CHILDREN)
    hosts_node = el.one("hosts")
    listed = _inventories(ctx, el.all("inventory"))
    hosts, groups = _hosts(ctx, el, hosts_node, listed)
    default = Config(path=path, database="", ssh=SSHConfig(known_hosts=path))
    database = _database(ctx.base)
    found = _receivers(ctx, el.one("receivers"))
    config = Config(
        path=path,
        script=_text(ctx, el.one("script"), _SCRIPT, default.script),
        concurrency=_text(ctx, el.one("concurrency"), _integer(1, 10000), default.concurrency),
        database=_text(ctx, el.one("database"), database, database.parse(_DEFAULT_DATABASE)),
        ssh=_ssh(ctx, el.one("ssh")),
        smtp=_smtp(ctx, el.one("smtp")),
        security=_security(ctx, el.one("security")),
        retention=_retention(ctx, el.one("retention")),
        watch=_watch(ctx, el.one("watch")),
        web=_web(ctx, el.one("web")),
        collector=_collector(ctx, el.one("collector")),
        remote_write=_remote_write(ctx, el.one("remote_write")),
        hosts=hosts,
        groups=groups,
        receivers=found,
        alerts=_alerts(ctx, el.one("alerts"), hosts, groups, {r.name for r in found}),
        checks=_checks(ctx, el.one("checks"), hosts, groups),
        given=_given(el),
    )
    _check_alert_checks(ctx, config)
    _check_sh_encryption(ctx, config)
    return config


def _given(el: _Element) -> frozenset[str]:
    """The settings written in the file: ``script`` for <script>, ``smtp.port`` for <smtp port>."""
    given = {tag for tag in ("script", "concurrency", "database") if el.all(tag)}
    sections = ("ssh", "smtp", "security", "retention", "watch", "web", "collector")
    for tag in (*sections, "remote_write", "alerts"):
        for node in el.all(tag)[:1]:  # a repeat is already a problem
            given.update(f"{tag}.{name}" for name in node.attrs)
    return frozenset(given)


def _text(ctx: _Ctx, node: _Node | None, conv: _Conv[T], default: T) -> T:
    if node is None:
        return default
    return _Element(ctx, node, text=True).text(conv, default)


def _ssh(ctx: _Ctx, node: _Node | None) -> SSHConfig:
    default = SSHConfig(known_hosts=ctx.base / "known_hosts")
    if node is None:
        return default
    el = _Element(ctx, node, attrs=_SSH_ATTRS)
    return SSHConfig(
        known_hosts=el.get("known_hosts", _path(ctx.base), default.known_hosts),
        host_key_policy=el.get(
            "host_key_policy", _choice(_HOST_KEY_POLICIES), default.host_key_policy
        ),
        connect_timeout=el.get("connect_timeout", _TIMEOUT, default.connect_timeout),
        command_timeout=el.get("command_timeout", _TIMEOUT, default.command_timeout),
    )


def _seconds_up_to(high: float) -> _Conv[float]:
    """A duration > 0 and at most ``high`` seconds."""

    def parse(raw: str) -> float:
        seconds = parse_duration(raw)
        if seconds > high:
            raise ValueError(raw)
        return seconds

    return _Conv(f'a duration > 0 and at most {high:g} s ("10s", "1m")', parse)


_SMTP_SECONDS = _seconds_up_to(3600)  # a pass longer than an hour would delay the next run


def _smtp(ctx: _Ctx, node: _Node | None) -> SMTPConfig:
    default = SMTPConfig()
    if node is None:
        return default
    el = _Element(ctx, node, attrs=_SMTP_ATTRS)
    return SMTPConfig(
        host=el.get("host", _ADDRESS, default.host),
        port=el.get("port", _PORT, default.port),
        security=el.get("security", _choice(_SMTP_SECURITIES), default.security),
        sender=el.get("sender", _EMAIL_ONE, default.sender),
        user=el.node.attrs.get("user", default.user),  # any text; "" means no login
        password_env=el.get("password_env", _ENV_NAME, default.password_env),
        timeout=el.get("timeout", _SMTP_SECONDS, default.timeout),
        deadline=el.get("deadline", _SMTP_SECONDS, default.deadline),
    )


def _security(ctx: _Ctx, node: _Node | None) -> SecurityConfig:
    default = SecurityConfig()
    if node is None:
        return default
    el = _Element(ctx, node, attrs=("encryption",))
    return SecurityConfig(
        encryption=el.get("encryption", _choice(_ENCRYPTIONS), default.encryption)
    )


def _retention(ctx: _Ctx, node: _Node | None) -> RetentionConfig:
    default = RetentionConfig()
    if node is None:
        return default
    el = _Element(ctx, node, attrs=("days",))
    return RetentionConfig(days=el.get("days", _integer(1, 36500), default.days))


def interval_problem(seconds: float) -> str | None:
    """Why ``seconds`` cannot be watch's interval, or None."""
    if WATCH_INTERVAL_MIN <= seconds <= WATCH_INTERVAL_MAX:
        return None
    return f"{seconds:g}s is outside 1s..1h"


def _interval(raw: str) -> float:
    seconds = parse_duration(raw)
    if interval_problem(seconds):
        raise ValueError(raw)
    return seconds


_INTERVAL = _Conv('a duration from 1s to 1h ("10s", "1m")', _interval)


def _watch(ctx: _Ctx, node: _Node | None) -> WatchConfig:
    default = WatchConfig()
    if node is None:
        return default
    el = _Element(ctx, node, attrs=("interval",))
    return WatchConfig(interval=el.get("interval", _INTERVAL, default.interval))


def parse_listen(raw: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8470`` for IPv6) as (host, port); ValueError if it is not."""
    host, sep, port = raw.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(raw)
    if not re.fullmatch(r"[A-Za-z0-9._:-]+", host):
        raise ValueError(raw)
    return host, int(port)


def _listen(raw: str) -> str:
    parse_listen(raw)
    return raw


_LISTEN = _Conv('HOST:PORT, e.g. "127.0.0.1:8470" or "0.0.0.0:8470"', _listen)
_WEB_ATTRS = (
    *("listen", "user", "password_file", "token_env", "token_file", "tls_cert", "tls_key"),
    "url",
)


def _web(ctx: _Ctx, node: _Node | None) -> WebConfig:
    default = WebConfig()
    if node is None:
        return default
    el = _Element(ctx, node, attrs=_WEB_ATTRS)
    path = _path(ctx.base)
    web = WebConfig(
        listen=el.get("listen", _LISTEN, default.listen),
        user=el.get("user", _USER, default.user),
        password_file=el.opt("password_file", path),
        token_env=el.get("token_env", _ENV_NAME, default.token_env),
        token_file=el.opt("token_file", path),
        tls_cert=el.opt("tls_cert", path),
        tls_key=el.opt("tls_key", path),
        url=el.get("url", _WEB_URL, default.url),
    )
    if bool(web.user) != bool(web.password_file):
        el.problem("user and password_file go together (basic auth needs both)")
    if bool(web.tls_cert) != bool(web.tls_key):
        el.problem("tls_cert and tls_key go together (HTTPS needs both)")
    return web


def _shard(raw: str) -> Shard:
    try:
        return parse_shard(raw)
    except ValueError as err:
        raise _Refused(str(err)) from None


_SHARD = _Conv("K/N with 1 <= K <= N", _shard)


def _workers(raw: str) -> int:
    try:
        return parse_workers(raw)
    except ValueError as err:
        raise _Refused(str(err)) from None


_WORKERS = _Conv("a number of processes, or auto", _workers)


def _collector(ctx: _Ctx, node: _Node | None) -> CollectorConfig:
    if node is None:
        return CollectorConfig()
    el = _Element(ctx, node, attrs=("name", "shard", "workers"))
    name = el.opt("name", _HOST_NAME)
    shard = el.opt("shard", _SHARD)
    workers = el.get("workers", _WORKERS, 1)
    if name is None:
        return CollectorConfig(shard=shard, workers=workers)
    return CollectorConfig(name=name, shard=shard, workers=workers)


def _hosts(
    ctx: _Ctx, root: _Element, node: _Node | None, listed: Sequence[_Listed] = ()
) -> tuple[tuple[HostConfig, ...], tuple[GroupConfig, ...]]:
    """The hosts (config.xml's over the inventories'), with their groups' labels, and the
    groups (the inventories', then config.xml's)."""
    if node is None:
        if not root.all("inventory"):
            root.problem('no hosts configured; add <hosts><host name="..."/></hosts>')
        only, listed_groups = _merged({}, listed)
        return _grouped(only, listed_groups), listed_groups
    el = _Element(ctx, node, children=("host", "group"))
    if not el.all("host") and not root.all("inventory"):
        el.problem('no hosts configured; add <host name="..."/>')
    hosts: dict[str, HostConfig] = {}
    places: dict[tuple[str, int, str | None, str], HostConfig] = {}
    for child in el.all("host"):
        host = _host(ctx, child)
        if host is not None and host.name in hosts:
            first = hosts[host.name].line
            ctx.add(child.line, _label(child), f"duplicate host name, first at line {first}")
        elif host is not None:
            hosts[host.name] = host
            if (same := places.setdefault(remote_place(host), host)) is not host:
                ctx.add(child.line, _label(child), _same_files(same))
    merged, from_inventory = _merged(hosts, listed)
    groups = _groups(ctx, el.all("group"), [h.name for h in merged], from_inventory)
    return _grouped(merged, groups), groups


def _groups(
    ctx: _Ctx, nodes: Iterable[_Node], names: Sequence[str], listed: Sequence[GroupConfig] = ()
) -> tuple[GroupConfig, ...]:
    groups: dict[str, GroupConfig] = {g.name: g for g in listed}
    for node in nodes:
        el = _Element(ctx, node, attrs=_GROUP_ATTRS)
        name = el.required("name", _GROUP_NAME)
        members = el.required("hosts", _GROUP_MEMBERS)
        labels = el.get("labels", _HOST_LABELS, ())
        if name is not None and name in groups:
            first = groups[name].source or f"line {groups[name].line}"
            el.problem(f"duplicate group name, first at {first}")
        elif name is not None and members is not None:
            for pattern in members:
                if _GLOB_CHARS.isdisjoint(pattern) and pattern not in names:
                    el.problem(f"hosts: {selector.unknown_name('host', pattern, names)}")
            groups[name] = GroupConfig(name=name, hosts=members, labels=labels, line=node.line)
    return tuple(groups.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class _Listed:
    """The hosts of one ``<inventory>``, checked and converted."""

    shown: str  # the file as messages name it
    hosts: tuple[HostConfig, ...]
    groups: dict[str, list[str]]  # group -> its hosts


def _inventories(ctx: _Ctx, nodes: Sequence[_Node]) -> list[_Listed]:
    """Every ``<inventory file="...">``: its hosts as HostConfig, or its problems."""
    from netmetrix import inventory

    found = []
    for node in nodes:
        el = _Element(ctx, node, attrs=("file",))
        path = el.required("file", _path(ctx.base))
        if path is None:
            continue
        shown = os.path.relpath(path, ctx.base) if path.is_relative_to(ctx.base) else str(path)
        try:
            text = path.read_text(encoding="utf-8")
            hosts = inventory.read(text, shown, yaml=inventory.is_yaml(path.name, text))
        except OSError as err:
            el.problem(f"file: cannot read {path}: {err.strerror or err}")
            continue
        except inventory.InventoryError as err:
            ctx.problems.extend((0, p) for p in err.problems)
            continue
        converted = [_inventory_host(ctx, shown, path.parent, h) for h in hosts]
        groups: dict[str, list[str]] = {}
        for host in hosts:
            for group in host.groups:
                groups.setdefault(group, []).append(host.name)
        found.append(_Listed(shown=shown, hosts=tuple(h for h in converted if h), groups=groups))
    return found


_INVENTORY_FIELDS: Mapping[str, _Conv[Any]] = MappingProxyType(
    {
        **{"address": _ADDRESS, "port": _PORT, "user": _USER, "python": _PYTHON},
        **{"directory": _DIRECTORY, "probe": _choice(_PROBES), "shell": _PYTHON},
    }
)


def _inventory_host(ctx: _Ctx, shown: str, base: Path, host: InventoryHost) -> HostConfig | None:
    """One inventory host as a HostConfig; None (and problems) when a value is bad."""
    values: dict[str, Any] = {}
    bad = False
    for name, raw in host.settings.items():
        conv = _INVENTORY_FIELDS.get(name) or _path(base)
        try:
            values[name] = conv.parse(raw)
        except ValueError:
            ctx.problems.append(
                (
                    0,
                    f"{shown}:{host.line}: host {host.name}: {name} must be"
                    f" {conv.expected}, got {_show(raw)}",
                )
            )
            bad = True
    if bad or not _HOST_NAME_RE.fullmatch(host.name):
        return None
    where = f"{shown}:{host.line}"
    return HostConfig(name=host.name, source=where, from_source=frozenset(values), line=0, **values)


def _merged(
    hosts: Mapping[str, HostConfig], listed: Sequence[_Listed]
) -> tuple[tuple[HostConfig, ...], tuple[GroupConfig, ...]]:
    """config.xml's hosts, completed by the inventories' values they do not give, then the
    inventories' other hosts (the first inventory naming a host wins); their groups."""
    merged = dict(hosts)
    for one in listed:
        for host in one.hosts:
            mine = merged.get(host.name)
            if mine is None:
                merged[host.name] = host
            elif not mine.source:  # written in config.xml: its attributes win
                taken = {f: getattr(host, f) for f in host.from_source if f not in mine.given}
                merged[host.name] = dataclasses.replace(
                    mine, source=host.source, from_source=frozenset(taken), **taken
                )
    groups: dict[str, GroupConfig] = {}
    for one in listed:
        for name, members in one.groups.items():
            if name in groups:
                both = (*groups[name].hosts, *(m for m in members if m not in groups[name].hosts))
                groups[name] = dataclasses.replace(groups[name], hosts=both)
            else:
                groups[name] = GroupConfig(name=name, hosts=tuple(members), source=one.shown)
    return tuple(merged.values()), tuple(groups.values())


def _grouped(hosts: Sequence[HostConfig], groups: Sequence[GroupConfig]) -> tuple[HostConfig, ...]:
    """``hosts`` with their groups and labels: a group's labels, then later groups', then
    the host's own win."""
    done = []
    for host in hosts:
        member = [g for g in groups if any(fnmatchcase(host.name, p) for p in g.hosts)]
        labels = {k: v for g in member for k, v in g.labels} | dict(host.labels)
        done.append(
            dataclasses.replace(
                host, labels=tuple(sorted(labels.items())), groups=tuple(g.name for g in member)
            )
        )
    return tuple(done)


def remote_place(host: HostConfig) -> tuple[str, int, str | None, str]:
    """Where a host's probe, key and state files live: (address, port, user, directory).

    As written in config.xml (no DNS, no ~/.ssh/config): port None is 22, user
    None stays None (whatever ssh picks, the same for both), and ``~/x/``,
    ``x`` and ``./x`` are one directory in the login's home.
    """
    directory = host.directory
    directory = "." if directory in ("~", "~/") else directory.removeprefix("~/")
    return (host.target.lower(), host.port or 22, host.user, posixpath.normpath(directory))


def _same_files(first: HostConfig) -> str:
    return (
        f'same address, port, user and directory as <host name="{first.name}"> at line'
        f" {first.line}: both would use one key file, each upload overwriting the other's"
        " key; give one of them another directory"
    )


def _host(ctx: _Ctx, node: _Node) -> HostConfig | None:
    el = _Element(ctx, node, attrs=_HOST_ATTRS)
    name = el.required("name", _HOST_NAME)
    default = HostConfig(name="")
    host = HostConfig(
        name=name or "",
        address=el.opt("address", _ADDRESS),
        port=el.opt("port", _PORT),
        user=el.opt("user", _USER),
        key=el.opt("key", _path(ctx.base)),
        directory=el.get("directory", _DIRECTORY, default.directory),
        python=el.get("python", _PYTHON, default.python),
        probe=el.get("probe", _choice(_PROBES), default.probe),
        shell=el.get("shell", _PYTHON, default.shell),
        labels=el.get("labels", _HOST_LABELS, ()),
        line=node.line,
        given=frozenset(node.attrs),
    )
    return host if name else None


def _alerts(
    ctx: _Ctx,
    node: _Node | None,
    hosts: Sequence[HostConfig],
    groups: Sequence[GroupConfig],
    receivers: Collection[str] = (),
) -> AlertsConfig:
    default = AlertsConfig()
    if node is None:
        return default
    el = _Element(ctx, node, attrs=("digest_over",), children=("alert",))
    return AlertsConfig(
        digest_over=el.get("digest_over", _integer(0, 1_000_000), default.digest_over),
        rules=tuple(
            rule
            for child in el.all("alert")
            if (rule := _alert(ctx, child, hosts, groups, receivers))
        ),
    )


def _alert(
    ctx: _Ctx,
    node: _Node,
    hosts: Sequence[HostConfig],
    groups: Sequence[GroupConfig],
    receivers: Collection[str],
) -> AlertRule | None:
    el = _Element(ctx, node, attrs=_ALERT_ATTRS)
    check = el.opt("check", _CHECK_NAME_CONV)  # <alert check="nginx"/>: its state (#17)
    metric, op, limit = _alert_test(el, check)
    email = el.get("email", _EMAILS, ())
    notify = el.get("notify", _RECEIVER_NAMES, ())
    if "email" not in node.attrs and "notify" not in node.attrs:
        el.problem('missing required attribute "email" or "notify" (who is told)')
    _check_notify(el.problem, notify, receivers)
    patterns, clear = el.get("hosts", _SELECTORS, ()), el.opt("clear", _FLOAT)
    labels, for_count = el.get("labels", _LABELS, ()), el.get("for", _integer(1, 100_000), 1)
    if check is not None:
        labels = tuple(sorted({**dict(labels), "check": check}.items()))
    repeat, resolved = el.opt("repeat", _REPEAT), el.get("resolved", _BOOLEAN, True)
    severity = el.get("severity", _choice(_SEVERITIES), "warning")
    selected = _rule_hosts(el, patterns, hosts, groups)
    if metric is not None:
        _check_metric(el, metric, labels)
    if metric is None or op is None or limit is None or email is None:
        return None
    _check_clear(el, op, limit, clear)
    return AlertRule(
        metric=metric,
        op=op,
        limit=limit,
        email=email,
        notify=notify,
        labels=labels,
        hosts=patterns,
        selected=selected,
        for_count=for_count,
        repeat=repeat,
        resolved=resolved,
        severity=severity,
        clear=clear,
        line=node.line,
    )


def _alert_test(
    el: _Element, check: str | None
) -> tuple[str | None, Operator | None, float | None]:
    """A rule's metric, op and limit; for ``check=`` the check's state, by default
    WARNING, CRITICAL and UNKNOWN (status >= 1)."""
    if check is None:
        metric, op = el.required("metric", _METRIC), el.required("op", _choice(_OPERATORS))
        return metric, op, el.required("limit", _FLOAT)
    metric = el.get("metric", _METRIC, CHECK_STATUS)
    op, limit = el.opt("op", _choice(_OPERATORS)) or ">=", el.opt("limit", _FLOAT)
    return metric, op, 1.0 if limit is None else limit


def _rule_hosts(
    el: _Element,
    patterns: Sequence[str],
    hosts: Sequence[HostConfig],
    groups: Sequence[GroupConfig],
) -> frozenset[str] | None:
    """The configured hosts ``hosts=`` selects (None: every host).

    A plain name must be a configured host and ``@group`` a group: catches typos.
    A glob or label matcher that selects no host is allowed (``execute`` says so).
    """
    if not patterns:
        return None
    known, group_names = [h.name for h in hosts], {g.name for g in groups}
    parsed = [selector.parse(p) for p in patterns]  # valid: _SELECTORS read them
    for one in parsed:
        if one.kind == "group" and one.name not in group_names:
            el.problem(f"hosts: {selector.unknown_name('group', one.name, group_names)}")
        elif one.kind == "name" and one.name not in known:
            near = _near(one.name, known)
            hint = f', did you mean "{near}"?' if near else "; no <host> has that name"
            el.problem(f"hosts: unknown host {_show(one.name)}{hint}")
    targets = [h.selectable for h in hosts]
    return frozenset(t.name for t in targets if any(s.matches(t) for s in parsed))


def _check_metric(el: _Element, metric: str, labels: Iterable[tuple[str, str]]) -> None:
    """The metric must be one the probe or the collector reports, its label names its own:
    a misspelled rule would otherwise be accepted and never fire."""
    from netmetrix.probe import METRIC_LABELS, METRICS

    known = {name for name, *_ in METRICS} | {"up"} | set(CHECK_METRICS)
    if metric.startswith(TEXTFILE_PREFIX):
        return  # a node_exporter textfile's metric: its names and labels are the host's
    if metric not in known:
        near = _near(metric, known)
        names = ", ".join(name for name, *_ in METRICS)
        hint = f', did you mean "{near}"?' if near else f"; known metrics: up, {names}"
        el.problem(f"metric: unknown metric {_show(metric)}{hint}")
        return
    allowed = METRIC_LABELS.get(metric, ()) or CHECK_METRICS.get(metric, ())
    for key, _ in labels:
        if key in allowed:
            continue
        if not allowed:
            el.problem(f'labels: {metric} has no labels, got "{key}"')
            continue
        near = _near(key, allowed)
        hint = f', did you mean "{near}"?' if near else f"; it has {', '.join(allowed)}"
        el.problem(f"labels: {metric} has no label {_show(key)}{hint}")


def _check_clear(el: _Element, op: Operator, limit: float, clear: float | None) -> None:
    """``clear`` must lie on the side of ``limit`` where the rule does not fire."""
    if clear is None:
        return
    if op in ("==", "!="):
        el.problem(f'clear is only allowed with op >, >=, < or <=, not "{op}"')
        return
    ok, side = (clear <= limit, "<=") if op in (">", ">=") else (clear >= limit, ">=")
    if not ok:
        got = _show(el.node.attrs["clear"])
        el.problem(f'clear must be {side} limit {limit:g} for op "{op}", got {got}')


# ---------------------------------------------------------------- local files (config check)

_SQLITE_PATH_RE = re.compile(r"sqlite(?:\+\w+)?:///([^?]+)")


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalCheck:
    """What ``config check`` finds in local files: problems (exit 2) and notes (fine)."""

    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def check_local_files(
    config: Config, shown: str, key_problem: Callable[[Path], str | None]
) -> LocalCheck:
    """Check the files a run will need before any host is touched: keys, database directory.

    ``key_problem(path)`` says why a private key cannot be used, or None
    (``ssh.key_file_problem``; passed in so that this module needs no asyncssh).
    A key shared by many hosts is checked and reported once, at its first host.
    """
    users: dict[Path, list[HostConfig]] = {}
    for host in config.hosts:
        if host.key is not None:
            users.setdefault(host.key, []).append(host)
    problems = []
    for key, hosts in users.items():
        problem = key_problem(key)
        if problem is not None:
            others = len(hosts) - 1
            more = f" (also the key of {others} more host{'s' * (others > 1)})" if others else ""
            label = f"<host name={_show(hosts[0].name)}>"
            path = json.dumps(str(key), ensure_ascii=False)  # whole: _show would shorten it
            problems.append(f"{shown}:{hosts[0].line}: {label}: key {path}: {problem}{more}")
    notes = []
    match = _SQLITE_PATH_RE.fullmatch(config.database)
    if match is not None and match[1] != ":memory:":
        directory = Path(match[1]).parent
        if not directory.exists():
            notes.append(
                f"{shown}: <database>: directory {directory} does not exist yet; "
                "netmetrix creates it on first use"
            )
        elif not directory.is_dir():
            problems.append(f"{shown}: <database>: {directory} is not a directory")
    return LocalCheck(problems=tuple(problems), notes=tuple(notes))


# ---------------------------------------------------------------- effective settings (config show)

SSH_CONFIG_SOURCE = "~/.ssh/config"  # the source of a host field the OpenSSH config gave


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedHost:
    """A host's connection fields once the OpenSSH client config applies (``ssh.resolve_host``).

    ``address``, ``port`` and ``user`` are None when it could not be applied at all.
    """

    address: str | None = None
    port: int | None = None
    user: str | None = None
    identity: tuple[str, ...] = ()  # its IdentityFile lines
    proxy_jump: str | None = None
    from_ssh_config: frozenset[str] = frozenset()  # the options it set: "Hostname", "Port"...
    error: str | None = None  # why connecting would fail before dialling (an unreadable key...)


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """One setting in effect: its name, its value as text, and where the value comes from."""

    setting: str  # "smtp.port", "host.f4.user"...
    value: str
    source: str  # config.xml (or config.xml:LINE), "default", "environment", ~/.ssh/config...


def _setting(setting: str, value: object, source: str) -> Setting:
    shown = number(value) if isinstance(value, float) else "" if value is None else str(value)
    return Setting(setting=setting, value=shown, source=source)


def effective_settings(config: Config, environ: Mapping[str, str]) -> list[Setting]:
    """Every setting but the hosts', in config.xml's order, and where each comes from.

    The source is the file's name for a setting it writes (even when equal to
    the default), "default" for one it leaves out (the dataclass default
    applies).  Secrets never appear: for a password, the environment variable
    that holds it (in ``environ``) and whether it is set.  Durations read as
    config.xml takes them (``format.duration``: ``1.5d``).
    """
    file = config.path.name

    def given(setting: str, value: object) -> Setting:
        return _setting(setting, value, file if setting in config.given else "default")

    rows = [_setting("config", config.path, "--config")]
    rows += [given("script", config.script), given("concurrency", config.concurrency)]
    rows += _database_settings(config, environ, given)
    ssh = config.ssh
    rows += [
        given("ssh.known_hosts", ssh.known_hosts),
        given("ssh.host_key_policy", ssh.host_key_policy),
    ]
    rows += [
        given(f"ssh.{n}", duration(getattr(ssh, n))) for n in ("connect_timeout", "command_timeout")
    ]
    smtp = config.smtp
    rows += [
        given(f"smtp.{n}", getattr(smtp, n)) for n in ("host", "port", "security", "sender", "user")
    ]
    state = "set" if smtp.password_env in environ else "not set"
    rows.append(_setting("smtp.password", f"${smtp.password_env} ({state})", "environment"))
    rows += [given(f"smtp.{n}", duration(getattr(smtp, n))) for n in ("timeout", "deadline")]
    rows.append(given("security.encryption", config.security.encryption))
    rows.append(given("retention.days", config.retention.days))
    rows.append(given("watch.interval", duration(config.watch.interval)))
    rows.append(given("collector.name", config.collector.name))
    rows.append(given("collector.shard", config.collector.shard or "every host"))
    rows.append(given("collector.workers", config.collector.workers))
    rows += _remote_write_settings(config, environ, given)
    rows += _receiver_settings(config, environ)
    rows += _check_settings(config)
    rows.append(given("alerts.digest_over", config.alerts.digest_over))
    rows += [
        _setting(f"alert.{index}", rule_summary(rule), f"{file}:{rule.line}")
        for index, rule in enumerate(config.alerts.rules, 1)
    ]
    return rows


def _database_settings(
    config: Config, environ: Mapping[str, str], given: Callable[[str, object], Setting]
) -> list[Setting]:
    """The database URL (any password hidden) and, for PostgreSQL, where its password is."""
    from sqlalchemy import make_url  # only `config show` needs it

    url = make_url(config.database)
    rows = [given("database", url.render_as_string(hide_password=True))]
    if url.get_backend_name() == "postgresql":
        state = "set" if "PGPASSWORD" in environ else "not set: ~/.pgpass or no password"
        rows.append(_setting("database.password", f"$PGPASSWORD ({state})", "environment"))
    return rows


def _remote_write_settings(
    config: Config, environ: Mapping[str, str], given: Callable[[str, object], Setting]
) -> list[Setting]:
    """``<remote_write>``'s settings, its secrets shown as where they come from."""
    rw = config.remote_write
    if rw is None:
        return []
    rows = [given("remote_write.url", rw.url)]
    if rw.username:
        rows.append(given("remote_write.username", rw.username))
    for what, env, file in (
        ("password", rw.password_env, rw.password_file),
        ("token", rw.token_env, rw.token_file),
    ):
        if env:
            state = "set" if env in environ else "not set"
            rows.append(_setting(f"remote_write.{what}", f"${env} ({state})", "environment"))
        elif file is not None:
            rows.append(given(f"remote_write.{what}_file", file))
    if rw.ca_file is not None:
        rows.append(given("remote_write.ca_file", rw.ca_file))
    rows += [given(f"remote_write.{n}", duration(getattr(rw, n))) for n in ("timeout", "deadline")]
    rows += [given(f"remote_write.{n}", getattr(rw, n)) for n in ("batch", "max_backlog")]
    return rows


def _receiver_settings(config: Config, environ: Mapping[str, str]) -> list[Setting]:
    """A row per ``<receivers>`` entry.  A webhook's URL shows its host only: the path
    of a Slack or Mattermost URL is its secret."""
    rows = []
    for receiver in config.receivers:
        if receiver.channel == "email":
            what = "email " + ", ".join(receiver.to)
        elif receiver.channel == "webhook":
            where = urllib.parse.urlsplit(receiver.urls[0])
            what = f"webhook ({receiver.format}) {where.scheme}://{where.netloc}/..."
            if receiver.secret_env:
                state = "set" if receiver.secret_env in environ else "not set"
                what += f", signed with ${receiver.secret_env} ({state})"
        else:
            what = f"{receiver.channel} " + " ".join(receiver.urls)
        where_set = f"{config.path.name}:{receiver.line}"
        rows.append(_setting(f"receiver.{receiver.name}", what, where_set))
    return rows


def _check_settings(config: Config) -> list[Setting]:
    """A row per ``<check>`` (its command as the host runs it) and per ``<textfile>``."""
    file = config.path.name
    rows = []
    for check in config.checks.checks:
        what = shlex.join(check.argv)
        if check.every:
            what += f", every {duration(check.every)}"
        if check.hosts:
            what += f", on {' '.join(check.hosts)}"
        rows.append(_setting(f"check.{check.name}", what, f"{file}:{check.line}"))
    for index, textfile in enumerate(config.checks.textfiles, 1):
        what = textfile.dir + (f", on {' '.join(textfile.hosts)}" if textfile.hosts else "")
        rows.append(_setting(f"textfile.{index}", what, f"{file}:{textfile.line}"))
    return rows


def rule_summary(rule: AlertRule) -> str:
    """A rule on one line, as config.xml says it: ``disk_percent{mount=/} >= 90, for 3,
    repeat 4h, critical -> ops@example.com``."""
    labels = f"{{{labels_text(dict(rule.labels))}}}" if rule.labels else ""
    parts = [f"{rule.metric}{labels} {rule.op} {number(rule.limit)}"]
    if rule.for_count != 1:
        parts.append(f"for {rule.for_count}")
    if rule.clear is not None:
        parts.append(f"clear {number(rule.clear)}")
    if rule.repeat is not None:
        parts.append(f"repeat {duration(rule.repeat)}")
    if rule.hosts:
        parts.append(f"hosts {','.join(rule.hosts)}")
    if not rule.resolved:
        parts.append("resolved no")
    parts.append(f"{rule.severity} -> {','.join((*rule.email, *rule.notify))}")
    return ", ".join(parts)


def host_settings(config: Config, host: HostConfig, resolved: ResolvedHost) -> list[Setting]:
    """A host's settings in effect: config.xml's fields, else the OpenSSH config's, else SSH's
    defaults (``resolved``: what ``ssh.resolve_host`` made of it), and the probe's place."""
    where = f"{config.path.name}:{host.line}"
    prefix = f"host.{host.name}"
    rows = [] if resolved.error is None else [_setting(f"{prefix}.error", resolved.error, "ssh")]

    def origin(name: str) -> str:
        """config.xml's line, or the inventory's that gave the field (#18)."""
        return host.source if name in host.from_source else where

    if host.source:
        rows.append(_setting(f"{prefix}.inventory", host.source, host.source))

    def pick(name: str, given: object, option: str, value: object) -> None:
        """The value execute will use: config.xml's unless the OpenSSH config rewrites it."""
        if resolved.address is None or (given is not None and value == given):
            if given is not None:
                rows.append(_setting(f"{prefix}.{name}", given, origin(name)))
            return
        source = SSH_CONFIG_SOURCE if option in resolved.from_ssh_config else "default"
        rows.append(_setting(f"{prefix}.{name}", value, source))

    pick("address", host.address, "Hostname", resolved.address)
    pick("port", host.port, "Port", resolved.port)
    pick("user", host.user, "User", resolved.user)
    keys = host.key or " ".join(resolved.identity) or "~/.ssh/id_* and ssh-agent"
    pick("key", host.key, "IdentityFile", keys)
    if resolved.proxy_jump is not None:
        rows.append(_setting(f"{prefix}.proxy_jump", resolved.proxy_jump, SSH_CONFIG_SOURCE))
    # probe and shell only for sh hosts: the others' rows stay as before (#18)
    for name in ("directory", "python", *(("probe", "shell") if host.probe == "sh" else ())):
        source = origin(name) if name in host.given | host.from_source else "default"
        rows.append(_setting(f"{prefix}.{name}", getattr(host, name), source))
    home = where if host.line else host.source  # a host only an inventory names
    if host.groups:
        rows.append(_setting(f"{prefix}.groups", ",".join(host.groups), home))
    if host.labels:
        text = ",".join(f"{key}={value}" for key, value in host.labels)
        rows.append(_setting(f"{prefix}.labels", text, home))
    return rows


# ---------------------------------------------------------------- <remote_write>

_REMOTE_WRITE_ATTRS = (
    *("url", "username", "password_env", "password_file", "token_env", "token_file"),
    *("ca_file", "timeout", "deadline", "batch", "max_backlog"),
)
_REMOTE_URL_EXAMPLE = "https://prometheus.example.com/api/v1/write"


_USERINFO_RE = re.compile(r"^[^/?#]*//[^/?#]*@")


def _http_url(raw: str, instead: str = "") -> str:
    """An http(s) URL with a host, no fragment, no blank and no credentials in it;
    ``instead``: where the credentials go, said when some are in the URL."""
    from urllib.parse import urlsplit

    if _USERINFO_RE.search(raw):  # checked first: the message must not echo a password
        where = f" ({instead})" if instead else ""
        raise _Refused(
            f"the URL contains a user or password; keep secrets out of the config file{where}"
        )
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(raw) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ValueError(raw)
    if any(char.isspace() for char in raw):
        raise ValueError(raw)
    return raw


def _remote_url(raw: str) -> str:
    return _http_url(raw, "username= with password_env= or password_file=")


_REMOTE_URL = _Conv(f"an http:// or https:// URL like {_REMOTE_URL_EXAMPLE}", _remote_url)
_REMOTE_SECONDS = _seconds_up_to(3600)
_WEB_URL = _Conv("an http:// or https:// URL like https://netmetrix.example.com", _remote_url)


def _remote_write(ctx: _Ctx, node: _Node | None) -> RemoteWriteConfig | None:
    if node is None:
        return None
    el = _Element(ctx, node, attrs=_REMOTE_WRITE_ATTRS)
    default = RemoteWriteConfig(url="")
    path = _path(ctx.base)
    found = RemoteWriteConfig(
        url=el.required("url", _REMOTE_URL) or "",
        username=el.get("username", _USER, default.username),
        password_env=el.get("password_env", _ENV_NAME, default.password_env),
        password_file=el.opt("password_file", path),
        token_env=el.get("token_env", _ENV_NAME, default.token_env),
        token_file=el.opt("token_file", path),
        ca_file=el.opt("ca_file", path),
        timeout=el.get("timeout", _REMOTE_SECONDS, default.timeout),
        deadline=el.get("deadline", _REMOTE_SECONDS, default.deadline),
        batch=el.get("batch", _integer(1, 100_000), default.batch),
        max_backlog=el.get("max_backlog", _integer(1, 1_000_000_000), default.max_backlog),
    )
    for problem in _remote_auth_problems(found):
        el.problem(problem)
    return found


def _remote_auth_problems(rw: RemoteWriteConfig) -> list[str]:
    """What is wrong with the way ``<remote_write>`` logs in (one line each)."""
    problems = []
    password = bool(rw.password_env) + bool(rw.password_file)
    token = bool(rw.token_env) + bool(rw.token_file)
    if password > 1:
        problems.append("give password_env or password_file, not both")
    if token > 1:
        problems.append("give token_env or token_file, not both")
    if bool(rw.username) != bool(password):
        problems.append(
            "username and password_env (or password_file) go together (basic auth needs both)"
        )
    if (rw.username or password) and token:
        problems.append(
            "basic auth (username) and a bearer token (token_env, token_file) exclude each other"
        )
    return problems


# ---------------------------------------------------------------- <receivers> (#16)


_RECEIVER_ATTRS: Mapping[Channel, tuple[str, ...]] = {
    "email": ("name", "to"),
    "webhook": ("name", "url", "format", "secret_env", "timeout"),
    "alertmanager": ("name", "url", "timeout"),
}
_RECEIVER_NAME_RE = r"[A-Za-z0-9_.-]+"
_URL_EXPECTED = "an http:// or https:// URL like https://hooks.example.com/alerts"
_URLS_EXPECTED = "space-separated http:// or https:// URLs like http://am1:9093 http://am2:9093"


def _receivers(ctx: _Ctx, node: _Node | None) -> tuple[Receiver, ...]:
    """``<receivers>``: each child checked, names unique."""
    if node is None:
        return ()
    el = _Element(ctx, node, children=CHANNELS)
    found: list[Receiver] = []
    first: dict[str, int] = {}
    for child in node.children:
        if child.tag not in CHANNELS:
            continue  # already a problem
        receiver = _receiver(ctx, child)
        if receiver is None:
            continue
        if receiver.name in first:
            el.problem(
                f'duplicate receiver name "{receiver.name}", first at line {first[receiver.name]}',
                child.line,
            )
            continue
        first[receiver.name] = child.line
        found.append(receiver)
    return tuple(found)


def _receiver(ctx: _Ctx, node: _Node) -> Receiver | None:
    channel: Channel = node.tag  # type: ignore[assignment]  # parse() passes only CHANNELS
    el = _Element(ctx, node, attrs=_RECEIVER_ATTRS[channel])
    name = el.required("name", _matching(_RECEIVER_NAME_RE, "a name of letters, digits, _ . -"))
    timeout = el.get("timeout", _seconds_up_to(300), DEFAULT_TIMEOUT)
    if channel == "email":
        to = el.required("to", _EMAILS)
        if name is None or to is None:
            return None
        return Receiver(name=name, channel=channel, to=to, line=node.line)
    if channel == "webhook":
        url = el.required("url", _Conv(_URL_EXPECTED, _http_url))
        formats: tuple[WebhookFormat, ...] = ("json", "slack")
        fmt = el.get("format", _choice(formats), "json")
        secret = el.get("secret_env", _ENV_NAME, "")
        if name is None or url is None:
            return None
        return Receiver(
            name=name,
            channel=channel,
            urls=(url,),
            format=fmt,
            secret_env=secret,
            timeout=timeout,
            line=node.line,
        )
    urls = el.required("url", _Conv(_URLS_EXPECTED, _http_urls))
    if name is None or urls is None:
        return None
    return Receiver(name=name, channel=channel, urls=urls, timeout=timeout, line=node.line)


def _http_urls(raw: str) -> tuple[str, ...]:
    urls = tuple(dict.fromkeys(raw.split()))
    if not urls:
        raise ValueError(raw)
    return tuple(_http_url(url) for url in urls)


def _check_notify(
    problem: Callable[[str], None], names: Sequence[str], known: Collection[str]
) -> None:
    """Every name in a rule's ``notify=`` must be a receiver: catches typos."""
    for name in names:
        if name in known:
            continue
        near = _near(name, known)
        hint = f', did you mean "{near}"?' if near else "; no <receivers> child has that name"
        problem(f"notify: unknown receiver {_show(name)}{hint}")


# ---------------------------------------------------------------- <checks> (#17)

_CHECK_ATTRS = ("name", "command", "timeout", "every", "hosts")


def _checks(
    ctx: _Ctx, node: _Node | None, hosts: Sequence[HostConfig], groups: Sequence[GroupConfig]
) -> ChecksConfig:
    """``<checks>``: the custom checks (``checks``), each name once."""
    if node is None:
        return ChecksConfig()
    el = _Element(ctx, node, children=("check", "textfile"))
    textfiles = tuple(_textfile(ctx, child, hosts, groups) for child in el.all("textfile"))
    found: dict[str, CheckConfig] = {}
    for child in el.all("check"):
        check = _check(ctx, child, hosts, groups)
        if check is None:
            continue
        if check.name in found:
            first = found[check.name].line
            el.problem(f'duplicate check name "{check.name}", first at line {first}', child.line)
            continue
        found[check.name] = check
    return ChecksConfig(checks=tuple(found.values()), textfiles=textfiles)


_TEXTFILE_DIR = _matching(r"/[^\x00]*", "an absolute directory path on the host")


def _textfile(
    ctx: _Ctx, node: _Node, hosts: Sequence[HostConfig], groups: Sequence[GroupConfig]
) -> TextfileConfig:
    attrs = ("dir", "hosts", "max_files", "max_samples", "max_bytes")
    el, default = _Element(ctx, node, attrs=attrs), TextfileConfig(dir="")
    patterns = el.get("hosts", _SELECTORS, ())
    return TextfileConfig(
        dir=el.required("dir", _TEXTFILE_DIR) or "",
        hosts=patterns,
        selected=_rule_hosts(el, patterns, hosts, groups),
        max_files=el.get("max_files", _integer(1, 10_000), default.max_files),
        max_samples=el.get("max_samples", _integer(1, 5_000), default.max_samples),
        max_bytes=el.get("max_bytes", _integer(1, 64 << 20), default.max_bytes),
        line=node.line,
    )


def _command(raw: str) -> tuple[str, ...]:
    """A check's command line split into words, as a shell would (but none will run it)."""
    try:
        words = shlex.split(raw)
    except ValueError as exc:  # no closing quotation
        raise _Refused(f"cannot be split into words: {exc}") from None
    if not words:
        raise ValueError(raw)
    return tuple(words)


_CHECK_NAME_CONV = _matching(_CHECK_NAME, 'a name of letters, digits, "_.:-" (at most 64)')
_COMMAND = _Conv("a command line like /usr/lib/nagios/plugins/check_load -w 5 -c 10", _command)


def _check(
    ctx: _Ctx, node: _Node, hosts: Sequence[HostConfig], groups: Sequence[GroupConfig]
) -> CheckConfig | None:
    el = _Element(ctx, node, attrs=_CHECK_ATTRS)
    name, argv = el.required("name", _CHECK_NAME_CONV), el.required("command", _COMMAND)
    timeout = el.get("timeout", _seconds_up_to(_MAX_CHECK_TIMEOUT), _DEFAULT_CHECK_TIMEOUT)
    every = el.get("every", _seconds_up_to(MAX_DURATION), 0.0)
    patterns = el.get("hosts", _SELECTORS, ())
    selected = _rule_hosts(el, patterns, hosts, groups)
    if name is None or argv is None:
        return None
    return CheckConfig(
        name=name,
        argv=argv,
        timeout=timeout,
        every=every,
        hosts=patterns,
        selected=selected,
        line=node.line,
    )


def _check_alert_checks(ctx: _Ctx, config: Config) -> None:
    """A rule on a check's metrics must name a configured check: a typo would never fire."""
    names = [c.name for c in config.checks.checks]
    for rule in config.alerts.rules:
        check = dict(rule.labels).get("check")
        if rule.metric in CHECK_METRICS and check is not None and check not in names:
            near = _near(check, names)
            hint = f', did you mean "{near}"?' if near else "; no <check> has that name"
            where = f"<alert metric={_show(rule.metric)}>"
            ctx.add(rule.line, where, f"check: unknown check {_show(check)}{hint}")


def _check_sh_encryption(ctx: _Ctx, config: Config) -> None:
    """A host whose probe cannot encrypt (probe="sh") under encryption="required" is refused
    at load: every run would be refused anyway."""
    if config.security.encryption != "required":
        return
    what = (
        'probe="sh" seals with an HMAC only (no encryption), but'
        ' <security encryption="required"/>; install python3 with `cryptography` there'
        ' and use probe="python", or set encryption="preferred"'
    )
    for host in config.hosts:
        if host.probe != "sh":
            continue
        if host.line and "probe" not in host.from_source:
            ctx.add(host.line, f"<host name={_show(host.name)}>", what)
        else:
            ctx.problems.append((0, f"{host.source}: host {host.name}: {what}"))
