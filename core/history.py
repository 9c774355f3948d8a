"""The append-only history of a ticket: who, when, what changed, why."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import events
from core.db.models import Ticket, TicketEvent
from core.db.types import utcnow

_RECORDED = events.per_transaction("vigie_recorded_events")


def record(
    session: Session,
    ticket: Ticket,
    actor: str,
    action: str,
    changes: dict[str, Any] | None = None,
    comment: str | None = None,
    public: bool = True,
) -> TicketEvent:
    """Add one history event to ``ticket`` (written with the caller's transaction).

    ``ticket`` must have been flushed (it has an id)."""
    event = TicketEvent(
        ticket_id=ticket.id,
        at=utcnow(),
        actor=actor,
        action=action,
        changes=changes or {},
        comment=comment,
        public=public,
    )
    # No flush: events go to the database with the rest of the unit of work.
    session.add(event)
    session.info.setdefault(_RECORDED, {}).setdefault(ticket.id, []).append(event)
    return event


def recorded_in_transaction(session: Session, ticket_id: int) -> list[TicketEvent]:
    """The events recorded for a ticket since the session's last commit or rollback,
    without a query (see :func:`core.events.install`, which forgets them)."""
    return list(session.info.get(_RECORDED, {}).get(ticket_id, ()))


def history_of(session: Session, ticket_id: int, public_only: bool = False) -> list[TicketEvent]:
    query = select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.id)
    if public_only:
        query = query.where(TicketEvent.public.is_(True))
    return list(session.scalars(query))
