"""A session's new rows written as plain INSERTs: a table's rows in one statement.

The ORM's flush is general: it sorts the unit of work, cascades relationships,
runs each row's attribute bookkeeping and registers every object in the
session's identity map. A batch of new reports (:mod:`core.intake_queue`)
adds only new rows whose keys and foreign keys are already known: a ticket
(its id taken ahead), its signal, its history events and its messages. For
them that machinery was half the CPU of a POST stored alone (a py-spy
profile of ``bench/api.py``'s Open311 POSTs).

:func:`insert_new_rows` writes such rows with SQLAlchemy core, one
``executemany`` per table, tables in the order their foreign keys need. Each
column gets the object's value, else the column's default, else NULL, and the
object gets the same value, so it reads as it would after a flush. The
objects then leave the session as *detached* rows of the database
(``make_transient_to_detached``): stored, not pending, and never inserted
twice. If any new row cannot go this way (no single integer key, or no value
for it yet, a server-side default, a parent without a key), none does: the
session's ordinary flush writes them all. Their keys are given ahead on
SQLite only (:func:`core.db.ids.give_ids`); on PostgreSQL, where the flush
already sends a table's rows in one ``INSERT ... RETURNING``, it is the
flush that writes them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from sqlalchemy import Insert, Table, inspect
from sqlalchemy.orm import MANYTOONE, Mapper, Session, make_transient_to_detached

from core.db.ids import give_ids

# Per mapper: its table, its key's attribute and, per column, (attribute,
# column key, default maker).
_Plan = tuple[Table, str, list[tuple[str, str, Callable[[], Any] | None]]]
_plans: dict[Mapper[Any], _Plan | None] = {}
_inserts: dict[Table, Insert] = {}  # built once per table


def insert_new_rows(session: Session) -> int:
    """Insert the session's new rows as plain INSERTs and take them out of the
    session, if every one of them can go that way (see the module's
    docstring); returns how many were written. Otherwise, nothing is written
    and they stay pending for the session's ordinary flush, which then
    handles them all (a flush after some were taken out would not see them)."""
    give_ids(session)  # SQLite; elsewhere rows without an id are left to a flush
    ready: dict[Table, list[tuple[Any, dict[str, Any]]]] = {}
    for instance in session.new:  # in the order added
        state = inspect(instance)
        plan = _plan(state.mapper)
        if plan is None:
            return 0
        table, key_attribute, columns = plan
        values = state.dict
        if values.get(key_attribute) is None or not _copy_foreign_keys(state):
            return 0
        row: dict[str, Any] = {}
        for attribute, key, default in columns:
            value = values.get(attribute)
            if value is None and default is not None:
                value = values[attribute] = default()
            elif attribute not in values:
                values[attribute] = None
            row[key] = value
        ready.setdefault(table, []).append((instance, row))
    if not ready:
        return 0
    connection = session.connection()
    written = 0
    for table in _parents_first(frozenset(ready)):
        rows = ready[table]
        connection.execute(_inserts[table], [row for _, row in rows])
        for instance, _ in rows:
            session.expunge(instance)
            make_transient_to_detached(instance)
        written += len(rows)
    return written


@functools.lru_cache(maxsize=64)
def _parents_first(tables: frozenset[Table]) -> list[Table]:
    """``tables`` in the order of their metadata's foreign keys (parents first)."""
    metadata = next(iter(tables)).metadata
    return [table for table in metadata.sorted_tables if table in tables]


def _plan(mapper: Mapper[Any]) -> _Plan | None:
    if mapper not in _plans:
        _plans[mapper] = _make_plan(mapper)
    return _plans[mapper]


def _make_plan(mapper: Mapper[Any]) -> _Plan | None:
    if len(mapper.tables) != 1 or len(mapper.primary_key) != 1 or mapper.inherits:
        return None
    table = mapper.local_table
    if not isinstance(table, Table):
        return None
    columns: list[tuple[str, str, Callable[[], Any] | None]] = []
    for column in table.columns:
        if column.server_default is not None:
            return None  # its value is the database's: leave it to a flush
        attribute = mapper.get_property_by_column(column).key
        columns.append((attribute, column.key, _default_maker(column)))
    _inserts[table] = table.insert()
    key_attribute = mapper.get_property_by_column(mapper.primary_key[0]).key
    return table, key_attribute, columns


def _default_maker(column: Any) -> Callable[[], Any] | None:
    default = column.default
    if default is None:
        return None
    if default.is_scalar:
        return lambda: default.arg
    if default.is_callable:
        return lambda: default.arg(None)  # SQLAlchemy wraps it to take a context
    return None  # a SQL expression or a sequence: the INSERT computes it


def _copy_foreign_keys(state: Any) -> bool:
    """Copy the key of each parent given through a many-to-one relationship into
    the row's foreign key, as a flush would; False if a parent has no key yet."""
    for relationship in state.mapper.relationships:
        if relationship.direction is not MANYTOONE:
            continue
        parent = state.dict.get(relationship.key)
        if parent is None:
            continue
        for local, remote in relationship.local_remote_pairs:
            value = getattr(parent, inspect(parent).mapper.get_property_by_column(remote).key)
            if value is None:
                return False
            state.dict[state.mapper.get_property_by_column(local).key] = value
    return True
