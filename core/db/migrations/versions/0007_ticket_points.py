"""a spatial index of the tickets' points (see core.db.spatial)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 12:30:00.000000

SQLite: the R*Tree table ``ticket_points`` (longitude, latitude, and the
moment of creation in Unix seconds, a one-second span that holds it), filled
from ``tickets`` and kept by triggers on it. A later migration that rebuilds
``tickets`` (Alembic's batch mode on SQLite copies the table) must create the
triggers again.
PostgreSQL: a GiST index on ``point(longitude, latitude)`` and ``created_at``
(through the ``btree_gist`` extension, a trusted one that ships with
PostgreSQL, created in ``public`` if the database user may); without the
extension, on the point alone.
"""

import logging
from collections.abc import Sequence

from alembic import op

log = logging.getLogger(__name__)
INDEX = "ix_tickets_point"

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The columns of a ticket's entry ({0}: the row); its moment, whole seconds and the next one.
_SECONDS = "CAST(strftime('%s', {0}.created_at) AS INTEGER)"
_POINT = (
    f"{{0}}.longitude, {{0}}.longitude, {{0}}.latitude, {{0}}.latitude, {_SECONDS}, {_SECONDS} + 1"
)
_HAS_POINT = "new.latitude IS NOT NULL AND new.longitude IS NOT NULL"
SQLITE_UP = (
    "CREATE VIRTUAL TABLE ticket_points"
    " USING rtree(id, min_lon, max_lon, min_lat, max_lat, min_t, max_t)",
    f"INSERT INTO ticket_points SELECT id, {_POINT.format('tickets')} FROM tickets"
    " WHERE latitude IS NOT NULL AND longitude IS NOT NULL",
    f"CREATE TRIGGER ticket_points_insert AFTER INSERT ON tickets WHEN {_HAS_POINT}"
    f" BEGIN INSERT INTO ticket_points VALUES (new.id, {_POINT.format('new')}); END",
    "CREATE TRIGGER ticket_points_update AFTER UPDATE OF latitude, longitude, created_at"
    " ON tickets BEGIN DELETE FROM ticket_points WHERE id = old.id;"
    f" INSERT INTO ticket_points SELECT new.id, {_POINT.format('new')} WHERE {_HAS_POINT}; END",
    "CREATE TRIGGER ticket_points_delete AFTER DELETE ON tickets"
    " BEGIN DELETE FROM ticket_points WHERE id = old.id; END",
)
SQLITE_DOWN = (
    "DROP TRIGGER IF EXISTS ticket_points_delete",
    "DROP TRIGGER IF EXISTS ticket_points_update",
    "DROP TRIGGER IF EXISTS ticket_points_insert",
    "DROP TABLE IF EXISTS ticket_points",
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in SQLITE_UP:
            op.execute(statement)
    elif dialect == "postgresql":
        bind = op.get_bind()
        try:
            with bind.begin_nested():  # a savepoint: a refusal leaves the migration going
                bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA public")
        except Exception as exc:
            log.warning("btree_gist unavailable (%s): the bbox index holds the point alone", exc)
            op.execute(f"CREATE INDEX {INDEX} ON tickets USING gist (point(longitude, latitude))")
        else:
            columns = "point(longitude, latitude), created_at"
            op.execute(f"CREATE INDEX {INDEX} ON tickets USING gist ({columns})")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in SQLITE_DOWN:
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {INDEX}")  # btree_gist stays: others may use it
