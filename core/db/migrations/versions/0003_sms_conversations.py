"""sms: conversations with residents, and the gateway's message ids already handled

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 15:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sms_conversations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("commune", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("address", sa.String(length=300), nullable=True),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("awaiting", sa.String(length=80), nullable=True),
        sa.Column("asked_times", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("created_at", core.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", core.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", core.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sms_conversations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sms_conversations_phone", ["commune", "phone", "status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_sms_conversations_updated_at"), ["updated_at"], unique=False
        )

    op.create_table(
        "sms_inbound_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("commune", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=True),
        sa.Column("received_at", core.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["sms_conversations.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("commune", "message_id", name="uq_sms_inbound_message"),
    )
    with op.batch_alter_table("sms_inbound_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sms_inbound_messages_received_at"), ["received_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("sms_inbound_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_inbound_messages_received_at"))
    op.drop_table("sms_inbound_messages")
    with op.batch_alter_table("sms_conversations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_conversations_updated_at"))
        batch_op.drop_index("ix_sms_conversations_phone")
    op.drop_table("sms_conversations")
