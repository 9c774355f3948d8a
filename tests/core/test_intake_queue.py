"""Reports handed to the intake queue while the database is busy are stored
together, in one transaction, and each request still gets its own answer."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from core import hookimpl
from core.db.models import SignalRecord, Ticket
from core.db.types import utcnow
from core.errors import InvalidInput
from core.intake import IntakeResult
from core.references import next_number
from core.signals import Location, Report, Reporter
from core.testing import wait_until

TICKET = {
    "commune": "clermont-ferrand",
    "category": "voirie",
    "channel": "app",
    "location": Location(45.7772, 3.0870, "12 rue Blatin, Clermont-Ferrand"),
    "answers": {"nature": "trou", "danger": True},
}


REPO = Path(__file__).resolve().parents[2]


class Pause:
    """A plugin that, once armed, holds the first ticket it routes until let go."""

    name = "pause"

    def __init__(self) -> None:
        self.armed = False
        self.inside, self.go = threading.Event(), threading.Event()

    @hookimpl
    def route_ticket(self, ticket, commune):
        if self.armed:
            self.armed = False
            self.inside.set()
            self.go.wait(30)


@pytest.fixture
def pause() -> Pause:
    return Pause()


@pytest.fixture
def vigie_plugins(pause):
    return (pause,)


@pytest.fixture
def vigie_config_dir(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    with (config / "communes" / "clermont-ferrand.toml").open("a") as file:
        file.write("\n[plugins.pause]\n")
    return config


def report(n: int, **changes: Any) -> Report:
    return Report(**{"description": f"Nid-de-poule n° {n}", **TICKET, **changes})


def while_a_batch_is_stored(runtime, reports: list[Report]) -> list[IntakeResult | Exception]:
    """Hand ``reports`` over from a thread each while the first one's batch is
    being stored (held by the ``pause`` plugin in its transaction, its turn to
    write taken on SQLite): the others pile up behind. Then let go."""
    queue = runtime.intake_queue
    queue.accept(report(0), "agent:warm-up")  # the counter's row exists from now on
    outcomes: list[IntakeResult | Exception | None] = [None] * len(reports)
    pause = runtime.pm.get_plugin("pause")

    def hand_over(index: int) -> None:
        try:
            outcomes[index] = queue.accept(reports[index], "integration:app")
        except Exception as exc:  # what the request would answer
            outcomes[index] = exc

    pause.armed = True
    first = threading.Thread(target=hand_over, args=(0,))
    first.start()
    others: list[threading.Thread] = []
    try:
        assert pause.inside.wait(10)  # the first batch is in its transaction
        others += [threading.Thread(target=hand_over, args=(i,)) for i in range(1, len(reports))]
        for thread in others:
            thread.start()
        assert wait_until(lambda: queue.waiting == len(reports) - 1)
    finally:
        pause.go.set()
    for thread in (first, *others):
        thread.join(30)
    assert all(outcome is not None for outcome in outcomes)
    return outcomes  # type: ignore[return-value]


@pytest.fixture
def commits(vigie_runtime) -> list[int]:
    """One entry per session's transaction committed from now on (on PostgreSQL,
    the short transactions that reserve reference numbers are not sessions')."""
    seen: list[int] = []
    event.listen(vigie_runtime.sessions, "after_commit", lambda _session: seen.append(1))
    return seen


def stored_tickets(runtime) -> int:
    with runtime.read_sessions() as session:
        return session.scalar(select(func.count()).select_from(Ticket))


def test_reports_arriving_while_a_batch_is_stored_go_in_one_transaction(vigie_runtime, commits):
    outcomes = while_a_batch_is_stored(vigie_runtime, [report(n) for n in range(1, 11)])
    references = [outcome.ticket.reference for outcome in outcomes]
    assert len(set(references)) == 10  # a ticket each, each told its own
    assert all(outcome.created and not outcome.repeated for outcome in outcomes)
    # the warm-up, the first report alone, then the nine that waited: together
    assert len(commits) == 3
    assert stored_tickets(vigie_runtime) == 11
    with vigie_runtime.read_sessions() as session:
        stored = dict(session.execute(select(Ticket.reference, Ticket.description)).all())
    for outcome, sent in zip(outcomes, range(1, 11), strict=True):
        assert stored[outcome.ticket.reference] == f"Nid-de-poule n° {sent}"


@pytest.mark.parametrize("vigie_database_url", ["sqlite"], indirect=True)
def test_reports_arriving_while_another_writer_has_the_turn_join_one_batch(vigie_runtime, commits):
    """SQLite: a batch's transaction begins (its turn to write comes) before it
    takes the reports that wait: those that arrive while another writer holds
    the database go in the same batch, not one batch per turn. (PostgreSQL's
    writers do not take turns.)"""
    queue = vigie_runtime.intake_queue
    queue.accept(report(0), "agent:warm-up")
    outcomes: list[IntakeResult] = []
    threads = [
        threading.Thread(target=lambda n=n: outcomes.append(queue.accept(report(n), "agent:a")))
        for n in range(1, 11)
    ]
    with vigie_runtime.sessions() as other_writer:
        other_writer.execute(text("UPDATE reference_counters SET last_number = last_number"))
        threads[0].start()
        time.sleep(0.3)  # the queue's writer is waiting for its turn
        for thread in threads[1:]:
            thread.start()
        assert wait_until(lambda: queue.waiting == 10)
        other_writer.rollback()
    for thread in threads:
        thread.join(30)
    assert len({outcome.ticket.reference for outcome in outcomes}) == 10
    assert len(commits) == 2  # the warm-up, then the ten together


def test_a_refused_report_fails_its_own_request_only(vigie_runtime):
    reports = [report(n) for n in range(1, 6)]
    reports[3] = report(4, category="no-such-category")
    outcomes = while_a_batch_is_stored(vigie_runtime, reports)
    assert isinstance(outcomes[3], InvalidInput)
    assert "no-such-category" in str(outcomes[3])
    assert all(isinstance(o, IntakeResult) for i, o in enumerate(outcomes) if i != 3)
    assert stored_tickets(vigie_runtime) == 1 + 4


@pytest.mark.parametrize("broken", ["refused", "rolled back"])
def test_a_batch_leaves_no_gap_in_the_references_on_sqlite(vigie_runtime, broken):
    """A batch takes its numbers at once; on SQLite (one writer, the numbers taken
    in the batch's own transaction) those a refused report or a failed batch
    did not use are given back. PostgreSQL reserves them apart: unique, with gaps."""
    reports = [report(n) for n in range(1, 6)]
    reports[2] = (
        report(3, category="no-such-category")
        if broken == "refused"
        else report(3, extra={"not json": object()})
    )
    while_a_batch_is_stored(vigie_runtime, reports)
    vigie_runtime.intake_queue.accept(report(6), "agent:after")
    with vigie_runtime.read_sessions() as session:
        numbers = sorted(session.scalars(select(Ticket.number)))
        ids = sorted(session.scalars(select(Ticket.id)))
    assert len(numbers) == len(set(numbers)) == 1 + 4 + 1
    if vigie_runtime.engine.dialect.name == "sqlite":
        assert numbers == list(range(1, 7))
        assert ids == list(range(1, 7))


def test_a_key_sent_twice_in_one_batch_is_one_ticket(vigie_runtime, caplog):
    reports = [report(n) for n in range(1, 5)]
    reports[1] = report(1, idempotency_key="open311:retried")
    reports[2] = report(1, idempotency_key="open311:retried")
    outcomes = while_a_batch_is_stored(vigie_runtime, reports)
    first, second = outcomes[1], outcomes[2]
    assert first.created and not first.repeated
    assert second.repeated and not second.created
    assert second.ticket.reference == first.ticket.reference
    assert stored_tickets(vigie_runtime) == 1 + 3
    with vigie_runtime.read_sessions() as session:
        keys = session.scalar(
            select(func.count()).where(SignalRecord.idempotency_key == "open311:retried")
        )
    assert keys == 1
    assert "storing each alone" not in caplog.text  # found in the batch, not by a failure


def test_a_key_stored_before_answers_with_its_ticket(vigie_runtime):
    stored = vigie_runtime.intake_queue.accept(report(1, idempotency_key="k1"), "agent:a")
    reports = [report(n) for n in range(2, 5)] + [report(1, idempotency_key="k1")]
    outcomes = while_a_batch_is_stored(vigie_runtime, reports)
    assert outcomes[3].repeated
    assert outcomes[3].ticket.reference == stored.ticket.reference


def test_a_key_drawn_for_its_report_is_not_looked_for(vigie_runtime):
    """A key drawn at random (Open311 without an Idempotency-Key) cannot be stored
    yet: no query looks for it. A key the sender chose is looked for."""
    lookups: list[str] = []

    def note(_conn, _cursor, statement, _params, _context, _many):
        if statement.startswith("SELECT") and "WHERE signals.idempotency_key" in statement:
            lookups.append(statement)

    queue = vigie_runtime.intake_queue
    event.listen(vigie_runtime.engine, "before_cursor_execute", note)
    try:
        drawn = queue.accept(report(1, idempotency_key="k-drawn", key_drawn=True), "agent:a")
        assert lookups == []
        chosen = queue.accept(report(2, idempotency_key="k-chosen"), "agent:a")
        assert len(lookups) == 1
        again = queue.accept(report(2, idempotency_key="k-chosen"), "agent:a")
    finally:
        event.remove(vigie_runtime.engine, "before_cursor_execute", note)
    assert drawn.created and chosen.created
    assert again.repeated and again.ticket.reference == chosen.ticket.reference


def test_a_report_that_breaks_the_batch_fails_alone(vigie_runtime, caplog):
    """A failure intake does not foresee (here: details that cannot be stored as
    JSON) rolls the batch back; each report is then stored on its own."""
    reports = [report(n) for n in range(1, 6)]
    reports[2] = report(3, extra={"not json": object()})
    outcomes = while_a_batch_is_stored(vigie_runtime, reports)
    assert isinstance(outcomes[2], Exception) and not isinstance(outcomes[2], InvalidInput)
    assert all(isinstance(o, IntakeResult) for i, o in enumerate(outcomes) if i != 2)
    assert stored_tickets(vigie_runtime) == 1 + 4
    assert "storing each alone" in caplog.text


def test_a_report_alone_waits_for_nobody(vigie_runtime, commits):
    for n in range(3):
        outcome = vigie_runtime.intake_queue.accept(report(n), "agent:a")
        assert outcome.created
    assert len(commits) == 3
    assert vigie_runtime.intake_queue.waiting == 0


@pytest.mark.parametrize("vigie_database_url", ["postgresql"], indirect=True)
def test_a_batch_does_not_hold_its_communes_counter_until_its_commit(vigie_runtime, pause):
    """PostgreSQL: a batch's reference numbers are reserved in a transaction of
    their own, so another writer of the commune (another worker's batch, the
    MQTT ingestion) takes its numbers while the batch is still being stored."""
    # PostgreSQL only: on SQLite, one writer at a time, writers wait for each other anyway.
    queue = vigie_runtime.intake_queue
    queue.accept(report(0), "agent:warm-up")  # CLF-<year>-000001
    pause.armed = True
    outcome: list[IntakeResult] = []
    batch = threading.Thread(target=lambda: outcome.append(queue.accept(report(1), "agent:a")))
    batch.start()
    assert pause.inside.wait(10)  # the batch is open, its ticket numbered, not committed
    try:
        with vigie_runtime.sessions() as other:
            other.execute(text("SET LOCAL lock_timeout = '3s'"))
            number = next_number(other, "clermont-ferrand", utcnow().year)
            other.commit()
    finally:
        pause.go.set()
        batch.join(30)
    assert number == 3
    assert outcome[0].ticket.reference.endswith("-000002")


def test_requests_on_the_event_loop_are_stored_together_without_a_thread_each(
    vigie_runtime, commits
):
    queue = vigie_runtime.intake_queue
    threads_before = threading.active_count()

    async def twenty_at_once() -> list[IntakeResult]:
        return await asyncio.gather(
            *(queue.accept_async(report(n), "integration:app") for n in range(20))
        )

    outcomes = asyncio.run(twenty_at_once())
    assert len({outcome.ticket.reference for outcome in outcomes}) == 20
    assert stored_tickets(vigie_runtime) == 20
    assert len(commits) < 20  # handed over together: stored in fewer transactions
    assert threading.active_count() <= threads_before + 1  # the queue's writer, no more


def test_a_request_given_up_while_waiting_is_still_stored(vigie_runtime):
    queue = vigie_runtime.intake_queue

    async def client_goes_away() -> None:
        waiting = asyncio.ensure_future(queue.accept_async(report(1), "integration:app"))
        await asyncio.sleep(0)  # handed over
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(client_goes_away())  # its loop closes before the answer is ready
    assert wait_until(lambda: stored_tickets(vigie_runtime) == 1)
    # The writer is still there for the next request.
    assert queue.accept(report(2), "agent:a").created


def test_closing_stores_what_was_handed_over_then_refuses(vigie_runtime):
    queue = vigie_runtime.intake_queue
    assert queue.accept(report(1), "agent:a").created
    vigie_runtime.close()
    assert not any(t.name == "vigie-intake" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(RuntimeError, match="stopping"):
        queue.accept(report(2), "agent:a")


def refuse_in_the_database(runtime, description: str) -> None:
    """A trigger that makes the database itself refuse a ticket with ``description``
    when its INSERT runs (a constraint the code does not check beforehand)."""
    with runtime.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON tickets"
                    f" WHEN NEW.description = '{description}'"
                    " BEGIN SELECT RAISE(ABORT, 'refused by the database'); END"
                )
            )
            return
        connection.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                f" IF NEW.description = '{description}' THEN"
                " RAISE EXCEPTION 'refused by the database'; END IF; RETURN NEW; END $$"
            )
        )
        connection.execute(
            text("CREATE TRIGGER refuse BEFORE INSERT ON tickets FOR EACH ROW EXECUTE FUNCTION refuse()")
        )


def test_a_report_the_database_refuses_at_its_insert_fails_alone(vigie_runtime, caplog):
    """The database refuses one row of the batch when its INSERT runs. On
    PostgreSQL the batch's INSERTs are sent together, so the refusal arrives
    after the INSERTs that follow it were sent: the batch is rolled back all
    the same, and the others are stored, each alone."""
    refuse_in_the_database(vigie_runtime, "Nid-de-poule n° 3")
    outcomes = while_a_batch_is_stored(vigie_runtime, [report(n) for n in range(1, 6)])
    assert "refused by the database" in str(outcomes[2])
    assert all(isinstance(o, IntakeResult) for i, o in enumerate(outcomes) if i != 2)
    assert stored_tickets(vigie_runtime) == 1 + 4
    assert "storing each alone" in caplog.text
    assert vigie_runtime.intake_queue.accept(report(6), "agent:a").created  # and it goes on


@pytest.mark.parametrize("vigie_database_url", ["postgresql"], indirect=True)
def test_batches_keep_their_connections_and_send_their_writes_together(vigie_runtime):
    """PostgreSQL: after the first batch, a batch takes no connection from the
    pool (each checkout pings the server: a round trip); its numbers and ids
    are taken before its transaction, which only writes; and its INSERTs go
    in a pipeline, answered together."""
    queue = vigie_runtime.intake_queue
    queue.accept(report(0), "agent:warm-up")
    checkouts: list[str] = []
    pipelined: list[bool] = []
    in_transaction: list[str] = []  # the first word of each statement of a batch's transaction

    def checkout(*_args) -> None:
        checkouts.append(threading.current_thread().name)

    def before(connection, _cursor, statement, *_args) -> None:
        if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            in_transaction.append(statement.split()[0])
        if statement.startswith("INSERT INTO tickets"):
            pgconn = connection.connection.driver_connection.pgconn
            pipelined.append(pgconn.pipeline_status != 0)  # libpq's PQ_PIPELINE_OFF

    event.listen(vigie_runtime.engine.pool, "checkout", checkout)
    event.listen(vigie_runtime.engine, "before_cursor_execute", before)
    try:
        for n in range(1, 4):
            reporter = Reporter(email="camille@example.org", notify_by="email")  # and a receipt
            assert queue.accept(report(n, reporter=reporter), "agent:a").created
    finally:
        event.remove(vigie_runtime.engine.pool, "checkout", checkout)
        event.remove(vigie_runtime.engine, "before_cursor_execute", before)
    assert "vigie-intake" not in checkouts
    assert set(in_transaction) == {"INSERT"}  # no SELECT for ids: a round trip each
    assert pipelined == [True, True, True]
    assert stored_tickets(vigie_runtime) == 4


@pytest.mark.parametrize("vigie_database_url", ["postgresql"], indirect=True)
def test_a_kept_connection_the_server_ended_loses_no_report(vigie_runtime, caplog):
    """PostgreSQL: the server ends the writing thread's kept connections (a
    restart, an idle timeout). The next batch fails on them, its report is
    stored alone, and the batches after it are stored together again, on new
    connections."""
    queue = vigie_runtime.intake_queue
    queue.accept(report(0), "agent:warm-up")
    kept = [queue._writing.get(), queue._reserving.get()]  # noqa: SLF001 (the connections to end)
    pids = [connection.connection.driver_connection.info.backend_pid for connection in kept]
    with vigie_runtime.engine.begin() as connection:
        ended = connection.execute(
            text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"),
            {"pids": pids},
        )
        assert ended.scalars().all() == [True, True]
    assert queue.accept(report(1), "agent:a").created  # its batch failed: stored alone
    outcomes = while_a_batch_is_stored(vigie_runtime, [report(n) for n in range(2, 5)])
    assert all(isinstance(o, IntakeResult) and o.created for o in outcomes)
    assert "storing each alone" not in caplog.text  # together again, on new connections
    assert stored_tickets(vigie_runtime) == 1 + 1 + 1 + 3
