"""Read-only views of stored things, as plugins receive them.

Plugins never get ORM objects: a snapshot cannot lazy-load, expire or be
written back by accident, and it survives the end of the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.signals import Location


@dataclass(frozen=True)
class ReporterContact:
    """How to reach one resident who reported the ticket's problem."""

    name: str | None
    email: str | None
    phone: str | None
    notify_by: str | None
    language: str


@dataclass(frozen=True)
class TicketSnapshot:
    id: int
    reference: str
    commune: str
    category: str
    description: str
    channel: str
    status: str
    priority: str
    location: Location
    created_at: datetime
    updated_at: datetime
    team: str | None = None
    outside_body: str | None = None
    due_at: datetime | None = None
    asset: str | None = None
    answers: dict[str, Any] = field(default_factory=dict)
    device_ids: tuple[str, ...] = ()
    duplicate_of: str | None = None
    incident_of: str | None = None
    # Residents to tell about progress (personal data: for notifications only).
    reporters: tuple[ReporterContact, ...] = ()


@dataclass(frozen=True)
class HistoryEvent:
    """One entry of a ticket's append-only history."""

    ticket_id: int
    at: datetime
    actor: str
    action: str
    changes: dict[str, Any]
    comment: str | None = None
    public: bool = True
