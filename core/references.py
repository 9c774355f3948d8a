"""Public ticket references: readable and unique per commune, e.g. ``CLF-2026-000123``."""

from __future__ import annotations

import re

from sqlalchemy import bindparam, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.db.models import ReferenceCounter

REFERENCE_PATTERN = re.compile(r"^(?P<prefix>[A-Z]{2,5})-(?P<year>\d{4})-(?P<number>\d{6,})$")


def format_reference(prefix: str, year: int, number: int) -> str:
    return f"{prefix}-{year}-{number:06d}"


# Built once: constructing a statement costs more than running it.
_INCREMENT = (
    update(ReferenceCounter)
    .where(
        ReferenceCounter.commune == bindparam("of_commune"),
        ReferenceCounter.year == bindparam("of_year"),
    )
    .values(last_number=ReferenceCounter.last_number + 1)
    .returning(ReferenceCounter.last_number)
)


def next_number(session: Session, commune: str, year: int) -> int:
    """Take the next number for (commune, year); safe under concurrent writers.

    One ``UPDATE ... RETURNING`` in the common case; it holds the row lock
    until the caller's commit. The year's first ticket creates the row
    (``ON CONFLICT DO NOTHING`` lets a concurrent creator win) and retries.
    Runs on the session's connection, without an autoflush: the counter
    depends on no pending row, and a batch opening many tickets then
    flushes them once.
    """
    connection = session.connection()
    key = {"of_commune": commune, "of_year": year}
    number = connection.execute(_INCREMENT, key).scalar()
    if number is not None:
        return number
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    connection.execute(
        insert(ReferenceCounter)
        .values(commune=commune, year=year, last_number=0)
        .on_conflict_do_nothing()
    )
    return connection.execute(_INCREMENT, key).scalar_one()
