"""Public GETs read through ``runtime.read_sessions``: on SQLite they take no write
lock, so a reader is not held up by a writer's open transaction (nor holds it up)."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from core.db.models import ApiToken, Ticket


def test_a_reader_does_not_wait_for_an_open_write_transaction(vigie_runtime):
    with vigie_runtime.sessions() as writer:
        writer.add(ApiToken(name="w", token_hash="0" * 64, prefix="vig_0", role="agent",
                            communes=["*"]))  # fmt: skip
        writer.flush()  # the writer now holds the database's write lock (SQLite)
        started = time.monotonic()
        with vigie_runtime.read_sessions() as reader:
            assert reader.scalar(select(func.count()).select_from(Ticket)) == 0
            # It sees only what was committed.
            assert reader.scalar(select(func.count()).select_from(ApiToken)) == 0
        assert time.monotonic() - started < 1
        writer.commit()
    with vigie_runtime.read_sessions() as reader:
        assert reader.scalar(select(func.count()).select_from(ApiToken)) == 1
