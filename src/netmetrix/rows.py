"""The records netmetrix shows: one dict per row, the same for every reader.

``--format json`` prints these dicts, ``--format csv`` and the tables show
their columns, and the web API (``/api/v1/``) serves them: one definition of
each kind of record, so that a script reading one reads the others.  Times
are ISO 8601 UTC strings, labels an object, values numbers.  Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from netmetrix.format import iso

if TYPE_CHECKING:
    from netmetrix.config import HostConfig
    from netmetrix.silences import Silence
    from netmetrix.store import ActiveAlert, AlertHistoryRow, HostRow, OutboxItem, StoredSample
    from netmetrix.store.checkresults import CheckRow

SAMPLE_COLUMNS = ("host", "metric", "labels", "ts", "value")
HOST_COLUMNS = (
    *("host", "address", "port", "last_seen", "last_error", "probe_version", "up"),
    "collector",
)
ACTIVE_COLUMNS = ("host", "metric", "labels", "state", "value", "rule", "severity", "since", "ts")
HISTORY_COLUMNS = ("ts", "event", "host", "metric", "labels", "value", "rule", "severity", "since")
OUTBOX_COLUMNS = (
    *("id", "created", "status", "channel", "recipient", "subject"),
    *("attempts", "last_attempt", "last_error", "delivered"),
)


def record(
    item: object,
    columns: Sequence[str],
    *,
    times: Collection[str] = (),
    renamed: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The row of ``columns`` from ``item``'s attributes (``renamed``: column -> attribute);
    the ``times`` columns (unix seconds) as ISO 8601 UTC."""
    row = {c: getattr(item, (renamed or {}).get(c, c)) for c in columns}
    return {c: iso(v) if c in times else v for c, v in row.items()}


def sample_row(sample: StoredSample) -> dict[str, Any]:
    """A sample: host, metric, labels (an object), ts (ISO 8601 UTC), value."""
    return record(sample, SAMPLE_COLUMNS, times=("ts",))


def host_row(host: HostConfig, row: HostRow | None, port: int | None) -> dict[str, Any]:
    """A host: config.xml's entry, what the store knows of it, its SSH port."""
    return {
        "host": host.name,
        "address": host.target,
        "port": port,
        "last_seen": iso(row.last_seen) if row else None,
        "last_error": row.last_error if row else None,
        "probe_version": row.probe_version if row else None,
        "up": None if row is None or row.up is None else int(row.up),
        "collector": row.collector if row else None,
    }


def active_row(alert: ActiveAlert) -> dict[str, Any]:
    """An alert that is pending or firing now."""
    return record(alert, ACTIVE_COLUMNS, times=("since", "ts"))


def history_row(event: AlertHistoryRow) -> dict[str, Any]:
    """One alert event: fired, repeated or resolved; ``firing (silenced)`` when a silence
    kept it from every receiver (#16)."""
    row = record(event, HISTORY_COLUMNS, times=("ts", "since"), renamed={"event": "kind"})
    if event.silenced:
        row["event"] = f"{row['event']} (silenced)"
    return row


SILENCE_COLUMNS = ("id", "hosts", "metric", "labels", "starts", "ends", "author", "comment")


def silence_row(silence: Silence) -> dict[str, Any]:
    """One silence (#16): ``*`` for every host or every metric."""
    row = record(silence, SILENCE_COLUMNS, times=("starts", "ends"))
    return {**row, "hosts": ",".join(silence.hosts) or "*", "metric": silence.metric or "*"}


def outbox_row(item: OutboxItem, now: float) -> dict[str, Any]:
    """One mail of the outbox, its status as of ``now`` (unix seconds)."""
    stored = [c for c in OUTBOX_COLUMNS if c != "status"]
    times = ("created", "last_attempt", "delivered")
    return {**record(item, stored, times=times), "status": outbox_status(item, now)}


def outbox_status(item: OutboxItem, now: float) -> str:
    """pending, sending (a netmetrix holds it), failed (a dead letter) or delivered."""
    if item.delivered is not None:
        return "delivered"
    if item.failed is not None:
        return "failed"
    if item.claimed_until is not None and item.claimed_until > now:
        return "sending"
    return "pending"


CHECK_COLUMNS = ("host", "check", "status", "since", "duration", "last_run", "text")


def check_row(check: CheckRow) -> dict[str, Any]:
    """A custom check of one host (#17): status OK/WARNING/CRITICAL/UNKNOWN, since when,
    how long its last run took (seconds), when it last ran, the plugin's first line."""
    from netmetrix.checks import state_name

    return {
        "host": check.host,
        "check": check.name,
        "status": state_name(check.status),
        "since": iso(check.since),
        "duration": check.duration,
        "last_run": iso(check.ran),
        "text": check.text,
    }
