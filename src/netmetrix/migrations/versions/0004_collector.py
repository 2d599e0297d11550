"""Collector identity: a ``meta`` table holding the store's collector id.

The id names this store's key and state files on the hosts
(``<script>.<collector_id>.key``), so several collectors share a host.

Revision ID: 0004
Revises: 0003
Create Date: 2024-07-10
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    meta = op.create_table(
        "meta",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_meta")),
    )
    # Made here, once: Store.open runs the migrations in one write transaction
    # (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so two processes
    # opening a fresh store at once cannot both make one.
    op.bulk_insert(meta, [{"key": "collector_id", "value": secrets.token_hex(4)}])


def downgrade() -> None:
    op.drop_table("meta")
