"""Public ticket references: readable and unique per commune, e.g. ``CLF-2026-000123``."""

from __future__ import annotations

import re

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.db.models import ReferenceCounter

REFERENCE_PATTERN = re.compile(r"^(?P<prefix>[A-Z]{2,5})-(?P<year>\d{4})-(?P<number>\d{6,})$")


def format_reference(prefix: str, year: int, number: int) -> str:
    return f"{prefix}-{year}-{number:06d}"


def next_number(session: Session, commune: str, year: int) -> int:
    """Take the next number for (commune, year); safe under concurrent writers.

    One ``UPDATE ... RETURNING`` in the common case; it holds the row lock
    until the caller's commit. The year's first ticket creates the row
    (``ON CONFLICT DO NOTHING`` lets a concurrent creator win) and retries.
    """
    increment = (
        update(ReferenceCounter)
        .where(ReferenceCounter.commune == commune, ReferenceCounter.year == year)
        .values(last_number=ReferenceCounter.last_number + 1)
        .returning(ReferenceCounter.last_number)
    )
    number = session.execute(increment).scalar()
    if number is not None:
        return number
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(ReferenceCounter)
        .values(commune=commune, year=year, last_number=0)
        .on_conflict_do_nothing()
    )
    return session.execute(increment).scalar_one()
