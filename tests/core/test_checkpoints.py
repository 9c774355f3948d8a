"""SQLite's WAL is copied back into the database by a thread of the service,
not by the writer whose commit happens to fill it (core.db.checkpoints)."""

from __future__ import annotations

import time

from sqlalchemy import text

from core.db.checkpoints import SAFETY_PAGES, BackgroundCheckpoints, checkpoint_in_background
from core.db.engine import make_engine


def write_rows(engine, count: int) -> None:
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)"))
    for _ in range(count):
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": "x" * 2000})


def autocheckpoint_of(engine) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()


def test_writers_leave_checkpoints_to_the_thread_which_makes_them(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'vigie.db'}", pool_size=4)
    assert autocheckpoint_of(engine) == 1000  # SQLite's default: a writer checkpoints
    checkpoints = BackgroundCheckpoints(engine, every=0.2)
    copied_by_thread = []
    real_checkpoint = checkpoints.checkpoint

    def counted() -> tuple[int, int, int]:
        result = real_checkpoint()
        copied_by_thread.append(result[2])
        return result

    checkpoints.checkpoint = counted  # type: ignore[method-assign]
    checkpoints.start()
    try:
        assert autocheckpoint_of(engine) == SAFETY_PAGES  # writers no longer do
        write_rows(engine, 300)  # well past 1,000 pages of WAL
        deadline = time.monotonic() + 10
        while not any(copied_by_thread) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(copied_by_thread), "the thread copied nothing back"
    finally:
        checkpoints.stop()
        engine.dispose()


def test_only_an_sqlite_file_gets_the_thread(tmp_path):
    assert checkpoint_in_background(make_engine("sqlite://")) is None
    started = checkpoint_in_background(make_engine(f"sqlite:///{tmp_path / 'a.db'}"))
    assert started is not None
    started.stop()
