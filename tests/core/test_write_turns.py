"""SQLite writers take turns (``core/db/write_turns.py``): a turn is taken at
BEGIN and given back however the transaction ends; it orders the threads of a
process and the processes on one file; a process that dies gives its turn back."""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest
from sqlalchemy import text

from core.db import write_turns
from core.db.engine import READ_ONLY, make_engine, make_session_factory
from core.db.write_turns import WriteTurns, turns_for


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "turns.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (n INTEGER)"))
    yield str(path), engine
    engine.dispose()


def held(path: str) -> bool:
    return turns_for(path)._thread_turn.locked()


def test_a_turn_lasts_as_long_as_the_write_transaction(database):
    path, engine = database
    sessions = make_session_factory(engine)
    with sessions() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        assert held(path)
        session.commit()
        assert not held(path)
        session.execute(text("INSERT INTO t VALUES (2)"))
        session.rollback()
        assert not held(path)
        session.execute(text("INSERT INTO t VALUES (3)"))
    assert not held(path)  # closed without an end: the pool's reset gave it back
    with pytest.raises(Exception, match="no such table"), sessions() as session:
        session.execute(text("INSERT INTO missing VALUES (1)"))
    assert not held(path)
    with engine.connect().execution_options(**{READ_ONLY: True}) as reader:
        assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 1
        assert not held(path)  # readers take no turn


def test_a_turn_never_given_back_holds_the_others_up_for_a_while_only(
    database, monkeypatch, caplog
):
    path, engine = database
    monkeypatch.setattr(write_turns, "WAIT_SECONDS", 0.3)
    turns_for(path)._thread_turn.acquire()  # as a thread stuck in its turn would
    try:
        with caplog.at_level("WARNING", logger="core.db.write_turns"):
            with engine.begin() as connection:  # then SQLite's own lock decides, as before
                connection.execute(text("INSERT INTO t VALUES (5)"))
        assert "no turn to write" in caplog.text
    finally:
        turns_for(path)._thread_turn.release()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar() == 1


def _hold_a_turn(path: str, conn) -> None:
    engine = make_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        connection.execute(text("INSERT INTO t VALUES (7)"))  # BEGIN IMMEDIATE, in its turn
        conn.send("holding")
        conn.poll(30)  # until told to commit
        connection.commit()


@pytest.mark.parametrize("end", ["commit", "killed"])
def test_another_process_waits_for_the_turn_until_it_ends(database, monkeypatch, end):
    path, _engine = database
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    holder = context.Process(target=_hold_a_turn, args=(path, theirs), daemon=True)
    holder.start()
    try:
        assert ours.poll(60) and ours.recv() == "holding"
        # Another process's turns on the same file (a new WriteTurns opens its own lock file).
        monkeypatch.setattr(write_turns, "WAIT_SECONDS", 0.3)
        other = WriteTurns(path)
        assert other.take() is False  # not given while the holder writes
        if end == "commit":
            ours.send("commit")
            holder.join(30)
        else:
            os.kill(holder.pid, signal.SIGKILL)  # a process that dies gives its turn back
            holder.join(30)
        assert other.take() is True
        other.give_back()
    finally:
        if holder.is_alive():
            holder.kill()
        holder.join(5)
