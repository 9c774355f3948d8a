"""Primary keys taken before the INSERT, so that a new row needs no flush.

A ticket opened in the middle of a batch gets its id at once (its history,
its notifications and the plugins' snapshots all name it), and the batch's
tickets then go to the database together, in one flush, instead of one
round trip each.
"""

from __future__ import annotations

from sqlalchemy import Select, Table, func, select, text
from sqlalchemy.orm import Session

_LAST_TAKEN = "vigie_last_taken_ids"
_NEXTVAL = text("SELECT nextval(pg_get_serial_sequence(:table, :column))")
_highest: dict[str, Select] = {}  # built once per table: building costs more than running


def take_id(session: Session, table: Table) -> int:
    """A fresh primary key for a new row of ``table`` (single integer key).

    PostgreSQL: the next value of the column's sequence (safe under any
    number of concurrent writers; an id taken and not used is a harmless
    gap). SQLite: one more than the highest id stored or already taken in
    this transaction; safe because a writer holds SQLite's write lock from
    its BEGIN (see :mod:`core.db.engine`).

    Runs on the session's connection without an autoflush: the point is to
    leave pending rows pending.
    """
    connection = session.connection()
    column = next(iter(table.primary_key.columns))
    if connection.dialect.name == "postgresql":
        names = {"table": table.name, "column": column.name}
        return connection.execute(_NEXTVAL, names).scalar_one()
    highest = _highest.get(table.name)
    if highest is None:
        highest = _highest[table.name] = select(func.max(column))
    stored = connection.execute(highest).scalar() or 0
    taken = session.info.setdefault(_LAST_TAKEN, {})
    new_id = max(stored, taken.get(table.name, 0)) + 1
    taken[table.name] = new_id
    return new_id
