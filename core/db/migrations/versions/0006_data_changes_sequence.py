"""PostgreSQL: the sequence that counts commits which changed data

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 12:00:00.000000

``vigie_data_changes`` is advanced after each commit of a transaction that
wrote (``core.db.data_version.count_commits``); a cache of public answers
(``core.answer_cache``) reuses an answer only while it has not moved. SQLite
needs nothing: its ``PRAGMA data_version`` counts commits itself.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE IF NOT EXISTS vigie_data_changes")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE IF EXISTS vigie_data_changes")
