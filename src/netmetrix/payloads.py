"""What a webhook or Alertmanager is sent for an alert event (#16): pure JSON values.

``pipeline`` renders one event's payload into its outbox row when it queues it
(as it words a mail); ``hooks`` wraps the rows waiting for one receiver into one
request body: ``batch`` for a JSON webhook, ``slack`` for a Slack/Mattermost
incoming webhook, ``alertmanager`` for Alertmanager's ``POST /api/v2/alerts``.
The JSON webhook body is documented in docs/receivers.md (``VERSION``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from netmetrix.format import iso
from netmetrix.model import AlertEvent

VERSION = 1  # of the JSON webhook body


def event_json(
    event: AlertEvent,
    *,
    event_id: int,
    subject: str,
    address: str,
    host_labels: Mapping[str, str] | None = None,
) -> str:
    """One event, as a JSON webhook's ``events`` list holds it; ``host_labels``: the
    host's labels from config.xml (#18)."""
    value: dict[str, Any] = {
        "id": event_id,
        "status": "resolved" if event.kind == "resolved" else "firing",
        "kind": event.kind,
        "subject": subject,
        "host": event.host,
        "address": address,
        "metric": event.metric,
        "labels": dict(event.labels),
        "host_labels": dict(host_labels or {}),
        "value": event.value,
        "rule": event.rule,
        "severity": event.severity,
        "since": iso(event.since),
        "at": iso(event.ts),
        "reason": event.reason,
    }
    return _dump(value)


def alert_json(
    event: AlertEvent,
    *,
    subject: str,
    description: str,
    dashboard: str | None,
    host_labels: Mapping[str, str] | None = None,
) -> str:
    """One event as an Alertmanager v2 alert: resolved ones carry ``endsAt``.  The host's
    labels from config.xml come first, as target labels do in Prometheus: the series'
    own labels win a clash (#18)."""
    labels = {
        **dict(host_labels or {}),
        "alertname": event.metric,
        "host": event.host,
        **dict(event.labels),
        "severity": event.severity,
    }
    value: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": subject, "description": description},
        "startsAt": iso(event.since),
    }
    if event.kind == "resolved":
        value["endsAt"] = iso(max(event.ts, event.since))
    if dashboard:
        value["generatorURL"] = host_page(dashboard, event.host)
    return _dump(value)


def host_page(dashboard: str, host: str) -> str:
    """The dashboard's page of ``host`` (``<web url>``: its public address)."""
    return f"{dashboard.rstrip('/')}/hosts/{quote(host, safe='')}"


def batch(receiver: str, events: Sequence[str]) -> bytes:
    """The JSON webhook body: ``{"version": 1, "receiver": ..., "events": [...]}``."""
    return _dump(
        {"version": VERSION, "receiver": receiver, "events": [json.loads(e) for e in events]}
    ).encode()


def slack(events: Sequence[str]) -> bytes:
    """A Slack/Mattermost incoming-webhook body: one line per event's subject.

    ``&``, ``<`` and ``>`` are escaped as Slack asks: a label value a host
    reports (``<!channel>``) must not become a mention or a link.
    """
    lines = [_slack_escape(json.loads(e)["subject"]) for e in events]
    return _dump({"text": "\n".join(lines)}).encode()


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def alertmanager(alerts: Sequence[str]) -> bytes:
    """Alertmanager's body: the alerts, the last one of each label set (a resolve
    queued after a fire of the same alert must win)."""
    last: dict[str, Mapping[str, Any]] = {}
    for text in alerts:
        alert = json.loads(text)
        last.pop(key := _dump(alert["labels"]), None)  # keep the order of the last ones
        last[key] = alert
    return _dump(list(last.values())).encode()


def _dump(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
