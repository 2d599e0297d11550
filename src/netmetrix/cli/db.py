"""``netmetrix db info|prune|vacuum|upgrade``: inspect and maintain the database."""

from __future__ import annotations

import sys

import click

from netmetrix.cli._common import DURATION, HelpGroup, Settings, one, open_store
from netmetrix.format import count, file_size, iso
from netmetrix.render import format_option, render
from netmetrix.rows import record

DB_INFO_COLUMNS = (
    *("url", "backend", "collector_id", "schema_version", "schema_head"),
    *("series", "samples", "size_bytes", "oldest", "newest", "collectors"),
    "remote_write_backlog",
)


def register(group: click.Group) -> None:
    """Add ``db`` to the ``netmetrix`` group."""
    group.add_command(db)


@click.group(cls=HelpGroup)
def db() -> None:
    """Inspect and maintain the database.

    The database is config.xml's <database>: a SQLite file or a PostgreSQL
    URL (the password comes from PGPASSWORD or ~/.pgpass, never the URL).

    \b
    Examples:
      netmetrix db info
      netmetrix db prune --older-than 30d && netmetrix db vacuum
      netmetrix db upgrade
    """


@db.command()
@format_option
@click.pass_obj
def info(settings: Settings, fmt: str) -> None:
    """Show the database: URL, collector id, schema, sizes, time span, collectors.

    The URL is shown with any password hidden.  collector_id names this
    store's key and state files on the hosts (<script>.<collector_id>.key),
    so that several collectors, each with its own store, share a host.
    size_bytes is the SQLite file plus its write-ahead log, or
    pg_database_size on PostgreSQL.  collectors: which collector (<collector
    name>, and its --shard) collected the last run of how many hosts, e.g.
    "db1 (1/2) 340 hosts, db2 (2/2) 332 hosts" (JSON: an object).
    remote_write_backlog counts the samples waiting to be sent to
    <remote_write> (empty before `db upgrade` adds the queue).  The table is
    one field per line; JSON and CSV give one flat record.  The schema is not
    upgraded by this command (see `db upgrade`).

    \b
    Examples:
      netmetrix db info
      netmetrix db info --format json | jq '.[0].samples'
    """
    from netmetrix.store import admin

    with open_store(settings.load(), upgrade=False) as store:
        found = admin.info(store)
    row = record(found, DB_INFO_COLUMNS, times=("oldest", "newest"))
    if fmt != "json":
        row["collectors"] = _collectors_text(found.collectors)
    if fmt == "table":
        fields = [{"field": c, "value": row[c]} for c in DB_INFO_COLUMNS]
        render(fields, ("field", "value"), fmt, sys.stdout)
    else:
        render([row], DB_INFO_COLUMNS, fmt, sys.stdout)


def _collectors_text(collectors: dict[str, int]) -> str:
    """``db1 (1/2) 340 hosts, db2 (2/2) 332 hosts``; ``none yet`` before any run."""
    return ", ".join(f"{name} {count(n, 'host')}" for name, n in collectors.items()) or "none yet"


@db.command()
@click.option(
    "--older-than",
    "older_than",
    type=DURATION,
    required=True,
    help="Delete samples older than this: seconds, or with s, m, h, d (30d).",
)
@format_option
@click.pass_obj
def prune(settings: Settings, older_than: float, fmt: str) -> None:
    """Delete the samples older than a given age.

    Deletes in batches of 10,000 samples, one transaction each, so a
    collector running at the same time is never held up for long.  `execute`
    does the same on every run with <retention days="...">; this command is
    for a one-off clean-up.  Series are kept.  `db vacuum` gives the space
    back to the file system afterwards.

    \b
    Examples:
      netmetrix db prune --older-than 30d
      netmetrix db prune --older-than 12h --format json
    """
    from netmetrix.store import admin

    with open_store(settings.load()) as store:
        done = admin.prune(store, older_than)
    row = record(done, ("deleted", "cutoff", "batches"), times=("cutoff",))
    one(row, fmt, f"pruned {count(done.deleted, 'sample')} older than {iso(done.cutoff)}")


@db.command()
@format_option
@click.pass_obj
def vacuum(settings: Settings, fmt: str) -> None:
    """Compact the database and refresh its statistics.

    SQLite: VACUUM rewrites the file (it holds the write lock meanwhile, so
    run it between collections) and the write-ahead log is truncated.
    PostgreSQL: VACUUM (ANALYZE), which makes dead rows' space reusable
    without locking out collectors (netmetrix never runs VACUUM FULL).

    \b
    Examples:
      netmetrix db vacuum
      netmetrix db prune --older-than 90d && netmetrix db vacuum
    """
    from netmetrix.store import admin

    with open_store(settings.load()) as store:
        done = admin.vacuum(store)
        url = store.url_display
    row = {"url": url, "size_before": done.size_before, "size_after": done.size_after}
    sizes = f"{file_size(done.size_before)} -> {file_size(done.size_after)}"
    one(row, fmt, f"vacuumed {url}: {sizes}")


@db.command()
@format_option
@click.pass_obj
def upgrade(settings: Settings, fmt: str) -> None:
    """Bring the database schema up to date (Alembic upgrade head).

    `execute` and the query commands upgrade on their own; this command does
    it explicitly, e.g. right after installing a new netmetrix, and says what
    changed.  Safe to run twice, and while another netmetrix runs.

    \b
    Examples:
      netmetrix db upgrade
      netmetrix db upgrade --format json
    """
    from netmetrix.store import admin

    with open_store(settings.load(), upgrade=False) as store:
        before, after = admin.upgrade(store)
        url = store.url_display
    row = {"url": url, "from": before, "to": after}
    if before == after:
        one(row, fmt, f"{url}: schema already at {after}, the newest")
    else:
        one(row, fmt, f"{url}: schema upgraded from {before or 'none'} to {after}")
