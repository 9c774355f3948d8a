"""Public GETs read through ``runtime.read_sessions`` (Open311's listings through
``runtime.public_read_sessions``): on SQLite they take no write lock, so a reader
is not held up by a writer's open transaction (nor holds it up)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import event, func, select, text

from core.db.models import ApiToken, Ticket


@pytest.mark.parametrize("readers", ["read_sessions", "public_read_sessions"])
def test_a_reader_does_not_wait_for_an_open_write_transaction(vigie_runtime, readers):
    read_sessions = getattr(vigie_runtime, readers)
    with vigie_runtime.sessions() as writer:
        writer.add(ApiToken(name="w", token_hash="0" * 64, prefix="vig_0", role="agent",
                            communes=["*"]))  # fmt: skip
        writer.flush()  # the writer now holds the database's write lock (SQLite)
        started = time.monotonic()
        with read_sessions() as reader:
            assert reader.scalar(select(func.count()).select_from(Ticket)) == 0
            # It sees only what was committed.
            assert reader.scalar(select(func.count()).select_from(ApiToken)) == 0
        # A reader held by the write lock would wait out busy_timeout (30 s) and
        # fail; a slow machine's first connection of an engine may take a second.
        assert time.monotonic() - started < 10
        writer.commit()
    with read_sessions() as reader:
        assert reader.scalar(select(func.count()).select_from(ApiToken)) == 1


def test_public_reads_on_postgresql_send_no_begin_and_may_keep_generic_plans(vigie_runtime):
    with vigie_runtime.public_read_sessions() as reader:
        if reader.get_bind().dialect.name != "postgresql":
            assert vigie_runtime.public_read_sessions is vigie_runtime.read_sessions
            return
        from psycopg.pq import TransactionStatus

        # The server's plan_cache_mode: a prepared listing may keep its generic plan.
        assert reader.execute(text("SHOW plan_cache_mode")).scalar() != "force_custom_plan"
        # A read on the event loop never hangs its process for long.
        assert reader.execute(text("SHOW statement_timeout")).scalar() == "10s"
        connection = reader.connection().connection.dbapi_connection
        assert connection.info.transaction_status is TransactionStatus.IDLE  # autocommit
    # The ingestion's reads still plan with their values (core.db.lists).
    with vigie_runtime.read_sessions() as reader:
        assert reader.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"


@pytest.mark.parametrize("vigie_database_url", ["postgresql"], indirect=True)
def test_a_public_read_on_a_connection_the_server_ended_is_read_again(vigie_runtime):
    """PostgreSQL: public reads take their connections without a ping (one more
    round trip on the event loop for every answer built). One the server ended
    (a restart) fails the read, which is read again on a new connection."""
    backend = lambda session: session.execute(text("SELECT pg_backend_pid()")).scalar()  # noqa: E731
    first = vigie_runtime.public_read(backend)
    engine = vigie_runtime.public_read_sessions.kw["bind"]
    with vigie_runtime.engine.begin() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    failures: list[tuple[bool, bool]] = []

    def handle_error(context) -> None:
        failures.append((context.is_disconnect, context.is_pre_ping))

    event.listen(engine, "handle_error", handle_error)
    try:
        again = vigie_runtime.public_read(backend)
    finally:
        event.remove(engine, "handle_error", handle_error)
    assert again != first
    assert failures == [(True, False)]  # the read found it dead, not a ping before it
