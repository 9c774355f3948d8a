"""dead letters: the same message again is a repeat, not another row

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 18:00:00.000000

``digest`` (sha256 of topic and payload) finds an earlier dead letter of the
same bytes; ``repeats`` and ``last_received_at`` say how often and when it
came again. Letters stored before have no digest and stay as they are.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("digest", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("repeats", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(
            sa.Column("last_received_at", core.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch.create_index("ix_dead_letters_digest", ["digest"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_index("ix_dead_letters_digest")
        batch.drop_column("last_received_at")
        batch.drop_column("repeats")
        batch.drop_column("digest")
