"""What staff do to a ticket: change its status, assign, comment, link, prioritise.

Each function changes the ticket, writes the history event and holds the
plugin events until the caller commits.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import events, history, notify
from core.config.models import PRIORITIES
from core.db.models import Ticket
from core.db.types import utcnow
from core.errors import Conflict, InvalidInput, NotFound
from core.intake import refresh_due_date
from core.references import REFERENCE_PATTERN
from core.runtime import Runtime
from core.workflow import NEEDS_COMMENT, OPEN_STATUSES, Status, check_transition

MAX_ID = 2**31 - 1  # ids are 32-bit integer columns on PostgreSQL


def find_ticket(session: Session, key: str | int, communes: frozenset[str] | None = None) -> Ticket:
    """A ticket by id or reference; NotFound also when it is outside ``communes``."""
    text = str(key).strip()
    if text.isascii() and text.isdigit():
        # An id beyond the integer column's range names no ticket (and would overflow the driver).
        ticket = session.get(Ticket, int(text)) if int(text) <= MAX_ID else None
    elif REFERENCE_PATTERN.match(text.upper()):
        ticket = session.scalar(select(Ticket).where(Ticket.reference == text.upper()))
    else:
        ticket = None
    if ticket is None or (communes is not None and ticket.commune not in communes):
        raise NotFound(f"no ticket {text}")
    return ticket


def change_status(
    runtime: Runtime,
    session: Session,
    ticket: Ticket,
    new_status: str,
    actor: str,
    comment: str | None = None,
    outside_body: str | None = None,
    public: bool = True,
) -> Ticket:
    """Move ``ticket`` along the workflow; raises IllegalTransition naming the allowed moves."""
    old = ticket.status
    target = check_transition(old, new_status)
    if target in NEEDS_COMMENT and not (comment and comment.strip()):
        raise InvalidInput.one("comment", f"a reason is required to set {target.value}")
    if target is Status.REDIRECTED and not (outside_body and outside_body.strip()):
        raise InvalidInput.one("outside_body", "name the outside body the ticket is redirected to")
    if target is Status.DUPLICATE and ticket.duplicate_of_id is None:
        raise InvalidInput.one("status", "use the duplicate action, which names the original ticket")
    changes: dict = {"status": [old, target.value]}
    ticket.status = target.value
    now = utcnow()
    if target is Status.RESOLVED:
        ticket.resolved_at = now
    elif target is Status.CLOSED:
        ticket.closed_at = now
    elif target is Status.REOPENED:
        ticket.resolved_at = None
    if target is Status.REDIRECTED:
        changes["outside_body"] = [ticket.outside_body, outside_body]
        ticket.outside_body = outside_body
    ticket.updated_at = now
    event = history.record(session, ticket, actor, "status_changed", changes, comment, public)
    notify.queue_notifications(runtime, session, ticket, event)
    commune = runtime.commune(ticket.commune)
    events.after_commit(
        session,
        "ticket_status_changed",
        ticket=ticket.snapshot(),
        old_status=old,
        new_status=target.value,
        event=event.snapshot(),
        commune=commune,
    )
    return ticket


def assign(
    runtime: Runtime, session: Session, ticket: Ticket, team: str, actor: str, comment: str | None = None
) -> Ticket:
    """Give the ticket to one of its commune's teams; a waiting ticket becomes ``assigned``."""
    commune = runtime.commune(ticket.commune)
    if commune.team(team) is None:
        known = ", ".join(t.code for t in commune.teams) or "none"
        raise InvalidInput.one("team", f"{team!r} is not a team of {commune.slug}; teams: {known}")
    if ticket.status not in {s.value for s in OPEN_STATUSES}:
        raise Conflict(f"ticket {ticket.reference} is {ticket.status}: reopen it before assigning")
    old_team = ticket.team
    ticket.team = team
    ticket.updated_at = utcnow()
    event = history.record(session, ticket, actor, "assigned", {"team": [old_team, team]}, comment)
    notify.queue_notifications(runtime, session, ticket, event)
    if ticket.status in (Status.NEW, Status.ACKNOWLEDGED, Status.REOPENED):
        change_status(runtime, session, ticket, Status.ASSIGNED.value, actor)
    return ticket


def add_comment(session: Session, ticket: Ticket, actor: str, text: str, public: bool = False) -> Ticket:
    """A note on the ticket; internal unless ``public`` (then residents see it)."""
    if not text or not text.strip():
        raise InvalidInput.one("comment", "must not be empty")
    ticket.updated_at = utcnow()
    history.record(session, ticket, actor, "commented", {}, text.strip(), public)
    return ticket


def set_priority(
    runtime: Runtime, session: Session, ticket: Ticket, priority: str, actor: str, comment: str | None = None
) -> Ticket:
    if priority not in PRIORITIES:
        raise InvalidInput.one("priority", f"must be one of {', '.join(PRIORITIES)}")
    if priority == ticket.priority:
        return ticket
    old = ticket.priority
    ticket.priority = priority
    ticket.updated_at = utcnow()
    history.record(session, ticket, actor, "priority_changed", {"priority": [old, priority]}, comment)
    refresh_due_date(runtime, session, ticket, runtime.commune(ticket.commune))
    return ticket


def mark_duplicate(
    runtime: Runtime, session: Session, ticket: Ticket, original: Ticket, actor: str, comment: str | None = None
) -> Ticket:
    """Close ``ticket`` as a duplicate of ``original``; both histories say so."""
    # Refuse before writing anything: a final ticket cannot become a duplicate.
    check_transition(ticket.status, Status.DUPLICATE.value)
    if original.id == ticket.id:
        raise InvalidInput.one("duplicate_of", "a ticket cannot duplicate itself")
    if original.commune != ticket.commune:
        raise InvalidInput.one("duplicate_of", "the original ticket belongs to another commune")
    while original.duplicate_of is not None:  # point at the ticket actually being worked
        original = original.duplicate_of
    if original.id == ticket.id:
        raise InvalidInput.one("duplicate_of", f"{original.reference} is already a duplicate of this ticket")
    ticket.duplicate_of_id = original.id
    ticket.duplicate_of = original
    history.record(session, ticket, actor, "linked", {"duplicate_of": [None, original.reference]}, comment)
    history.record(
        session, original, actor, "linked", {"duplicates": [None, ticket.reference]}, comment
    )
    change_status(runtime, session, ticket, Status.DUPLICATE.value, actor, comment)
    return ticket
