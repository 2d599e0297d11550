"""Samples, hosts, keys, alert state and the outbox in SQLite (default) or PostgreSQL.

SQLAlchemy Core, schema by Alembic.  ``Store`` is what callers hold: open one
with ``Store.open(url)``; a run's writes go through one
``with store.transaction(doing) as tx:`` so they commit together or not at all.
Each method hands its work to one module:

    schema       the tables, the labels' canonical JSON, Alembic's configuration
    engine       the URL, SQLite's WAL and busy timeout, errors as one-line StoreErrors
    files        the SQLite file created owner-only; a warning when others can read it
    migrate      the schema version; Alembic ``upgrade head`` when it is behind
    samples      write_runs (host by host when a row is refused), latest, history,
                 history_buckets (averaged in SQL) and sparklines
    hosts        host rows and host keys (pending, then active)
    collector    the collector id and the upload lock
    alertstate   alert state per (rule, series) and the alert history
    outbox       queued mail and its claim/lease protocol
    rwqueue      samples queued for Prometheus remote-write and the sender's lease
    admin        info, prune, vacuum, upgrade and retention (``netmetrix db``)
    facade       ``Store``: each method runs one of the above in a connection of its own
    transaction  ``Transaction``: the same, inside the caller's one transaction

The store stores: it evaluates no rule and words no mail (``alerts``,
``notice`` and ``pipeline`` do), and imports neither them, the probe, the
config nor click.
"""

from __future__ import annotations

from netmetrix.errors import StoreError
from netmetrix.store.alertstate import ActiveAlert, AlertHistoryRow
from netmetrix.store.collector import UploadRunning
from netmetrix.store.engine import DEFAULT_BUSY_TIMEOUT
from netmetrix.store.facade import Store
from netmetrix.store.hosts import Activated, HostRow
from netmetrix.store.outbox import NewMail, OutboxChange, OutboxItem, OutboxSize
from netmetrix.store.rwqueue import QueuedSample
from netmetrix.store.samples import (
    Buckets,
    LatestRow,
    Refused,
    Sparkline,
    StoredSample,
    Written,
)
from netmetrix.store.schema import (
    SCHEMA_HEAD,
    alembic_config,
    alert_events_table,
    alert_state_table,
    host_keys_table,
    hosts_table,
    labels_json,
    meta_table,
    metadata,
    outbox_table,
    remote_write_lease_table,
    remote_write_queue_table,
    samples_table,
    series_table,
)
from netmetrix.store.transaction import Transaction

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "SCHEMA_HEAD",
    "Activated",
    "ActiveAlert",
    "AlertHistoryRow",
    "Buckets",
    "HostRow",
    "LatestRow",
    "NewMail",
    "OutboxChange",
    "OutboxItem",
    "OutboxSize",
    "QueuedSample",
    "Refused",
    "Sparkline",
    "Store",
    "StoreError",
    "StoredSample",
    "Transaction",
    "UploadRunning",
    "Written",
    "alembic_config",
    "alert_events_table",
    "alert_state_table",
    "host_keys_table",
    "hosts_table",
    "labels_json",
    "meta_table",
    "metadata",
    "outbox_table",
    "remote_write_lease_table",
    "remote_write_queue_table",
    "samples_table",
    "series_table",
]
