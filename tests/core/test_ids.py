"""New rows get their ids before the INSERT (``core/db/ids.py``): a batch of
reports writes each table in one statement, ids follow the order rows were
added, and rows inserted in between by plain SQL are never collided with."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import event, func, insert, select

from core import history
from core.db.models import SignalRecord, Ticket, TicketEvent
from core.db.types import utcnow
from core.intake import accept_signal
from core.signals import Location, Report

DESK = "agent:standard"


def report(number: int) -> Report:
    return Report(
        commune="clermont-ferrand",
        category="proprete",
        description=f"Corbeille qui déborde, rue du Port no {number}",
        channel="phone",
        location=Location(45.7797, 3.0863, f"{number} rue du Port"),
        answers={"nature": "corbeille"},
    )


def test_a_batch_of_reports_writes_each_table_in_one_statement(vigie_runtime):
    inserts: Counter[str] = Counter()

    def count(_conn, _cursor, statement, _params, _context, _many):
        if statement.startswith("INSERT INTO"):
            inserts[statement.split()[2]] += 1

    engine = vigie_runtime.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        with vigie_runtime.sessions() as session:
            tickets = [
                accept_signal(vigie_runtime, session, report(n), DESK, checked=True).ticket
                for n in range(12)
            ]
            session.flush()
            session.commit()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # 12 tickets, 12 signals, 3 history events each (created, routed, due date).
    assert inserts["tickets"] == 1
    assert inserts["signals"] == 1
    assert inserts["ticket_events"] == 1
    with vigie_runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Ticket)) == 12
        assert session.scalar(select(func.count()).select_from(SignalRecord)) == 12
        actions = [
            [e.action for e in history.history_of(session, ticket.id)] for ticket in tickets
        ]
        assert actions == [["created", "routed", "due_date_set"]] * 12


def test_ids_follow_the_order_rows_were_added_and_avoid_rows_added_by_sql(vigie_runtime):
    with vigie_runtime.sessions() as session:
        ticket = accept_signal(vigie_runtime, session, report(1), DESK).ticket
        session.commit()
    with vigie_runtime.sessions() as session:
        ticket = session.get(Ticket, ticket.id)
        first = history.record(session, ticket, DESK, "commented", comment="un")
        second = history.record(session, ticket, DESK, "commented", comment="deux")
        session.flush()
        # A row inserted by plain SQL, with the id the database gives it.
        session.execute(
            insert(TicketEvent),
            [{"ticket_id": ticket.id, "at": utcnow(), "actor": DESK, "action": "commented",
              "changes": {}, "comment": "trois", "public": False}],
        )  # fmt: skip
        fourth = history.record(session, ticket, DESK, "commented", comment="quatre")
        session.commit()
        assert first.id < second.id < fourth.id
    with vigie_runtime.sessions() as session:
        comments = [e.comment for e in history.history_of(session, ticket.id)]
    assert comments[-4:] == ["un", "deux", "trois", "quatre"]
