"""``core.db.lists.among``: a batch's list of keys in one parameter on
PostgreSQL, ``IN`` elsewhere; the same rows either way, whatever the keys hold."""

from __future__ import annotations

from sqlalchemy import select, text

from core.db.lists import among, array_literal
from core.db.sensor_models import DeadLetter
from core.db.types import utcnow
from core.ingest.records import dead_letter

AWKWARD = ["plain", 'with "quotes"', "back\\slash", "comma, {brace}", "NULL", "", "é ü 漢"]


def test_the_array_text_form_quotes_what_needs_it():
    assert array_literal([3, 1, 2]) == "{3,1,2}"
    assert array_literal(['a"b', None, "c\\d"]) == '{"a\\"b",NULL,"c\\\\d"}'


def test_among_finds_exactly_the_rows_named(vigie_runtime):
    letters = [dead_letter("t", f"payload {i}".encode(), utcnow(), "envelope", name)
               for i, name in enumerate(AWKWARD)]  # fmt: skip
    with vigie_runtime.sessions() as session:
        session.add_all(letters)
        session.flush()
        wanted = AWKWARD[1:5]
        found = session.scalars(
            select(DeadLetter.reason).where(among(session, DeadLetter.reason, wanted))
        ).all()
        assert sorted(found) == sorted(wanted)
        ids = [letter.id for letter in letters[:3]] + [10**9]
        found_ids = session.scalars(
            select(DeadLetter.id).where(among(session, DeadLetter.id, ids))
        ).all()
        assert sorted(found_ids) == sorted(ids[:3])
        session.rollback()


def test_postgresql_plans_prepared_statements_with_their_values(vigie_runtime):
    # among()'s arrays are hashed only in plans made with their values: without
    # it, a prepared lookup of 500 keys compared every row with each of them.
    with vigie_runtime.sessions() as session:
        if session.get_bind().dialect.name != "postgresql":
            return  # SQLite: plain IN lists
        assert session.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
