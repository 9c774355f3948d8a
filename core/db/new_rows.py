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
for it yet, a default the database or SQL computes, inheritance, a parent
without a key), none does and none is changed: the session's ordinary flush
writes them all. The keys they lack are given first
(:func:`core.db.ids.give_ids`: on PostgreSQL, every table's from its
sequence in one query).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert, Table, inspect
from sqlalchemy.orm import MANYTOONE, Mapper, Session, make_transient_to_detached

from core.db.ids import give_ids, integer_key


@dataclass(frozen=True)
class _Plan:
    """How a mapper's new rows are written: its table, the attribute of its key,
    and per column (attribute, column key, the maker of its default or None)."""

    table: Table
    key: str
    columns: list[tuple[str, str, Callable[[], Any] | None]]
    insert: Insert


_plans: dict[Mapper[Any], _Plan | None] = {}


def insert_new_rows(session: Session) -> int:
    """Insert the session's new rows as plain INSERTs and take them out of the
    session, if every one of them can go that way (see the module's
    docstring); returns how many were written. Otherwise nothing is written
    or changed, and they stay pending for the session's ordinary flush, which
    then handles them all (a flush after some were taken out would not see
    them)."""
    rows = plan_new_rows(session)
    return rows.insert() if rows is not None else 0


class NewRows:
    """A session's new rows, their values ready, to be written by :meth:`insert`.

    Planning reads (the keys the rows lack); writing does not, so the INSERTs
    can be sent without waiting for each other's answer
    (:func:`core.db.pipeline.sent_together`)."""

    def __init__(self, session: Session, rows: dict[Table, tuple[_Plan, list[tuple[Any, dict]]]]):
        self.session = session
        self._rows = rows

    def __len__(self) -> int:
        return sum(len(written) for _, written in self._rows.values())

    def insert(self) -> int:
        """One ``executemany`` per table, parents first; the rows then leave the
        session as stored (detached) objects. Returns how many were written."""
        session, connection = self.session, self.session.connection()
        for table in _parents_first(frozenset(self._rows)):
            plan, written = self._rows[table]
            connection.execute(plan.insert, [row for _, row in written])
            for instance, _ in written:
                session.expunge(instance)
                make_transient_to_detached(instance)
        return len(self)


def plan_new_rows(session: Session) -> NewRows | None:
    """The session's new rows as :class:`NewRows`, their keys given first
    (:func:`core.db.ids.give_ids`), if every one of them can go as a plain
    INSERT; None if one cannot (nothing changed then: the session's flush
    writes them all), or if there are none."""
    give_ids(session)
    going: list[tuple[Any, _Plan, dict[str, Any]]] = []
    for instance in session.new:  # in the order added
        state = inspect(instance)
        plan = _plan(state.mapper)
        if plan is None or state.dict.get(plan.key) is None:
            return None
        parents = _parent_keys(state)
        if parents is None:
            return None
        going.append((instance, plan, parents))
    if not going:
        return None
    rows: dict[Table, tuple[_Plan, list[tuple[Any, dict[str, Any]]]]] = {}
    for instance, plan, parents in going:
        values = inspect(instance).dict
        values.update(parents)  # as a flush copies them
        row: dict[str, Any] = {}
        for attribute, column, default in plan.columns:
            value = values.get(attribute)
            if value is None and default is not None:
                value = default()
            values[attribute] = row[column] = value  # the object reads as after a flush
        rows.setdefault(plan.table, (plan, []))[1].append((instance, row))
    return NewRows(session, rows)


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
    """None for a mapper whose rows need what only a flush does: no single
    integer key, inheritance, a value computed by the database."""
    key = integer_key(mapper)
    if key is None or mapper.inherits or mapper.polymorphic_on is not None:
        return None
    table, key_attribute = key
    columns: list[tuple[str, str, Callable[[], Any] | None]] = []
    for column in table.columns:
        if column.server_default is not None:
            return None  # its value is the database's: leave it to a flush
        default = column.default
        if default is not None and not (default.is_scalar or default.is_callable):
            return None  # a SQL expression or a sequence: the INSERT computes it
        attribute = mapper.get_property_by_column(column).key
        columns.append((attribute, column.key, _default_maker(default)))
    return _Plan(table, key_attribute, columns, table.insert())


def _default_maker(default: Any) -> Callable[[], Any] | None:
    if default is None:
        return None
    if default.is_scalar:
        return lambda: default.arg
    return lambda: default.arg(None)  # a callable: SQLAlchemy wraps it to take a context


def _parent_keys(state: Any) -> dict[str, Any] | None:
    """The foreign keys to copy from the parents given through many-to-one
    relationships, as a flush would; None if a parent has no key yet."""
    keys: dict[str, Any] = {}
    for relationship in state.mapper.relationships:
        if relationship.direction is not MANYTOONE:
            continue
        parent = state.dict.get(relationship.key)
        if parent is None:
            continue
        for local, remote in relationship.local_remote_pairs:
            value = getattr(parent, inspect(parent).mapper.get_property_by_column(remote).key)
            if value is None:
                return None
            keys[state.mapper.get_property_by_column(local).key] = value
    return keys
