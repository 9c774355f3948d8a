"""Public GETs read through ``runtime.read_sessions`` (Open311's listings through
``runtime.public_read_sessions``): on SQLite they take no write lock, so a reader
is not held up by a writer's open transaction (nor holds it up)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select, text

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
