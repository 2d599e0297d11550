"""Which collector last collected each host: hosts.collector ("db1 (2/3)", #15).

Revision ID: 0005
Revises: 0004
Create Date: 2024-07-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "_hosts_0004"
_COLUMNS = ("name", "address", "last_seen_ms", "last_error", "probe_version", "updated_ms")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.add_column("hosts", sa.Column("collector", sa.Text(), nullable=True))
        return
    # SQLite's ADD COLUMN would put the column after the primary key in the stored
    # CREATE TABLE, unlike the model's: rebuild the table instead (as 0003 does).
    op.rename_table("hosts", _OLD)
    op.create_table(
        "hosts",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("last_seen_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("probe_version", sa.Text(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("collector", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_hosts")),
    )
    old = sa.table(_OLD, *(sa.column(name) for name in _COLUMNS))
    op.execute(
        sa.table("hosts", *(sa.column(name) for name in _COLUMNS))
        .insert()
        .from_select(_COLUMNS, sa.select(old))
    )
    op.drop_table(_OLD)


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("collector")
