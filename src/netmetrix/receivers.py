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
email receiver of their own.  ``config.py`` reads them (its element checker);
this module imports nothing of netmetrix.  ``targets`` turns a rule's receivers into
the outbox rows one event queues: one per email address, one per webhook,
one per Alertmanager URL (each member of an HA cluster gets every alert).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

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


class Routed(Protocol):
    """What ``targets`` needs of an alert rule (``config.AlertRule``)."""

    @property
    def email(self) -> tuple[str, ...]: ...

    @property
    def notify(self) -> tuple[str, ...]: ...


def targets(
    rule: Routed, receivers: Mapping[str, Receiver], *, mail: bool = True
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


def environment_problems(
    receivers: Iterable[Receiver], shown: str, environ: Mapping[str, str]
) -> list[str]:
    """``config check``: each webhook's ``secret_env`` must be set (else it sends unsigned
    requests the receiver refuses, or none at all)."""
    return [
        f'{shown}:{r.line}: <webhook name="{r.name}">: secret_env: environment variable'
        f" {r.secret_env} is not set"
        for r in receivers
        if r.secret_env and not environ.get(r.secret_env)
    ]
