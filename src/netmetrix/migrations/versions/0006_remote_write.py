"""Prometheus remote-write: the queue of samples to push, and the sender's lease (#15).

Revision ID: 0006
Revises: 0005
Create Date: 2024-07-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "remote_write_queue",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remote_write_queue")),
    )
    lease = op.create_table(
        "remote_write_lease",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("token", sa.Text(), nullable=True),
        sa.Column("until_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_remote_write_lease")),
    )
    # The one row senders lock (SELECT ... FOR UPDATE) to take turns.
    op.bulk_insert(lease, [{"name": "sender", "token": None, "until_ms": None}])


def downgrade() -> None:
    op.drop_table("remote_write_lease")
    op.drop_table("remote_write_queue")
