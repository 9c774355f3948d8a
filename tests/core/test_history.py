"""A ticket's history: one event per change, naming who, when, what and why; only ever added to.

Runs on SQLite and PostgreSQL (``vigie_runtime``). The same history through
GET /api/v1/tickets/{id} is in tests/api/test_ticket_actions_api.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core import history, ticket_actions
from core.attachments import store_attachment
from core.db.models import Ticket
from core.intake import accept_signal
from core.signals import Location, Report
from core.workflow import IllegalTransition

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
DESK = "agent:standard"
CHIEF = "supervisor:chef"


def report(**overrides) -> Report:
    fields = dict(
        commune="clermont-ferrand",
        category="proprete",
        description="Corbeille qui déborde rue du Port",
        channel="phone",
        location=Location(45.7797, 3.0863, "5 rue du Port"),
        answers={"nature": "corbeille"},
    )
    fields.update(overrides)
    return Report(**fields)


def open_ticket(runtime, **overrides) -> int:
    with runtime.sessions() as session:
        ticket = accept_signal(runtime, session, report(**overrides), DESK).ticket
        session.commit()
        return ticket.id


def events_of(runtime, ticket_id: int) -> list[tuple]:
    """Everything an event says, read with a new session."""
    with runtime.sessions() as session:
        return [
            (e.id, e.at, e.actor, e.action, e.changes, e.comment, e.public)
            for e in history.history_of(session, ticket_id)
        ]


def act(runtime, ticket_id: int, action, *args, **kwargs) -> list[tuple]:
    """Run one ticket action in its own transaction; return the events it added."""
    before = events_of(runtime, ticket_id)
    with runtime.sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        action(session, ticket, *args, **kwargs)
        session.commit()
    after = events_of(runtime, ticket_id)
    assert after[: len(before)] == before, "earlier events changed"
    return after[len(before) :]


def test_events_come_back_in_the_order_they_were_recorded(vigie_runtime):
    ticket_id = open_ticket(vigie_runtime)
    with vigie_runtime.sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        for n in range(5):
            history.record(session, ticket, DESK, "commented", {}, f"note {n}", public=n % 2 == 0)
        session.commit()
    comments = [e[5] for e in events_of(vigie_runtime, ticket_id) if e[3] == "commented"]
    assert comments == [f"note {n}" for n in range(5)]
    with vigie_runtime.sessions() as session:
        public = [e.comment for e in history.history_of(session, ticket_id, public_only=True)]
    assert [c for c in public if c and c.startswith("note")] == ["note 0", "note 2", "note 4"]


def test_creation_is_recorded_with_routing_and_due_date(vigie_runtime):
    ticket_id = open_ticket(vigie_runtime)
    events = events_of(vigie_runtime, ticket_id)
    assert [(e[2], e[3]) for e in events] == [
        (DESK, "created"),
        ("plugin:routing", "routed"),
        ("plugin:sla", "due_date_set"),
    ]
    assert events[0][4] == {
        "category": "proprete",
        "priority": "normal",
        "channel": "phone",
        "status": "new",
    }
    assert events[1][4] == {"team": [None, "proprete-centre"]}
    old_due, new_due = events[2][4]["due_at"]
    assert old_due is None and datetime.fromisoformat(new_due) > events[0][1]


def test_a_commune_without_routing_or_sla_records_only_the_creation(vigie_runtime):
    ticket_id = open_ticket(
        vigie_runtime, commune="beaumont", location=Location(address="Place de la Rodade")
    )
    assert [e[3] for e in events_of(vigie_runtime, ticket_id)] == ["created"]


def test_every_event_names_actor_and_time_in_utc(vigie_runtime):
    started = datetime.now(UTC)
    ticket_id = open_ticket(vigie_runtime)
    act(vigie_runtime, ticket_id, ticket_actions.add_comment, DESK, "Rappeler la requérante")
    times = [e[1] for e in events_of(vigie_runtime, ticket_id)]
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in times)
    assert times == sorted(times)
    assert started - timedelta(seconds=1) <= times[0] and times[-1] <= datetime.now(UTC)


def test_status_change_is_one_event_with_old_and_new(vigie_runtime):
    ticket_id = open_ticket(vigie_runtime)
    added = act(
        vigie_runtime,
        ticket_id,
        lambda s, t: ticket_actions.change_status(
            vigie_runtime, s, t, "acknowledged", DESK, "Pris en compte"
        ),
    )
    assert [(e[2], e[3], e[4], e[5]) for e in added] == [
        (DESK, "status_changed", {"status": ["new", "acknowledged"]}, "Pris en compte")
    ]


def test_redirection_records_the_outside_body(vigie_runtime):
    ticket_id = open_ticket(vigie_runtime)
    added = act(
        vigie_runtime,
        ticket_id,
        lambda s, t: ticket_actions.change_status(
            vigie_runtime, s, t, "redirected", DESK, "Relève d'Enedis", outside_body="Enedis"
        ),
    )
    assert [e[4] for e in added] == [
        {"status": ["new", "redirected"], "outside_body": [None, "Enedis"]}
    ]


def test_comment_is_one_internal_event(vigie_runtime):
    ticket_id = open_ticket(vigie_runtime)
    added = act(vigie_runtime, ticket_id, ticket_actions.add_comment, DESK, "  Voisin rappelé  ")
    assert [(e[2], e[3], e[4], e[5], e[6]) for e in added] == [
        (DESK, "commented", {}, "Voisin rappelé", False)
    ]


def test_assignment_records_the_team_then_the_status(vigie_runtime):
    ticket_id = open_ticket(vigie_runtime)
    added = act(
        vigie_runtime,
        ticket_id,
        lambda s, t: ticket_actions.assign(
            vigie_runtime, s, t, "proprete-nord", CHIEF, "Secteur nord"
        ),
    )
    assert [(e[2], e[3], e[4]) for e in added] == [
        (CHIEF, "assigned", {"team": ["proprete-centre", "proprete-nord"]}),
        (CHIEF, "status_changed", {"status": ["new", "assigned"]}),
    ]
    assert added[0][5] == "Secteur nord"


def test_priority_change_records_the_priority_and_the_new_due_date(vigie_runtime):
    ticket_id = open_ticket(vigie_runtime)
    added = act(
        vigie_runtime,
        ticket_id,
        lambda s, t: ticket_actions.set_priority(
            vigie_runtime, s, t, "urgent", CHIEF, "Verre brisé"
        ),
    )
    assert [(e[2], e[3]) for e in added] == [
        (CHIEF, "priority_changed"),
        ("plugin:sla", "due_date_set"),
    ]
    assert added[0][4] == {"priority": ["normal", "urgent"]}
    old_due, new_due = added[1][4]["due_at"]
    assert datetime.fromisoformat(new_due) < datetime.fromisoformat(old_due)


def test_setting_the_same_priority_records_nothing(vigie_runtime):
    ticket_id = open_ticket(vigie_runtime)
    added = act(
        vigie_runtime,
        ticket_id,
        lambda s, t: ticket_actions.set_priority(vigie_runtime, s, t, "normal", CHIEF),
    )
    assert added == []


def test_duplicate_link_is_recorded_on_both_tickets(vigie_runtime):
    original_id = open_ticket(vigie_runtime)
    copy_id = open_ticket(vigie_runtime)
    before_original = events_of(vigie_runtime, original_id)
    with vigie_runtime.sessions() as session:
        copy, original = session.get(Ticket, copy_id), session.get(Ticket, original_id)
        copy_ref, original_ref = copy.reference, original.reference
        ticket_actions.mark_duplicate(
            vigie_runtime, session, copy, original, CHIEF, "Même corbeille"
        )
        session.commit()
    copy_events = events_of(vigie_runtime, copy_id)[-2:]
    assert [(e[2], e[3], e[4], e[5]) for e in copy_events] == [
        (CHIEF, "linked", {"duplicate_of": [None, original_ref]}, "Même corbeille"),
        (CHIEF, "status_changed", {"status": ["new", "duplicate"]}, "Même corbeille"),
    ]
    original_events = events_of(vigie_runtime, original_id)
    assert original_events[: len(before_original)] == before_original
    assert [(e[2], e[3], e[4]) for e in original_events[len(before_original) :]] == [
        (CHIEF, "linked", {"duplicates": [None, copy_ref]})
    ]


def test_attachment_is_one_internal_event(vigie_runtime):
    ticket_id = open_ticket(vigie_runtime)
    added = act(
        vigie_runtime,
        ticket_id,
        lambda s, t: store_attachment(
            s, vigie_runtime.settings.data_dir, t, "corbeille.png", PNG, DESK
        ),
    )
    assert [(e[2], e[3], e[4], e[6]) for e in added] == [
        (DESK, "attachment_added", {"attachment": [None, "corbeille.png"]}, False)
    ]


def test_history_only_grows_through_a_ticket_life(vigie_runtime):
    rt = vigie_runtime
    ticket_id = open_ticket(rt)
    steps = [
        lambda s, t: ticket_actions.change_status(rt, s, t, "acknowledged", DESK),
        lambda s, t: ticket_actions.add_comment(s, t, DESK, "Photo demandée"),
        lambda s, t: ticket_actions.assign(rt, s, t, "proprete-nord", CHIEF),
        lambda s, t: ticket_actions.set_priority(rt, s, t, "high", CHIEF),
        lambda s, t: ticket_actions.change_status(rt, s, t, "in_progress", CHIEF),
        lambda s, t: ticket_actions.change_status(rt, s, t, "resolved", CHIEF, "Nettoyé"),
        lambda s, t: ticket_actions.change_status(rt, s, t, "reopened", DESK, "Encore sale"),
        lambda s, t: ticket_actions.change_status(rt, s, t, "resolved", CHIEF, "Nettoyé à nouveau"),
        lambda s, t: ticket_actions.change_status(rt, s, t, "closed", CHIEF),
    ]
    counts = [len(events_of(rt, ticket_id))]
    for step in steps:
        assert act(rt, ticket_id, step), "every change adds an event"
        counts.append(len(events_of(rt, ticket_id)))
    assert counts == sorted(set(counts))
    statuses = [e[4]["status"] for e in events_of(rt, ticket_id) if e[3] == "status_changed"]
    assert statuses == [
        ["new", "acknowledged"],
        ["acknowledged", "assigned"],
        ["assigned", "in_progress"],
        ["in_progress", "resolved"],
        ["resolved", "reopened"],
        ["reopened", "resolved"],
        ["resolved", "closed"],
    ]


def test_a_refused_duplicate_link_leaves_no_trace(vigie_runtime):
    original_id = open_ticket(vigie_runtime)
    closed_id = open_ticket(vigie_runtime)
    for status in ("resolved", "closed"):
        act(
            vigie_runtime,
            closed_id,
            lambda s, t, status=status: ticket_actions.change_status(
                vigie_runtime, s, t, status, CHIEF
            ),
        )
    before = events_of(vigie_runtime, closed_id), events_of(vigie_runtime, original_id)
    with vigie_runtime.sessions() as session:
        closed, original = session.get(Ticket, closed_id), session.get(Ticket, original_id)
        with pytest.raises(IllegalTransition):
            ticket_actions.mark_duplicate(vigie_runtime, session, closed, original, CHIEF)
        session.commit()  # even a caller that commits anyway stores nothing
    assert (events_of(vigie_runtime, closed_id), events_of(vigie_runtime, original_id)) == before
    with vigie_runtime.sessions() as session:
        assert session.get(Ticket, closed_id).duplicate_of_id is None
