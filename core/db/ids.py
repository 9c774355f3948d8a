"""Primary keys taken before the INSERT, so that a new row needs no flush.

A ticket opened in the middle of a batch gets its id at once (its history,
its notifications and the plugins' snapshots all name it), and the batch's
tickets then go to the database together, in one flush, instead of one
round trip each.
"""

from __future__ import annotations

from sqlalchemy import Select, Table, func, select, text
from sqlalchemy.orm import Session

from core.events import per_transaction

_LAST_TAKEN = per_transaction("vigie_last_taken_ids")
# PostgreSQL: ids taken from the sequence a few at a time, kept for this
# transaction (core.events forgets them at its end: unused ones are gaps).
BLOCK = 8
_NEXTVAL = text(
    "SELECT nextval(pg_get_serial_sequence(:table, :column)) FROM generate_series(1, :block)"
)
_highest: dict[str, Select] = {}  # built once per table: building costs more than running


def take_id(session: Session, table: Table) -> int:
    """A fresh primary key for a new row of ``table`` (single integer key).

    PostgreSQL: the next value of the column's sequence, taken ``BLOCK`` at
    a time (safe under any number of concurrent writers; an id taken and not
    used is a harmless gap). SQLite: one more than the highest id stored or
    already taken in this transaction; safe because a writer holds SQLite's
    write lock from its BEGIN (see :mod:`core.db.engine`).

    Runs on the session's connection without an autoflush: the point is to
    leave pending rows pending.
    """
    connection = session.connection()
    column = next(iter(table.primary_key.columns))
    taken = session.info.setdefault(_LAST_TAKEN, {})
    if connection.dialect.name == "postgresql":
        spare = taken.setdefault(table.name, [])
        if not spare:
            names = {"table": table.name, "column": column.name, "block": BLOCK}
            spare.extend(sorted(connection.execute(_NEXTVAL, names).scalars(), reverse=True))
        return spare.pop()
    highest = _highest.get(table.name)
    if highest is None:
        highest = _highest[table.name] = select(func.max(column))
    stored = connection.execute(highest).scalar() or 0
    new_id = max(stored, taken.get(table.name, 0)) + 1
    taken[table.name] = new_id
    return new_id
