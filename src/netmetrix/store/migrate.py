"""The schema version: read it, and run the Alembic migrations up to the head.

Alembic is imported only when the database is not at ``SCHEMA_HEAD``: the
import costs ~90 ms of CPU, and every run of netmetrix opens the store.
"""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from netmetrix.errors import StoreError
from netmetrix.store.engine import Database
from netmetrix.store.schema import SCHEMA_HEAD, alembic_config

_PG_MIGRATION_LOCK = 0x6E6D78  # "nmx": pg_advisory_xact_lock key held while migrating


def schema_version(conn: Connection) -> str | None:
    """The Alembic revision the database is at; None before the first migration."""
    # Read alembic's table directly, without importing alembic.
    if not inspect(conn).has_table("alembic_version"):
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return rows[0] if len(rows) == 1 else None


def schema_head() -> str | None:
    """The newest schema version this netmetrix knows (its head migration)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade(db: Database) -> None:
    """Run ``alembic upgrade head`` unless the database is already there.

    Raises StoreError for a schema version this netmetrix does not know (a
    newer one wrote it) or a failed migration.
    """
    with db.reading("read the schema version") as conn:
        current = schema_version(conn)
    if current == SCHEMA_HEAD:  # the every-run case: no alembic import
        return
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    cfg = alembic_config()
    script = ScriptDirectory.from_config(cfg)
    if current == script.get_current_head():
        return
    if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
        raise StoreError(
            f"database {db.url_display}: schema version {current!r} is unknown "
            "to this netmetrix (written by a newer version?)"
        )
    with db.writing("upgrade the schema") as conn:
        if conn.dialect.name == "postgresql":
            # SQLite's BEGIN IMMEDIATE already serialises two processes migrating at once
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        try:
            command.upgrade(cfg, "head")
        except CommandError as err:
            raise StoreError(f"database {db.url_display}: migration failed: {err}") from None
