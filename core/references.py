"""Public ticket references: readable and unique per commune, e.g. ``CLF-2026-000123``."""

from __future__ import annotations

import re
from collections.abc import Mapping

from sqlalchemy import Connection, Engine, bindparam, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.db.data_version import UNSEEN_BY_ANSWERS
from core.db.models import ReferenceCounter
from core.events import per_transaction

REFERENCE_PATTERN = re.compile(r"^(?P<prefix>[A-Z]{2,5})-(?P<year>\d{4})-(?P<number>\d{6,})$")


def format_reference(prefix: str, year: int, number: int) -> str:
    return f"{prefix}-{year}-{number:06d}"


# Built once: constructing a statement costs more than running it.
_ADVANCE = (
    update(ReferenceCounter)
    .where(
        ReferenceCounter.commune == bindparam("of_commune"),
        ReferenceCounter.year == bindparam("of_year"),
    )
    .values(last_number=ReferenceCounter.last_number + bindparam("by"))
    .returning(ReferenceCounter.last_number)
)
# Numbers taken ahead for this transaction (see reserve_numbers), per (commune, year).
_RESERVED = per_transaction("vigie_reserved_numbers")


def next_number(session: Session, commune: str, year: int) -> int:
    """Take the next number for (commune, year); safe under concurrent writers.

    A number reserved for this transaction (:func:`hold_reserved`) if one is
    left; otherwise one ``UPDATE ... RETURNING``, which holds the counter's
    row lock until the caller's commit (PostgreSQL), so that a number is
    never lost. Runs on the session's connection, without an autoflush: the
    counter depends on no pending row, and a batch opening many tickets then
    flushes them once.
    """
    reserved = session.info.get(_RESERVED, {}).get((commune, year))
    if reserved:
        return reserved.pop()
    return _advance(session.connection(), commune, year, 1)


# Execution options of a connection that reserves numbers (reserving_connection).
RESERVING = {"isolation_level": "AUTOCOMMIT", UNSEEN_BY_ANSWERS: True}


def reserving_connection(engine: Engine) -> Connection:
    """A connection for :func:`reserve_numbers`: each statement committed as it
    runs, its writes unseen by answers. Kept by a writer that reserves often
    (the intake queue's thread), it saves a pool checkout and its ping a batch."""
    return engine.connect().execution_options(**RESERVING)


def reserve_numbers(
    connection: Connection, wanted: Mapping[tuple[str, int], int]
) -> dict[tuple[str, int], list[int]]:
    """Take ``count`` numbers for each (commune, year) of ``wanted``, each
    counter's at once, committed as it is taken, on ``connection`` (from
    :func:`reserving_connection`).

    For writers that run side by side (PostgreSQL): a batch that took its
    numbers one by one would hold the commune's counter row from its first
    ticket to its commit, and every other batch of the commune would wait
    for it. Numbers reserved and not used (a report refused, a batch rolled
    back) are gaps: references stay unique and readable, not gapless.

    Each counter's ``UPDATE ... RETURNING`` is a transaction of its own
    (autocommit): one round trip, where BEGIN and COMMIT would add two. The
    counters are shown by no answer, so their commits leave the data version
    as it was (:data:`core.db.data_version.UNSEEN_BY_ANSWERS`).
    """
    taken = _take(connection, wanted)
    connection.commit()  # SQLAlchemy's transaction object; the statements are committed
    return taken


def take_numbers(
    session: Session, wanted: Mapping[tuple[str, int], int]
) -> dict[tuple[str, int], list[int]]:
    """Take ``count`` numbers for each (commune, year) of ``wanted`` in the session's
    own transaction (one statement each, not one a ticket): for a writer that
    has the database to itself until its commit (SQLite). Give back those not
    used before the commit (:func:`give_back_unused`): references stay gapless."""
    return _take(session.connection(), wanted)


def _take(
    connection: Connection, wanted: Mapping[tuple[str, int], int]
) -> dict[tuple[str, int], list[int]]:
    """``count`` numbers for each (commune, year) of ``wanted``, one statement each,
    in the order :func:`next_number` gives them (lowest first, from the end)."""
    taken: dict[tuple[str, int], list[int]] = {}
    for (commune, year), count in sorted(wanted.items()):
        if count > 0:
            last = _advance(connection, commune, year, count)
            taken[(commune, year)] = list(range(last, last - count, -1))
    return taken


def give_back_unused(session: Session) -> None:
    """Return the numbers :func:`take_numbers` took and :func:`next_number` did not
    give: the highest ones of each counter, as numbers are given lowest first."""
    connection = session.connection()
    for (commune, year), left in session.info.get(_RESERVED, {}).items():
        if left:
            _advance(connection, commune, year, -len(left))
            left.clear()


def hold_reserved(session: Session, reserved: dict[tuple[str, int], list[int]]) -> None:
    """Let :func:`next_number` give ``reserved`` numbers in this session's transaction."""
    held = session.info.setdefault(_RESERVED, {})
    for key, numbers in reserved.items():
        held.setdefault(key, [])[:0] = numbers


def _advance(connection: Connection, commune: str, year: int, by: int) -> int:
    """Add ``by`` to the counter of (commune, year), created at 0 if new; the new last number.
    The year's first ticket creates the row (``ON CONFLICT DO NOTHING`` lets a
    concurrent creator win) and retries."""
    key = {"of_commune": commune, "of_year": year, "by": by}
    number = connection.execute(_ADVANCE, key).scalar()
    if number is not None:
        return number
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    connection.execute(
        insert(ReferenceCounter)
        .values(commune=commune, year=year, last_number=0)
        .on_conflict_do_nothing()
    )
    return connection.execute(_ADVANCE, key).scalar_one()
