"""``column IN (values)`` for a batch's long lists: one parameter on PostgreSQL.

SQLAlchemy renders ``in_()`` with a placeholder per value, so the statement's
text changes with the list's length: psycopg parses such statements anew each
time (it keeps those of more than 50 parameters out of its cache) and
PostgreSQL plans them anew. :func:`among` sends the list as one array literal,
``column IN (SELECT unnest(CAST(:values AS type[])))``: one text whatever
the length, parsed once and, run often, prepared by psycopg. (Not ``=
ANY(CAST(...))``: the cast is not folded into a constant when planning, so
PostgreSQL compares each row with every value in turn; the subquery becomes
a hash or an index lookup.) On other databases it is ``in_()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, Text, bindparam, cast, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement


def among(session: Session, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """``column`` is one of ``values`` (ints or strings)."""
    if session.get_bind().dialect.name != "postgresql":
        return column.in_(values)
    literal = bindparam(None, array_literal(values), type_=Text)
    return column.in_(select(func.unnest(cast(literal, ARRAY(column.type)))))


def array_literal(values: Sequence[Any]) -> str:
    """PostgreSQL's text form of a one-dimensional array: ``{1,2}``,
    ``{"a","b",NULL}`` (None is NULL; other values by their ``str``)."""
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "{" + ",".join(map(str, values)) + "}"
    return "{" + ",".join("NULL" if v is None else _quoted(str(v)) for v in values) + "}"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


__all__ = ["among", "array_literal"]
