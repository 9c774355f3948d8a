"""Recoveries: a device says a condition is over (lamp ok, leak stopped).

The alert signal it recovers gets its ``recovered_at`` and its ticket a
``recovered`` history event by ``sensor:<device_id>``. When the connector
says so for the commune (``resolves_on_recovery(commune)``, else the
``resolve_on_recovery`` field of the commune's connector settings), a ticket
whose alerts have all recovered is resolved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import ticket_actions
from core.config import Commune
from core.connectors import Connector
from core.db.models import SignalRecord, Ticket, TicketEvent
from core.db.types import utcnow
from core.runtime import Runtime
from core.signals import Alert
from core.workflow import TRANSITIONS, Status

log = logging.getLogger(__name__)

RESOLVED_COMMENT = "Les capteurs signalent la fin du problème : ticket résolu automatiquement."


def resolves_on_recovery(connector: Connector | None, name: str | None, commune: Commune) -> bool:
    """Does a recovery resolve this commune's tickets of this connector?"""
    ask = getattr(connector, "resolves_on_recovery", None)
    if callable(ask):
        try:
            return bool(ask(commune))
        except Exception:
            log.exception('connector "%s" failed in resolves_on_recovery', name)
            return False
    if not name:
        return False
    return bool(getattr(commune.plugin_config(name), "resolve_on_recovery", False))


def recovered_event(ticket: Ticket, alert: Alert) -> TicketEvent:
    """The history entry of a recovery (added without a flush: storms recover thousands)."""
    return TicketEvent(
        ticket_id=ticket.id,
        at=utcnow(),
        actor=f"sensor:{alert.device_id}",
        action="recovered",
        changes={
            "device_id": alert.device_id,
            "condition": alert.condition,
            "recovered_at": alert.observed_at.isoformat(),
        },
        public=False,
    )


@dataclass
class PendingResolution:
    ticket: Ticket
    actor: str


def _path_to_resolved(status: str) -> list[str]:
    """The shortest workflow path from ``status`` to resolved (empty if none)."""
    start = Status(status)
    paths: dict[Status, list[Status]] = {start: []}
    queue = [start]
    while queue:
        current = queue.pop(0)
        if current is Status.RESOLVED:
            return [s.value for s in paths[current]]
        for following in TRANSITIONS[current]:
            if following not in paths and following not in (Status.DUPLICATE, Status.REJECTED):
                paths[following] = [*paths[current], following]
                queue.append(following)
    return []


def still_active(session: Session, ticket_ids: list[int]) -> set[int]:
    """Those of the tickets that hold an alert not recovered yet (one query)."""
    active: set[int] = set()
    for start in range(0, len(ticket_ids), 500):
        active.update(
            session.scalars(
                select(SignalRecord.ticket_id)
                .where(
                    SignalRecord.ticket_id.in_(ticket_ids[start : start + 500]),
                    SignalRecord.kind == "alert",
                    SignalRecord.recovered_at.is_(None),
                )
                .distinct()
            )
        )
    return active


def resolve_if_all_recovered(
    runtime: Runtime, session: Session, pending: PendingResolution, active: bool | None = None
) -> bool:
    """Resolve the ticket if none of its alerts is still active; True if it was.
    ``active``: already known (see :func:`still_active`), else asked here."""
    ticket = pending.ticket
    if active is None:
        active = bool(still_active(session, [ticket.id]))
    if active:
        return False
    steps = _path_to_resolved(ticket.status)
    if not steps:
        return False
    for step in steps:
        comment = RESOLVED_COMMENT if step == Status.RESOLVED.value else None
        ticket_actions.change_status(runtime, session, ticket, step, pending.actor, comment)
    return True
