"""A batch's new rows written as plain INSERTs (``core/db/new_rows.py``): stored once,
a table in one statement, foreign keys and defaults filled in as a flush would,
and the objects still readable afterwards; where a row cannot go that way, the
ordinary flush writes them all."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import event, func, inspect, select

from core import history
from core.db.models import OutboxMessage, ReferenceCounter, SignalRecord, Ticket
from core.db.new_rows import insert_new_rows
from core.intake import accept_signal
from core.signals import Location, Report, Reporter

DESK = "agent:standard"


def report(number: int, email: str | None = None) -> Report:
    return Report(
        commune="clermont-ferrand",
        category="proprete",
        description=f"Corbeille qui déborde, rue du Port no {number}",
        channel="web",
        location=Location(45.7797, 3.0863, f"{number} rue du Port"),
        answers={"nature": "corbeille"},
        reporter=Reporter(name="Camille", email=email, notify_by="email" if email else None),
    )


def counted_inserts(engine):
    inserts: Counter[str] = Counter()

    def count(_conn, _cursor, statement, _params, _context, _many):
        if statement.startswith("INSERT INTO"):
            inserts[statement.split()[2]] += 1

    event.listen(engine, "before_cursor_execute", count)
    return inserts, lambda: event.remove(engine, "before_cursor_execute", count)


def rows_of(runtime, model) -> int:
    with runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_a_batch_is_stored_once_a_table_at_a_time_and_reads_as_after_a_flush(vigie_runtime):
    inserts, stop = counted_inserts(vigie_runtime.engine)
    try:
        with vigie_runtime.sessions() as session:
            results = [
                accept_signal(
                    vigie_runtime, session, report(n, f"r{n}@example.org"), DESK, checked=True
                )
                for n in range(5)
            ]
            written = insert_new_rows(session)
            assert not session.new  # nothing left for a flush to insert again
            session.commit()
    finally:
        stop()
    # 5 tickets, their 5 signals, 3 history events each, a receipt each.
    assert written == 5 + 5 + 15 + 5
    inserts.pop("reference_counters", None)  # the commune's first number of the year
    assert dict(inserts) == {"tickets": 1, "signals": 1, "ticket_events": 1, "outbox": 1}
    assert rows_of(vigie_runtime, Ticket) == 5
    assert rows_of(vigie_runtime, OutboxMessage) == 5

    ticket, signal = results[2].ticket, results[2].signal
    # The objects are the stored rows, detached: readable, not pending any more.
    assert inspect(ticket).detached and inspect(signal).detached
    assert signal.ticket_id == ticket.id  # copied from the relationship, as a flush does
    assert signal.language == "fr"  # a column default, filled in on the object
    with vigie_runtime.sessions() as session:
        stored = session.get(Ticket, ticket.id)
        assert stored.reference == ticket.reference
        assert [s.reporter_email for s in stored.signals] == ["r2@example.org"]
        assert [e.action for e in history.history_of(session, ticket.id)] == [
            "created",
            "routed",
            "due_date_set",
        ]
        receipt = session.scalars(
            select(OutboxMessage).where(OutboxMessage.ticket_id == ticket.id)
        ).one()
        assert (receipt.status, receipt.attempts, receipt.recipient) == (
            "pending",
            0,
            "r2@example.org",
        )


def test_rows_that_cannot_all_go_are_all_left_to_the_flush_untouched(vigie_runtime):
    """One new row this cannot write (a counter, keyed by commune and year) and
    nothing is written or changed: the flush writes the ticket and its rows
    together."""
    with vigie_runtime.sessions() as session:
        result = accept_signal(vigie_runtime, session, report(1), DESK, checked=True)
        session.add(ReferenceCounter(commune="aubiere", year=2031, last_number=7))
        assert insert_new_rows(session) == 0
        assert result.signal in session.new and result.ticket in session.new
        assert result.signal.ticket_id is None  # not copied: the flush will
        session.commit()
    assert rows_of(vigie_runtime, Ticket) == 1
    assert rows_of(vigie_runtime, ReferenceCounter) == 2  # clermont-ferrand's and this one
    with vigie_runtime.sessions() as session:
        signal = session.scalars(select(SignalRecord)).one()
        assert signal.ticket_id == result.ticket.id
