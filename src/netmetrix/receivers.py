"""Receivers: where alert notifications go (#16), as ``<receivers>`` in config.xml says.

```xml
<receivers>
  <email name="ops" to="ops@example.com,oncall@example.com"/>
  <webhook name="chat" url="https://chat.example.com/hooks/abc" format="slack"
           secret_env="CHAT_SECRET" timeout="5"/>
  <alertmanager name="am" url="http://am1:9093 http://am2:9093"/>
</receivers>
```

A rule names them with ``notify="ops,chat"``; its ``email=`` addresses are an
email receiver of their own.  Parsing lives here, called by ``config.py``
(which owns the element checker); ``targets`` turns a rule's receivers into
the outbox rows one event queues: one per email address, one per webhook,
one per Alertmanager URL (each member of an HA cluster gets every alert).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from netmetrix.config import AlertRule, Config, _Ctx, _Node

Channel = Literal["email", "webhook", "alertmanager"]
WebhookFormat = Literal["json", "slack"]
CHANNELS: tuple[Channel, ...] = ("email", "webhook", "alertmanager")
DEFAULT_TIMEOUT = 10.0  # seconds for one HTTP request


@dataclass(frozen=True, slots=True, kw_only=True)
class Receiver:
    """One ``<email>``, ``<webhook>`` or ``<alertmanager>`` of ``<receivers>``."""

    name: str
    channel: Channel
    to: tuple[str, ...] = ()  # email: the addresses
    urls: tuple[str, ...] = ()  # webhook: one; alertmanager: one or more (an HA cluster)
    format: WebhookFormat = "json"  # webhook only
    secret_env: str = ""  # webhook: HMAC-SHA256 key's environment variable ("": unsigned)
    timeout: float = DEFAULT_TIMEOUT  # seconds per HTTP request
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One outbox row an event queues: ``recipient`` is the address, the webhook's
    receiver name (its URL may hold a token: never stored) or the Alertmanager URL."""

    channel: Channel
    receiver: str  # "" for a rule's own email= addresses
    recipient: str


def targets(
    rule: AlertRule, receivers: Mapping[str, Receiver], *, mail: bool = True
) -> tuple[Target, ...]:
    """Where an event of ``rule`` goes, each place once; ``mail`` False leaves out
    email (a resolve the rule does not mail, ``resolved="false"``, still ends an
    Alertmanager alert)."""
    found: dict[tuple[str, str], Target] = {}
    if mail:
        for address in rule.email:
            target = Target(channel="email", receiver="", recipient=address)
            found.setdefault(("email", address), target)
    for name in rule.notify:
        receiver = receivers.get(name)
        if receiver is None:  # config.py refuses unknown names; a reload race at most
            continue
        for target in _of(receiver, mail=mail):
            found.setdefault((target.channel, target.recipient), target)
    return tuple(found.values())


def _of(receiver: Receiver, *, mail: bool) -> Iterable[Target]:
    name = receiver.name
    if receiver.channel == "email":
        if mail:
            yield from (Target(channel="email", receiver=name, recipient=a) for a in receiver.to)
    elif receiver.channel == "webhook":
        if mail:
            yield Target(channel="webhook", receiver=name, recipient=name)
    else:
        for url in receiver.urls:
            yield Target(channel="alertmanager", receiver=name, recipient=url)


def by_name(receivers: Iterable[Receiver]) -> dict[str, Receiver]:
    return {r.name: r for r in receivers}


def environment_problems(config: Config, shown: str, environ: Mapping[str, str]) -> list[str]:
    """``config check``: each webhook's ``secret_env`` must be set (else it sends unsigned
    requests the receiver refuses, or none at all)."""
    return [
        f'{shown}:{r.line}: <webhook name="{r.name}">: secret_env: environment variable'
        f" {r.secret_env} is not set"
        for r in config.receivers
        if r.secret_env and not environ.get(r.secret_env)
    ]


# ---------------------------------------------------------------- config.xml


_ATTRS: Mapping[Channel, tuple[str, ...]] = {
    "email": ("name", "to"),
    "webhook": ("name", "url", "format", "secret_env", "timeout"),
    "alertmanager": ("name", "url", "timeout"),
}
_NAME_RE = r"[A-Za-z0-9_.-]+"
_URL_EXPECTED = "an http:// or https:// URL like https://hooks.example.com/alerts"
_URLS_EXPECTED = "space-separated http:// or https:// URLs like http://am1:9093 http://am2:9093"


def parse(ctx: _Ctx, node: _Node | None) -> tuple[Receiver, ...]:
    """``<receivers>``: each child checked, names unique."""
    from netmetrix import config as c

    if node is None:
        return ()
    el = c._Element(ctx, node, children=CHANNELS)
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
    from netmetrix import config as c

    channel: Channel = node.tag  # type: ignore[assignment]  # parse() passes only CHANNELS
    el = c._Element(ctx, node, attrs=_ATTRS[channel])
    name = el.required("name", c._matching(_NAME_RE, "a name of letters, digits, _ . -"))
    timeout = el.get("timeout", c._seconds_up_to(300), DEFAULT_TIMEOUT)
    if channel == "email":
        to = el.required("to", c._EMAILS)
        if name is None or to is None:
            return None
        return Receiver(name=name, channel=channel, to=to, line=node.line)
    if channel == "webhook":
        url = el.required("url", c._Conv(_URL_EXPECTED, _http_url))
        formats: tuple[WebhookFormat, ...] = ("json", "slack")
        fmt = el.get("format", c._choice(formats), "json")
        secret = el.get("secret_env", c._ENV_NAME, "")
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
    urls = el.required("url", c._Conv(_URLS_EXPECTED, _http_urls))
    if name is None or urls is None:
        return None
    return Receiver(name=name, channel=channel, urls=urls, timeout=timeout, line=node.line)


def _http_url(raw: str) -> str:
    from urllib.parse import urlsplit

    from netmetrix.config import _Refused

    if "@" in raw.split("?", 1)[0].split("//", 1)[-1].split("/", 1)[0]:
        raise _Refused("the URL contains a user or password; keep secrets out of the config file")
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


def _http_urls(raw: str) -> tuple[str, ...]:
    urls = tuple(dict.fromkeys(raw.split()))
    if not urls:
        raise ValueError(raw)
    return tuple(_http_url(url) for url in urls)


def check_notify(
    problem: Callable[[str], None], names: Sequence[str], known: Collection[str]
) -> None:
    """Every name in a rule's ``notify=`` must be a receiver: catches typos."""
    from netmetrix.config import _near, _show

    for name in names:
        if name in known:
            continue
        near = _near(name, known)
        hint = f', did you mean "{near}"?' if near else "; no <receivers> child has that name"
        problem(f"notify: unknown receiver {_show(name)}{hint}")
