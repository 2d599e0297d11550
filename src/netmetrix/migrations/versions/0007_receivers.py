"""Receivers and silences (#16): the outbox's channel and receiver; silences.

Every outbox row so far is mail: it becomes channel "email", receiver ""
(a rule's own ``email=`` addresses).  ``silences`` holds `alerts silence`;
``silenced_events`` marks the alert events a silence kept from every receiver.

Revision ID: 0007
Revises: 0006
Create Date: 2024-08-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "_outbox_0006"
_COLUMNS = (
    *("id", "event_id", "recipient", "subject", "body", "created_ms", "attempts"),
    *("last_attempt_ms", "last_error", "delivered_ms", "claim", "claim_until_ms", "failed_ms"),
)


def upgrade() -> None:
    _outbox()
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("starts_ms", sa.BigInteger(), nullable=False),
        sa.Column("ends_ms", sa.BigInteger(), nullable=False),
        sa.Column("hosts", sa.Text(), nullable=False),
        sa.Column("metric", sa.Text(), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("author", sa.Text(), nullable=False),
        sa.Column("settled_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_silences")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "silenced_events",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("silence_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["alert_events.id"],
            name=op.f("fk_silenced_events_event_id_alert_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_silenced_events")),
    )


def _outbox() -> None:
    if op.get_bind().dialect.name != "sqlite":
        for name, default in (("channel", "email"), ("receiver", "")):
            op.add_column(
                "outbox", sa.Column(name, sa.Text(), nullable=False, server_default=default)
            )
            op.alter_column("outbox", name, server_default=None)
        return
    # As in 0003: SQLite's ADD COLUMN would leave the stored schema unlike the model's.
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
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("receiver", sa.Text(), nullable=False),
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
    new = sa.table("outbox", *(sa.column(name) for name in (*_COLUMNS, "channel", "receiver")))
    op.execute(
        new.insert().from_select(
            (*_COLUMNS, "channel", "receiver"),
            sa.select(old, sa.literal("email"), sa.literal("")),
        )
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
    op.drop_table("silenced_events")
    op.drop_table("silences")
    op.execute(sa.text("DELETE FROM outbox WHERE channel <> 'email'"))
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("receiver")
        batch.drop_column("channel")
