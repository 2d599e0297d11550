"""Alembic environment for netmetrix: run by ``Store.open``, not by the ``alembic`` CLI.

``Store.open`` passes its connection, already inside a write transaction, as
``config.attributes["connection"]``; the migrations run in that transaction.
Offline mode (``--sql``) renders SQL for ``sqlalchemy.url``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from netmetrix.store import metadata


def run_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    conn = context.config.attributes.get("connection")
    if not isinstance(conn, Connection):
        raise RuntimeError("netmetrix migrations run from Store.open(), which passes a connection")
    run_online(conn)
