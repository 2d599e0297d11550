"""The store's tables, as SQLAlchemy Core sees them, and the labels' canonical JSON.

The schema is made only by the Alembic migrations in ``netmetrix/migrations``
(run by ``Store.open``); the tables below describe it for queries and must
match what the migrations create (a test compares them).

Prometheus' data model: a series is (host, metric, labels), a sample is
(series, timestamp, value).  Labels are stored as canonical JSON (sorted keys,
no spaces, ``{}`` for none) so equal label sets are equal strings.  The database
holds integer milliseconds since the epoch; the API takes and returns float
unix seconds.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

SCHEMA_HEAD = "0008"  # the head migration; a test keeps the two equal
MIGRATIONS = "netmetrix:migrations"  # Alembic's script_location
NO_LABELS = "{}"
COLLECTOR_ID = "collector_id"  # meta key: names this store's key/state files on the hosts

SeriesKey = tuple[str, str, str]  # host, metric, labels JSON

# Constraint names are fixed here so later migrations can name what they alter.
metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    }
)

hosts_table = Table(
    "hosts",
    metadata,
    Column("name", Text, nullable=False),
    Column("address", Text),
    Column("last_seen_ms", BigInteger),  # last run that answered and verified
    Column("last_error", Text),  # NULL since the last good run
    Column("probe_version", Text),
    Column("updated_ms", BigInteger, nullable=False),
    Column("collector", Text),  # who collected its last run: "db1 (2/3)" (#15)
    PrimaryKeyConstraint("name"),
)

host_keys_table = Table(
    "host_keys",
    metadata,
    Column("host", Text, nullable=False),
    Column("kid", Text, nullable=False),
    Column("key", LargeBinary, nullable=False),
    Column("state", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("host", "kid"),
    CheckConstraint("state IN ('active', 'pending')", name="state"),
)

# Facts about the store itself (#11): ``collector_id``.
meta_table = Table(
    "meta",
    metadata,
    Column("key", Text, nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("key"),
)

series_table = Table(
    "series",
    metadata,
    Column("id", Integer, autoincrement=True),
    Column("host", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("labels", Text, nullable=False),  # canonical JSON, "{}" when none
    PrimaryKeyConstraint("id"),
    UniqueConstraint("host", "metric", "labels"),
    sqlite_autoincrement=True,  # never reuse an id, like a PostgreSQL sequence
)

samples_table = Table(
    "samples",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("value", Double, nullable=False),
    # (series_id, ts_ms) serves both "latest per series" and "range of one series".
    PrimaryKeyConstraint("series_id", "ts_ms"),
    sqlite_with_rowid=False,  # the primary key is the table: no second b-tree
)

# Alerts (#7): state per (rule, series), the alert history, the mail outbox.
alert_state_table = Table(
    "alert_state",
    metadata,
    Column("rule_id", Text, nullable=False),  # alerts.rule_id
    Column("host", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("labels", Text, nullable=False),
    Column("state", Text, nullable=False),  # pending | firing; ok has no row
    Column("breaches", Integer, nullable=False),  # consecutive samples past the limit
    Column("since_ms", BigInteger, nullable=False),  # first of them
    Column("fired_ms", BigInteger),
    Column("notified_ms", BigInteger),  # last ALERT mail, for `repeat`
    Column("value", Double, nullable=False),  # latest value
    Column("ts_ms", BigInteger, nullable=False),  # latest sample evaluated
    Column("rule", Text, nullable=False),  # alerts.rule_text, for people
    Column("severity", Text, nullable=False),
    PrimaryKeyConstraint("rule_id", "host", "metric", "labels"),
    CheckConstraint("state IN ('pending', 'firing')", name="state"),
)

alert_events_table = Table(
    "alert_events",
    metadata,
    Column("id", Integer, autoincrement=True),
    Column("ts_ms", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
    Column("rule_id", Text, nullable=False),
    Column("rule", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("host", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("labels", Text, nullable=False),
    Column("value", Double, nullable=False),
    Column("since_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("id"),
    CheckConstraint("kind IN ('firing', 'repeat', 'resolved')", name="kind"),
    sqlite_autoincrement=True,
)

outbox_table = Table(
    "outbox",
    metadata,
    Column("id", Integer, autoincrement=True),
    Column("event_id", Integer, ForeignKey("alert_events.id", ondelete="CASCADE"), nullable=False),
    Column("recipient", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_attempt_ms", BigInteger),
    Column("last_error", Text),
    Column("delivered_ms", BigInteger, index=True),  # NULL until the server accepted it
    Column("claim", Text),  # the delivering process's token, while it sends
    Column("claim_until_ms", BigInteger),
    Column("failed_ms", BigInteger),  # a dead letter: the server refused it for good (#10)
    # (#16) email | webhook | alertmanager; the <receivers> name ("" for a rule's email=)
    Column("channel", Text, nullable=False),
    Column("receiver", Text, nullable=False),
    PrimaryKeyConstraint("id"),
    sqlite_autoincrement=True,
)

# `alerts silence` (#16): alerts matching one are evaluated and recorded but notify nobody.
silences_table = Table(
    "silences",
    metadata,
    Column("id", Integer, autoincrement=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("starts_ms", BigInteger, nullable=False),
    Column("ends_ms", BigInteger, nullable=False),
    Column("hosts", Text, nullable=False),  # JSON list of names or globs, "[]": every host
    Column("metric", Text, nullable=False),  # "" for every metric
    Column("labels", Text, nullable=False),  # canonical JSON, "{}" when none
    Column("comment", Text, nullable=False),
    Column("author", Text, nullable=False),
    # when a collector notified the alerts it kept quiet, once it had ended
    Column("settled_ms", BigInteger),
    PrimaryKeyConstraint("id"),
    sqlite_autoincrement=True,
)

# The alert events a silence kept from every receiver (history shows them "silenced").
silenced_events_table = Table(
    "silenced_events",
    metadata,
    Column("event_id", Integer, ForeignKey("alert_events.id", ondelete="CASCADE"), nullable=False),
    Column("silence_id", Integer, nullable=False),
    PrimaryKeyConstraint("event_id"),
)


# Prometheus remote-write (#15): samples waiting to be pushed, oldest id first.  A row
# names its series by id, as a sample does; no foreign key, so that queueing adds no
# index to the hot path: a row whose series was deleted (`hosts forget`) is dropped
# when its turn comes.  64-bit ids: a busy collector queues millions of rows a day.
remote_write_queue_table = Table(
    "remote_write_queue",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), autoincrement=True),
    Column("series_id", Integer, nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("value", Double, nullable=False),
    PrimaryKeyConstraint("id"),
)

# Who is sending the queue: one row ("sender"), leased by token like an outbox claim,
# so that one batch at a time leaves the store, oldest first, whoever the collector.
remote_write_lease_table = Table(
    "remote_write_lease",
    metadata,
    Column("name", Text, nullable=False),
    Column("token", Text),
    Column("until_ms", BigInteger),
    PrimaryKeyConstraint("name"),
)
REMOTE_WRITE_SENDER = "sender"  # the lease row's name

# Custom checks (#17): each host's checks as last reported, the plugin's first line and
# since when the check has been in its state (Nagios' "last state change").
check_results_table = Table(
    "check_results",
    metadata,
    Column("host", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("status", Integer, nullable=False),  # 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    Column("text", Text, nullable=False),
    Column("since_ms", BigInteger, nullable=False),  # first run in this status
    Column("ran_ms", BigInteger, nullable=False),  # when the plugin last ran on the host
    Column("duration", Double, nullable=False),  # seconds it took
    Column("ts_ms", BigInteger, nullable=False),  # the run that reported it
    PrimaryKeyConstraint("host", "name"),
)


def labels_json(labels: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """Canonical JSON of a label set: sorted keys, no spaces, ``{}`` when empty."""
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=4096)
def sample_labels_json(labels: tuple[tuple[str, str], ...]) -> str:
    """labels_json for Sample.labels: a fleet repeats the same few label sets."""
    return labels_json(labels)


def alembic_config() -> AlembicConfig:
    """Alembic's configuration for netmetrix's migrations (imports alembic: ~90 ms)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    cfg.set_main_option("path_separator", "os")
    return cfg
