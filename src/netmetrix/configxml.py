"""Write config.xml: the one place that spells its elements (``config.py`` reads them).

``config init``'s commented example, the demo's config and the tests' fleets are
all ``render(ConfigXml(...))``.  A field left ``None`` is not written, so
``config.py``'s default applies (and ``config show`` says "default").  Values
are escaped (``quoteattr``/``escape``): a URL with ``&`` or a path with a quote
still makes a well-formed file, and ``load_config`` reads back what was given.

A value is written as given when it is a ``str`` ("4h", "~/.ssh/id_ed25519", or
a deliberately bad "ssh" in a test); numbers exactly (``14400``, ``0.1``), booleans
``true``/``false``, tuples comma-separated, label pairs ``mount=/,device=sda``.

Layout: one element per line, indented by two; an element too long for
``WIDTH`` columns gets one line per group of attributes (what, then how; where,
then with what), aligned under its first attribute.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from netmetrix.format import exact

WIDTH = 88  # columns an element may take before its attributes wrap
_INDENT = "  "

Scalar = str | int | float | Path  # str: written as is; a number exactly; a Path as str()
Names = str | Sequence[str]  # "a@x.org,b@x.org" or ("a@x.org", "b@x.org")
Pairs = str | Sequence[tuple[str, str]]  # "mount=/" or (("mount", "/"),)


@dataclass(frozen=True, slots=True, kw_only=True)
class Host:
    """One ``<host>``; ``comment`` is written above it."""

    name: str
    address: str | None = None
    port: int | str | None = None
    user: str | None = None
    key: str | Path | None = None
    directory: str | Path | None = None
    python: str | Path | None = None
    probe: str | None = None  # python | sh (#18)
    shell: str | Path | None = None  # what runs probe="sh"
    labels: Pairs | None = None  # role=db,dc=fra
    comment: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    """One ``<group>`` of ``<hosts>``, written after the hosts."""

    name: str
    hosts: str | Sequence[str]  # "db* pg-*" or ("db*", "pg-*"), written space-separated
    labels: Pairs | None = None
    comment: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One ``<alert>`` rule (``for_count`` is written ``for``); ``comment`` goes above it."""

    metric: str
    op: str
    limit: float | str
    email: Names | None = None
    notify: Names | None = None  # receiver names (#16)
    labels: Pairs | None = None
    for_count: int | str | None = None
    clear: float | str | None = None
    hosts: Names | None = None
    repeat: float | str | None = None  # seconds, or with a unit ("4h")
    resolved: bool | str | None = None
    severity: str | None = None
    check: str | None = None  # a custom check's name: its check_status (#17)
    comment: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SSH:
    known_hosts: str | Path | None = None
    host_key_policy: str | None = None
    connect_timeout: float | str | None = None  # seconds, or with a unit ("30s")
    command_timeout: float | str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SMTP:
    host: str | None = None
    port: int | str | None = None
    security: str | None = None
    sender: str | None = None
    user: str | None = None
    password_env: str | None = None
    timeout: float | str | None = None
    deadline: float | str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Web:
    listen: str | None = None
    user: str | None = None
    password_file: str | Path | None = None
    token_env: str | None = None
    token_file: str | Path | None = None
    tls_cert: str | Path | None = None
    tls_key: str | Path | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Receiver:
    """One child of ``<receivers>``: ``tag`` is email, webhook or alertmanager (#16)."""

    tag: str
    name: str
    to: Names | None = None
    url: str | None = None  # alertmanager: space-separated URLs
    format: str | None = None
    secret_env: str | None = None
    timeout: float | str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Collector:
    name: str | None = None
    shard: str | None = None  # "2/3"
    workers: int | str | None = None  # "auto"


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteWrite:
    url: str | None = None
    username: str | None = None
    password_env: str | None = None
    password_file: str | Path | None = None
    token_env: str | None = None
    token_file: str | Path | None = None
    ca_file: str | Path | None = None
    timeout: float | str | None = None
    deadline: float | str | None = None
    batch: int | str | None = None
    max_backlog: int | str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigXml:
    """A whole config.xml.  ``comment`` goes above ``<netmetrix>``; ``comments`` maps a
    top-level tag ("script", "ssh", "alerts", ...) to the comment written above it."""

    script: str | None = None
    concurrency: int | str | None = None
    database: str | Path | None = None
    ssh: SSH | None = None
    smtp: SMTP | None = None
    encryption: str | None = None  # <security encryption=...>
    retention_days: int | str | None = None  # <retention days=...>
    watch_interval: str | float | None = None  # <watch interval=...>
    web: Web | None = None
    collector: Collector | None = None
    remote_write: RemoteWrite | None = None
    inventories: Sequence[str | Path] = ()  # <inventory file=...>, Ansible inventories
    hosts: Sequence[Host] = ()
    groups: Sequence[Group] = ()
    receivers: Sequence[Receiver] = ()
    alerts: Sequence[Alert] = ()
    digest_over: int | str | None = None  # <alerts digest_over=...>
    comment: str = ""
    comments: Mapping[str, str] = field(default_factory=dict)


# Attribute order and line groups of each element, as the example in `config init` shows them.
_HOST_GROUPS = (
    ("name", "address", "port", "user"),
    ("key", "directory", "python", "probe", "shell", "labels"),
)
_GROUP_GROUPS = (("name", "hosts", "labels"),)
_ALERT_GROUPS = (
    ("metric", "labels", "op", "limit", "for", "clear", "hosts"),
    ("repeat", "resolved", "severity", "email", "notify", "check"),
)
_SSH_GROUPS = (("known_hosts", "host_key_policy"), ("connect_timeout", "command_timeout"))
_SMTP_GROUPS = (
    ("host", "port", "security", "sender"),
    ("user", "password_env", "timeout", "deadline"),
)
_WEB_GROUPS = (
    ("listen", "user", "password_file"),
    ("token_env", "token_file"),
    ("tls_cert", "tls_key"),
    ("url",),
)
_REMOTE_WRITE_GROUPS = (
    ("url",),
    ("username", "password_env", "password_file", "token_env", "token_file", "ca_file"),
    ("timeout", "deadline", "batch", "max_backlog"),
)
_RECEIVER_GROUPS = (("name", "to", "url"), ("format", "secret_env", "timeout"))
_FIELD = {"for": "for_count"}  # an attribute whose field has another name
Attrs = list[list[tuple[str, object]]]  # groups of (name, value); None values are left out


def render(config: ConfigXml) -> str:
    """The text of config.xml for ``config``.

    Raises ValueError for what config.xml cannot hold: a comment containing "--",
    a list item (address, label, glob) containing a comma.
    """
    lines = ['<?xml version="1.0" encoding="UTF-8"?>']
    lines += _comment(config.comment, "")
    lines.append("<netmetrix>")
    for index, (tag, body) in enumerate(_sections(config)):
        comment = config.comments.get(tag, "")
        if index and (comment or tag in ("hosts", "alerts")):
            lines.append("")  # a blank line sets off explained settings and the lists
        lines += _comment(comment, _INDENT)
        lines += body
    lines.append("</netmetrix>")
    return "\n".join(lines) + "\n"


def _sections(config: ConfigXml) -> Iterator[tuple[str, list[str]]]:
    """(tag, lines) of each top-level element that ``config`` gives, in the usual order."""
    for tag in ("script", "concurrency", "database"):
        value = getattr(config, tag)
        if value is not None:
            yield tag, [f"{_INDENT}<{tag}>{escape(_spell(value))}</{tag}>"]
    settings: list[tuple[str, Attrs | None]] = [
        ("ssh", _given(config.ssh, _SSH_GROUPS)),
        ("smtp", _given(config.smtp, _SMTP_GROUPS)),
        ("security", _one_value("encryption", config.encryption)),
        ("retention", _one_value("days", config.retention_days)),
        ("watch", _one_value("interval", config.watch_interval)),
        ("web", _given(config.web, _WEB_GROUPS)),
        ("collector", _given(config.collector, (("name", "shard", "workers"),))),
        ("remote_write", _given(config.remote_write, _REMOTE_WRITE_GROUPS)),
    ]
    for tag, attrs in settings:
        if attrs is not None:
            yield tag, _element(tag, attrs, _INDENT)
    for file in config.inventories:
        yield "inventory", _element("inventory", [[("file", file)]], _INDENT)
    items = [_item("host", h, _HOST_GROUPS) for h in config.hosts]
    items += [_item("group", _spaced(g), _GROUP_GROUPS) for g in config.groups]
    yield "hosts", _list("hosts", [], items)
    if config.receivers:
        receivers = [
            _element(r.tag, _values(r, _RECEIVER_GROUPS), _INDENT * 2) for r in config.receivers
        ]
        yield "receivers", _list("receivers", [], receivers)
    if "checks" in config.comments:
        yield "checks", []  # the example's is all comment: the plugins may not be installed
    digest: Attrs = [[("digest_over", config.digest_over)]]
    if config.alerts or config.digest_over is not None:
        alerts = [_item("alert", a, _ALERT_GROUPS) for a in config.alerts]
        yield "alerts", _list("alerts", digest, alerts)


def _given(settings: object | None, groups: Sequence[Sequence[str]]) -> Attrs | None:
    """The attributes of a settings element, or None when ``settings`` is not given."""
    return None if settings is None else _values(settings, groups)


def _one_value(name: str, value: object | None) -> Attrs | None:
    """The one attribute of a settings element, or None when its value is not given."""
    return None if value is None else [[(name, value)]]


def _values(settings: object, groups: Sequence[Sequence[str]]) -> Attrs:
    return [[(name, getattr(settings, _FIELD.get(name, name))) for name in g] for g in groups]


def _spaced(group: Group) -> Group:
    """``group`` with its members as one space-separated string, as people write them."""
    members = group.hosts if isinstance(group.hosts, str) else " ".join(group.hosts)
    return dataclasses.replace(group, hosts=members)


def _item(tag: str, item: Host | Group | Alert, groups: Sequence[Sequence[str]]) -> list[str]:
    indent = _INDENT * 2
    return _comment(item.comment, indent) + _element(tag, _values(item, groups), indent)


def _list(tag: str, attrs: Attrs, items: list[list[str]]) -> list[str]:
    if not items:
        return _element(tag, attrs, _INDENT)
    start = _element(tag, attrs, _INDENT)[0].removesuffix("/>") + ">"
    return [start, *(line for item in items for line in item), f"{_INDENT}</{tag}>"]


def _element(tag: str, groups: Attrs, indent: str) -> list[str]:
    """``<tag a="1" b="2"/>``: on one line if it fits in WIDTH, else wrapped at the groups."""
    spelled = [[f"{n}={quoteattr(_spell(v))}" for n, v in g if v is not None] for g in groups]
    spelled = [group for group in spelled if group]
    first = f"{indent}<{tag}"
    one_line = " ".join([first, *(a for group in spelled for a in group)]) + "/>"
    if len(one_line) <= WIDTH or sum(map(len, spelled)) < 2:
        return [one_line]
    spelled[-1][-1] += "/>"  # counted in the width of the last line
    lines: list[str] = []
    hang = " " * (len(first) + 1)
    for group in spelled:
        line = f"{first} {group[0]}" if not lines else hang + group[0]
        for attr in group[1:]:
            if len(line) + 1 + len(attr) > WIDTH:
                lines.append(line)
                line = hang + attr
            else:
                line += " " + attr
        lines.append(line)
    return lines


def _comment(text: str, indent: str) -> list[str]:
    """``<!-- text -->``, its later lines aligned under the first."""
    if not text:
        return []
    if "--" in text or text.endswith("-"):
        raise ValueError(f'an XML comment cannot contain "--" or end with "-": {text!r}')
    lines = text.split("\n")
    body = [f"{indent}<!-- {lines[0]}", *(f"{indent}     {line}" for line in lines[1:])]
    body[-1] += " -->"
    return body


def _spell(value: object) -> str:
    """A value as config.xml writes it (see the module docstring)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return exact(value)  # round-trips: 72.0 is "72", 0.1 is "0.1"
    if isinstance(value, str | Path):
        return str(value)
    if isinstance(value, Sequence):
        items = [f"{v[0]}={v[1]}" if isinstance(v, tuple) else str(v) for v in value]
        if any("," in item for item in items):
            raise ValueError(f"a comma-separated list cannot hold {value!r}")
        return ",".join(items)
    raise TypeError(f"cannot write {value!r} in config.xml")
