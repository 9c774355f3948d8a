"""Kept public answers: served again only while nothing was committed, on both
databases and across processes (another engine stands for another worker)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import insert, select, text, update

from core.answer_cache import Answer, AnswerCache, EntryCache
from core.db.data_version import UNKNOWN, DataVersion, count_commits
from core.db.engine import make_engine
from core.db.models import Ticket
from core.references import reserve_numbers, reserving_connection
from core.runtime import Runtime, open_runtime
from core.testing import wait_until


def answer(body: bytes = b"[]") -> Answer:
    return Answer(200, "application/json", body)


def row(reference: str, **changes) -> dict:
    number = int(reference.rsplit("-", 1)[1])
    return {
        "reference": reference, "commune": "clermont-ferrand", "year": 2026, "number": number,
        "category": "eclairage", "channel": "phone", "status": "new", "priority": "normal",
        "description": "lampadaire éteint", "latitude": 45.77, "longitude": 3.08, **changes,
    }  # fmt: skip


def a_ticket(runtime: Runtime, reference: str = "CLF-2026-000001") -> int:
    with runtime.sessions() as session:
        ticket = Ticket(**row(reference))
        session.add(ticket)
        session.commit()
        return ticket.id


def test_the_data_version_moves_with_each_commit_that_writes_and_only_then(vigie_runtime):
    version = vigie_runtime.data_version
    first = version.current()
    assert first != UNKNOWN
    with vigie_runtime.read_sessions() as session:  # reading changes nothing
        session.scalar(select(Ticket.id))
    with vigie_runtime.sessions() as session:  # nor does a write rolled back
        session.execute(insert(Ticket).values(**row("CLF-2026-000009")))
        session.rollback()
    assert version.current() == first
    ticket_id = a_ticket(vigie_runtime)  # an ORM flush
    second = version.current()
    assert second > first
    with vigie_runtime.engine.begin() as connection:  # plain SQL outside any session
        connection.execute(text("UPDATE tickets SET description = 'y' WHERE id = :id"),
                           {"id": ticket_id})  # fmt: skip
    assert version.current() > second


def test_a_connection_that_counted_a_commit_still_rolls_back(vigie_runtime):
    """The version is advanced on the committing connection itself (PostgreSQL, in
    autocommit for that one statement): its next transaction is still one."""
    with vigie_runtime.engine.connect() as connection:
        connection.execute(insert(Ticket).values(**row("CLF-2026-000001")))
        connection.commit()
        connection.execute(insert(Ticket).values(**row("CLF-2026-000002")))
        connection.rollback()
    with vigie_runtime.read_sessions() as session:
        assert session.scalars(select(Ticket.reference)).all() == ["CLF-2026-000001"]


@pytest.mark.parametrize("vigie_database_url", ["postgresql"], indirect=True)
def test_numbers_reserved_for_a_batch_leave_the_kept_answers(vigie_runtime):
    """A reference counter is shown by no answer: reserving numbers (PostgreSQL's
    batches, each counter's UPDATE committed on its own) keeps the version.
    (PostgreSQL only: SQLite counts every commit to its file itself.)"""
    wanted = {("clermont-ferrand", 2026): 3, ("chamalieres", 2026): 1}
    before = vigie_runtime.data_version.current()
    with reserving_connection(vigie_runtime.engine) as connection:  # kept, as a batch's
        first = reserve_numbers(connection, wanted)
        assert vigie_runtime.data_version.current() == before
        again = reserve_numbers(connection, wanted)  # committed: never given twice
    assert sorted(first[("clermont-ferrand", 2026)]) == [1, 2, 3]
    assert sorted(again[("clermont-ferrand", 2026)]) == [4, 5, 6]
    assert again[("chamalieres", 2026)] == [2]


def test_another_process_commit_is_seen(vigie_runtime, vigie_database_url):
    """Another worker has its own engine: its commits move this one's version."""
    ticket_id = a_ticket(vigie_runtime)
    before = vigie_runtime.data_version.current()
    other = make_engine(vigie_database_url)
    count_commits(other)  # what open_runtime does in every process
    try:
        with other.begin() as connection:
            connection.execute(update(Ticket).where(Ticket.id == ticket_id).values(status="closed"))
    finally:
        other.dispose()
    # PostgreSQL: within the moment its announcement takes to arrive.
    assert wait_until(lambda: vigie_runtime.data_version.current() > before)


def another_process_commits(runtime: Runtime, url: str, reference: str) -> None:
    other = make_engine(url)
    count_commits(other)  # what open_runtime does in every process
    try:
        with other.begin() as connection:
            connection.execute(insert(Ticket).values(**row(reference)))
    finally:
        other.dispose()


@pytest.mark.parametrize("vigie_database_url", ["postgresql"], indirect=True)
def test_commits_elsewhere_are_announced_and_read_while_not_listening(
    vigie_runtime, vigie_database_url
):
    """PostgreSQL: each process hears the others' commits (NOTIFY) without reading
    the number per call; while its listening connection is down (here ended by
    the server, as a restart would), it reads the number at each call instead,
    then listens again. (SQLite's PRAGMA data_version is read at each call.)"""
    version = vigie_runtime.data_version
    version.current()
    assert wait_until(lambda: version.listening)
    before = version.current()
    another_process_commits(vigie_runtime, vigie_database_url, "CLF-2026-000011")
    assert wait_until(lambda: version.current() > before)
    assert version.listening  # heard, not read

    with vigie_runtime.engine.begin() as connection:
        ended = (
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = :name"
                ),
                {"name": version.listener_name},
            )
            .scalars()
            .all()
        )
    assert ended == [True]
    assert wait_until(lambda: not version.listening)
    before = version.current()
    another_process_commits(vigie_runtime, vigie_database_url, "CLF-2026-000012")
    assert version.current() > before  # read: seen at once
    assert wait_until(lambda: version.listening, 15)
    before = version.current()
    another_process_commits(vigie_runtime, vigie_database_url, "CLF-2026-000013")
    assert wait_until(lambda: version.current() > before)


def test_behind_a_pooler_the_version_is_read_at_each_call(vigie_settings, vigie_database_url):
    """``VIGIE_API__ANSWER_CACHE_LISTENS=false`` (PgBouncer's transaction mode
    cannot keep a LISTEN): no listening connection, and another process's
    commit is still seen at the next call."""
    settings = vigie_settings.model_copy(
        update={"api": vigie_settings.api.model_copy(update={"answer_cache_listens": False})}
    )
    runtime = open_runtime(settings)
    try:
        version = runtime.data_version
        before = version.current()
        another_process_commits(runtime, vigie_database_url, "CLF-2026-000021")
        assert version.current() > before
        assert version.listener_name is None and not version.listening
    finally:
        runtime.close()


def test_the_version_goes_on_growing_over_a_new_connection(vigie_runtime):
    version = vigie_runtime.data_version
    a_ticket(vigie_runtime)
    before = version.current()
    version.close()  # as after a lost connection
    after = version.current()
    assert after >= before  # never back (SQLite: a new connection counts anew)
    a_ticket(vigie_runtime, "CLF-2026-000002")
    assert version.current() > after


def test_an_unreadable_version_serves_nothing_kept():
    engine = make_engine("sqlite://")  # in memory: no file another connection could watch
    try:
        version = DataVersion(engine)
        assert version.current() == UNKNOWN
        cache = AnswerCache(version, 1_000_000, 60)
        found, stamp = cache.lookup("k")
        cache.keep("k", stamp, answer())
        assert cache.lookup("k")[0] is None and cache.size == (0, 0)
    finally:
        engine.dispose()


def test_an_answer_is_served_until_a_commit_then_built_anew(vigie_runtime):
    cache = AnswerCache(vigie_runtime.data_version, 1_000_000, 60)
    found, stamp = cache.lookup(("requests", "page=1"))
    assert found is None
    cache.keep(("requests", "page=1"), stamp, answer(b"[1]"))
    assert cache.lookup(("requests", "page=1"))[0].body == b"[1]"
    assert (cache.hits, cache.misses) == (1, 1)
    a_ticket(vigie_runtime)
    assert cache.lookup(("requests", "page=1"))[0] is None


def test_an_answer_built_while_a_commit_came_is_not_kept(vigie_runtime):
    cache = AnswerCache(vigie_runtime.data_version, 1_000_000, 60)
    _found, stamp = cache.lookup("k")
    a_ticket(vigie_runtime)  # committed while the answer was being built
    cache.lookup("other")  # another request sees the new version first
    cache.keep("k", stamp, answer(b"[old]"))
    assert cache.lookup("k")[0] is None


def test_parts_are_found_only_under_the_mark_of_the_row_they_were_built_from():
    """No data version here: a commit keeps every part (tested through Open311 in
    test_a_commit_keeps_the_entries_of_the_requests_it_did_not_change)."""
    cache = EntryCache(1_000_000, 60)
    entry = {"service_request_id": "CLF-2026-000001"}
    cache.keep(("entry", 1), "2026-12-03 10:00:00.000001", entry, 2500)
    assert cache.get(("entry", 1), "2026-12-03 10:00:00.000001") == entry
    # The row was changed since: its mark moved, the part is built anew.
    assert cache.get(("entry", 1), "2026-12-03 10:00:05.120000") is None
    assert cache.get(("entry", 2), "2026-12-03 10:00:00.000001") is None


def test_parts_age_out_and_a_cache_set_to_zero_keeps_none():
    cache = EntryCache(1_000_000, 0.2)
    cache.keep("k", 1, {"a": 1}, 2500)
    assert cache.get("k", 1) == {"a": 1}
    time.sleep(0.3)
    assert cache.get("k", 1) is None
    off = EntryCache(0, 60)
    off.keep("k", 1, {"a": 1}, 2500)
    assert off.get("k", 1) is None and off.size == (0, 0)


def test_answers_age_out(vigie_runtime):
    cache = AnswerCache(vigie_runtime.data_version, 1_000_000, 0.2)
    _found, stamp = cache.lookup("k")
    cache.keep("k", stamp, answer())
    assert cache.lookup("k")[0] is not None
    time.sleep(0.3)
    assert cache.lookup("k")[0] is None


def test_the_size_is_bounded_least_recently_used_first_out(vigie_runtime):
    cache = AnswerCache(vigie_runtime.data_version, 1000, 60)
    stamp = cache.stamp()
    for name in "abc":
        cache.keep(name, stamp, answer(b"x" * 90))
    assert cache.lookup("a")[0] is not None  # a is used again: b is now the oldest
    for name in "defghijkl":
        cache.keep(name, stamp, answer(b"x" * 90))
    kept, size = cache.size
    assert size <= 1000 and kept == 11
    assert cache.lookup("a")[0] is not None and cache.lookup("b")[0] is None
    cache.keep("big", stamp, answer(b"x" * 101))  # over a tenth of the cache: not kept
    assert cache.lookup("big")[0] is None


@pytest.mark.parametrize("megabytes, seconds", [(0, 10), (32, 0)])
def test_a_cache_set_to_zero_keeps_nothing(vigie_runtime, megabytes, seconds):
    cache = AnswerCache(vigie_runtime.data_version, int(megabytes * 2**20), seconds)
    found, stamp = cache.lookup("k")
    cache.keep("k", stamp, answer())
    assert cache.lookup("k")[0] is None
