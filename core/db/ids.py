"""Primary keys taken before the INSERT, so that a new row needs no flush.

A ticket opened in the middle of a batch gets its id at once (its history,
its notifications and the plugins' snapshots all name it), and the batch's
tickets then go to the database together, in one flush, instead of one
round trip each.

On SQLite, every new row of a flush gets its id this way too
(:func:`install`): SQLite cannot say which new rowid went to which row of a
multi-row ``INSERT ... RETURNING``, so SQLAlchemy inserts rows that wait for
their key one statement each (its "insertmanyvalues" documentation). With
their ids given, a flush inserts a table's rows in one ``executemany``: a
batch of 32 Open311 POSTs wrote its 96 history events, 32 signals and 16
messages in 3 statements instead of 144.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, Integer, Select, Table, event, func, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from core.events import per_transaction

# Per table, for this transaction (core.events forgets them at its end).
# SQLite: the highest id taken. PostgreSQL: the ids taken from the sequence
# and not given yet, ahead (take_ids_ahead) or a few at a time (take_id);
# unused ones are gaps.
_LAST_TAKEN = per_transaction("vigie_last_taken_ids")
# SQLite: ids taken ahead for this transaction (take_ids_ahead), per table.
_AHEAD = per_transaction("vigie_ids_taken_ahead")
# PostgreSQL: how many ids take_id takes from a sequence at a time.
BLOCK = 8
# The query of the highest ids of some tables, built once per tuple of table
# names: building it costs more than running it.
_highest: dict[tuple[str, ...], Select] = {}


def take_id(session: Session, table: Table) -> int:
    """A fresh primary key for a new row of ``table`` (single integer key).

    PostgreSQL: the next value of the column's sequence, taken ``BLOCK`` at
    a time (safe under any number of concurrent writers; an id taken and not
    used is a harmless gap). SQLite: one taken ahead (:func:`take_ids_ahead`),
    else one more than the highest id stored or already taken in this
    transaction; safe because a writer holds SQLite's
    write lock from its BEGIN (see :mod:`core.db.engine`).

    Runs on the session's connection without an autoflush: the point is to
    leave pending rows pending.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        spare = session.info.setdefault(_LAST_TAKEN, {}).setdefault(table.name, [])
        if not spare:
            spare.extend(reversed(_sequence_ids_of(session, {table: BLOCK})[table]))
        return spare.pop()
    ahead = session.info.get(_AHEAD, {}).get(table.name)
    if ahead:
        return ahead.pop()
    return _sqlite_ids(session, table, 1)[0]


def take_ids_ahead(
    session: Session, wanted: Mapping[Table, int], connection: Connection | None = None
) -> None:
    """Take ids of several tables at once (``wanted``: how many of each), in one
    query, for :func:`take_id` and :func:`give_ids` to give in this transaction
    (a batch knows about how many rows it adds).

    SQLite: exactly ``wanted``, after the highest stored; those not given are
    not stored, and the next transaction takes them again: no gaps. On the
    session's connection, which holds the write lock.

    PostgreSQL: from the tables' sequences, on ``connection`` if given (a
    sequence is outside transactions: taken on a connection in autocommit,
    before the session's transaction begins, they cost that transaction no
    round trip). Ids not given are gaps; rows beyond ``wanted`` get theirs
    as usual."""
    wanted = {table: count for table, count in wanted.items() if count > 0}
    if not wanted:
        return
    if session.get_bind().dialect.name == "sqlite":
        ahead = session.info.setdefault(_AHEAD, {})
        for table, ids in _sqlite_ids_of(session, wanted).items():
            ahead.setdefault(table.name, [])[:0] = reversed(ids)  # given from the end
        return
    spare = session.info.setdefault(_LAST_TAKEN, {})
    taken = _sequence_ids_on(connection or session.connection(), wanted)
    for table, ids in taken.items():
        spare.setdefault(table.name, [])[:0] = reversed(ids)  # given from the end


def _sqlite_ids(session: Session, table: Table, count: int) -> list[int]:
    """``count`` ids after the highest stored or already taken in this transaction."""
    return _sqlite_ids_of(session, {table: count})[table]


def _sqlite_ids_of(session: Session, wanted: dict[Table, int]) -> dict[Table, list[int]]:
    """:func:`_sqlite_ids` for several tables, their highest ids read in one query."""
    names = tuple(table.name for table in wanted)
    highest = _highest.get(names)
    if highest is None:
        highest = _highest[names] = select(
            *(select(func.max(_key_column(table))).scalar_subquery() for table in wanted)
        )
    stored = session.connection().execute(highest).one()
    taken = session.info.setdefault(_LAST_TAKEN, {})
    given: dict[Table, list[int]] = {}
    for (table, count), last_stored in zip(wanted.items(), stored, strict=True):
        first = max(last_stored or 0, taken.get(table.name, 0)) + 1
        taken[table.name] = first + count - 1
        given[table] = list(range(first, first + count))
    return given


def _sequence_ids_of(session: Session, wanted: dict[Table, int]) -> dict[Table, list[int]]:
    """PostgreSQL: ``count`` new values of each table's key sequence, in one query."""
    return _sequence_ids_on(session.connection(), wanted)


def _sequence_ids_on(connection: Connection, wanted: dict[Table, int]) -> dict[Table, list[int]]:
    names = tuple((table.name, _key_column(table).name) for table in wanted)
    query = _from_sequences.get(names)
    if query is None:
        arrays = ", ".join(
            f"ARRAY(SELECT nextval(pg_get_serial_sequence(:table_{i}, :column_{i}))"
            f" FROM generate_series(1, :count_{i}))"
            for i in range(len(names))
        )
        query = _from_sequences[names] = text(f"SELECT {arrays}")
    values: dict[str, Any] = {}
    for i, (name, count) in enumerate(zip(names, wanted.values(), strict=True)):
        values |= {f"table_{i}": name[0], f"column_{i}": name[1], f"count_{i}": count}
    taken = connection.execute(query, values).one()
    return {table: sorted(ids) for table, ids in zip(wanted, taken, strict=True)}


_from_sequences: dict[tuple[tuple[str, str], ...], Any] = {}


def _key_column(table: Table) -> Any:
    return next(iter(table.primary_key.columns))


def install(factory: sessionmaker[Session]) -> None:
    """On SQLite, give the new rows of each flush of ``factory``'s sessions their
    ids first (in the order they were added), for the reason in this module's
    docstring. Not on PostgreSQL, whose flush gets a table's new keys from its
    ``INSERT ... RETURNING``: taking them first would cost one more round trip."""

    def before_flush(session: Session, _context: Any, _instances: Any) -> None:
        if session.get_bind().dialect.name == "sqlite":
            give_ids(session)

    event.listen(factory, "before_flush", before_flush)


def give_ids(session: Session) -> None:
    """Give the session's new rows without one their single integer primary key,
    in the order they were added: on SQLite as :func:`take_id` does, on
    PostgreSQL from each table's sequence, all tables in one query."""
    waiting: dict[Table, list[tuple[Any, str]]] = {}
    for instance in session.new:  # in the order added (a dict of states underneath)
        key = integer_key(inspect(instance).mapper)
        if key is None:
            continue
        table, attribute = key
        if getattr(instance, attribute) is None:
            waiting.setdefault(table, []).append((instance, attribute))
    if not waiting:
        return
    wanted = {table: len(rows) for table, rows in waiting.items()}
    if session.get_bind().dialect.name == "postgresql":
        ids = _ahead_first(session, wanted, _LAST_TAKEN, _sequence_ids_of)
    else:
        ids = _ahead_first(session, wanted, _AHEAD, _sqlite_ids_of)
    for table, rows in waiting.items():
        for (instance, attribute), new_id in zip(rows, ids[table], strict=True):
            setattr(instance, attribute, new_id)


def _ahead_first(
    session: Session,
    wanted: dict[Table, int],
    store: str,
    take: Callable[[Session, dict[Table, int]], dict[Table, list[int]]],
) -> dict[Table, list[int]]:
    """The ids taken ahead for this transaction (``session.info[store]``) first,
    lowest first; then, for what they do not cover, ``take``'s, in one query."""
    ahead = session.info.setdefault(store, {})
    given: dict[Table, list[int]] = {}
    missing: dict[Table, int] = {}
    for table, count in wanted.items():
        spare = ahead.get(table.name) or []
        given[table] = [spare.pop() for _ in range(min(count, len(spare)))]
        if count > len(given[table]):
            missing[table] = count - len(given[table])
    if missing:
        for table, ids in take(session, missing).items():
            given[table] += ids
    return given


_keys: dict[Any, tuple[Table, str] | None] = {}


def integer_key(mapper: Any) -> tuple[Table, str] | None:
    """The table and attribute of ``mapper``'s single integer primary key, if
    it has one (and one table)."""
    if mapper not in _keys:
        found = None
        if len(mapper.tables) == 1 and len(mapper.primary_key) == 1:
            column = mapper.primary_key[0]
            if isinstance(column.type, Integer) and column.autoincrement in (True, "auto"):
                found = (column.table, mapper.get_property_by_column(column).key)
        _keys[mapper] = found
    return _keys[mapper]
