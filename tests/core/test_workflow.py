"""The ticket workflow as a domain rule: which moves are allowed, and what each needs.

The same rules through the HTTP API are in tests/api/test_ticket_actions_api.py.
"""

from __future__ import annotations

import pytest

from core import ticket_actions
from core.db.models import Ticket
from core.errors import InvalidInput
from core.workflow import (
    FINAL_STATUSES,
    NEEDS_COMMENT,
    OPEN_STATUSES,
    TRANSITIONS,
    IllegalTransition,
    Status,
    check_transition,
    parse_status,
)

LEGAL = [(source, target) for source in Status for target in TRANSITIONS[source]]
ILLEGAL = [
    (source, target) for source in Status for target in Status if target not in TRANSITIONS[source]
]


def _ids(pair: tuple[Status, Status]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


def unsaved_ticket(status: Status) -> Ticket:
    """A ticket that never reaches a database: refusals must happen before any write."""
    return Ticket(
        id=1, reference="CLF-2026-000001", commune="clermont-ferrand", status=status.value
    )


def test_the_matrix_is_complete():
    assert set(TRANSITIONS) == set(Status)
    assert len(LEGAL) + len(ILLEGAL) == len(Status) ** 2
    assert all(source not in TRANSITIONS[source] for source in Status)  # no-op moves are refused


@pytest.mark.parametrize(("source", "target"), LEGAL, ids=[_ids(p) for p in LEGAL])
def test_legal_transition_is_allowed(source, target):
    assert check_transition(source.value, target.value) is target


@pytest.mark.parametrize(("source", "target"), ILLEGAL, ids=[_ids(p) for p in ILLEGAL])
def test_illegal_transition_is_refused_naming_the_allowed_ones(source, target):
    with pytest.raises(IllegalTransition) as caught:
        check_transition(source.value, target.value)
    message = str(caught.value)
    assert f"from {source.value} to {target.value}" in message
    assert caught.value.allowed == TRANSITIONS[source]
    if TRANSITIONS[source]:
        named = message.split("allowed from", 1)[1]
        assert [s.value for s in TRANSITIONS[source]] == [
            p.strip() for p in named.split(":", 1)[1].split(",")
        ]
    else:
        assert f"{source.value} is final" in message


@pytest.mark.parametrize(("source", "target"), ILLEGAL, ids=[_ids(p) for p in ILLEGAL])
def test_change_status_refuses_illegal_moves_before_touching_the_ticket(source, target):
    ticket = unsaved_ticket(source)
    with pytest.raises(IllegalTransition):
        # No runtime and no session: an illegal move must not get as far as writing.
        ticket_actions.change_status(
            None, None, ticket, target.value, "agent:test", comment="motif", outside_body="Enedis"
        )
    assert ticket.status == source.value


def test_final_statuses_refuse_everything():
    assert FINAL_STATUSES == {Status.CLOSED, Status.REJECTED, Status.DUPLICATE, Status.REDIRECTED}
    for final in FINAL_STATUSES:
        assert TRANSITIONS[final] == ()
    assert not OPEN_STATUSES & FINAL_STATUSES


def test_only_a_resolved_ticket_can_be_reopened():
    assert [s for s in Status if Status.REOPENED in TRANSITIONS[s]] == [Status.RESOLVED]
    assert check_transition("resolved", "reopened") is Status.REOPENED


def test_a_resolved_ticket_is_closed_or_reopened_and_nothing_else():
    assert set(TRANSITIONS[Status.RESOLVED]) == {Status.CLOSED, Status.REOPENED}


def test_every_status_can_be_reached_from_new():
    reached, frontier = {Status.NEW}, [Status.NEW]
    while frontier:
        for target in TRANSITIONS[frontier.pop()]:
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(Status)


def test_an_unknown_status_is_invalid_input_listing_the_known_ones():
    with pytest.raises(InvalidInput) as caught:
        parse_status("done")
    assert caught.value.problems[0].field == "status"
    assert "'done'" in str(caught.value)
    for status in Status:
        assert status.value in str(caught.value)
    with pytest.raises(InvalidInput):
        check_transition("new", "done")


@pytest.mark.parametrize("target", sorted(NEEDS_COMMENT))
@pytest.mark.parametrize("comment", [None, "", "   "])
def test_rejected_redirected_reopened_need_a_reason(target, comment):
    assert NEEDS_COMMENT == {Status.REJECTED, Status.REDIRECTED, Status.REOPENED}
    source = Status.RESOLVED if target is Status.REOPENED else Status.NEW
    ticket = unsaved_ticket(source)
    with pytest.raises(InvalidInput) as caught:
        ticket_actions.change_status(
            None, None, ticket, target.value, "agent:test", comment=comment, outside_body="Enedis"
        )
    assert [p.field for p in caught.value.problems] == ["comment"]
    assert target.value in str(caught.value)
    assert ticket.status == source.value


@pytest.mark.parametrize("outside_body", [None, "", "  "])
def test_redirected_needs_the_outside_body(outside_body):
    ticket = unsaved_ticket(Status.NEW)
    with pytest.raises(InvalidInput) as caught:
        ticket_actions.change_status(
            None,
            None,
            ticket,
            "redirected",
            "agent:test",
            comment="pas chez nous",
            outside_body=outside_body,
        )
    assert [p.field for p in caught.value.problems] == ["outside_body"]
    assert ticket.status == "new" and ticket.outside_body is None


def test_duplicate_is_set_only_by_the_duplicate_action():
    ticket = unsaved_ticket(Status.NEW)
    with pytest.raises(InvalidInput) as caught:
        ticket_actions.change_status(
            None, None, ticket, "duplicate", "agent:test", comment="doublon"
        )
    assert [p.field for p in caught.value.problems] == ["status"]
    assert "duplicate action" in str(caught.value)
    assert ticket.status == "new"
