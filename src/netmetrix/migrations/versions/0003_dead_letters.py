"""Dead letters: outbox mail the SMTP server refused for good (failed_ms).

Revision ID: 0003
Revises: 0002
Create Date: 2024-07-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "_outbox_0002"
_COLUMNS = (
    *("id", "event_id", "recipient", "subject", "body", "created_ms", "attempts"),
    *("last_attempt_ms", "last_error", "delivered_ms", "claim", "claim_until_ms"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.add_column("outbox", sa.Column("failed_ms", sa.BigInteger(), nullable=True))
        return
    # SQLite's ADD COLUMN appends to the stored CREATE TABLE text after the
    # constraints, and a batch rebuild leaves the name quoted: either way the
    # schema would differ from the model's.  Rebuild the table by hand instead.
    op.drop_index(op.f("ix_outbox_delivered_ms"), table_name="outbox")
    op.rename_table("outbox", _OLD)
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_attempt_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_ms", sa.BigInteger(), nullable=True),
        sa.Column("claim", sa.Text(), nullable=True),
        sa.Column("claim_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("failed_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["alert_events.id"],
            name=op.f("fk_outbox_event_id_alert_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sqlite_autoincrement=True,
    )
    old = sa.table(_OLD, *(sa.column(name) for name in _COLUMNS))
    op.execute(
        sa.table("outbox", *(sa.column(name) for name in _COLUMNS))
        .insert()
        .from_select(_COLUMNS, sa.select(old))
    )
    # Ids of dropped mail are never handed out again (AUTOINCREMENT's counter).
    seq = sa.table("sqlite_sequence", sa.column("name"), sa.column("seq"))
    op.execute(seq.delete().where(seq.c.name == "outbox"))
    op.execute(
        seq.insert().from_select(
            ("name", "seq"),
            sa.select(sa.literal("outbox"), seq.c.seq).where(seq.c.name == _OLD),
        )
    )
    op.drop_table(_OLD)
    op.create_index(op.f("ix_outbox_delivered_ms"), "outbox", ["delivered_ms"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("failed_ms")
