"""Tickets as Open311 service requests, and their public history as updates.

Only public facts leave here: never a reporter's name, email, phone, device
or account id, never an internal note or the staff member who acted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.db.models import Ticket, TicketEvent
from core.workflow import OPEN_STATUSES, Status

from .jurisdictions import Jurisdiction
from .texts import text

OPEN_VALUES: frozenset[str] = frozenset(status.value for status in OPEN_STATUSES)
CLOSED_VALUES: frozenset[str] = frozenset(s.value for s in Status) - OPEN_VALUES

# History actions that carry a status a resident should see, with its comment.
STATUS_ACTIONS = ("status_changed", "redirected")
# History actions published as updates.
UPDATE_ACTIONS = ("created", "routed", "assigned", "redirected", "status_changed", "commented")


def open311_status(status: str) -> str:
    """``open`` while the city still has work to do; ``closed`` once it has none."""
    return "open" if status in OPEN_VALUES else "closed"


def statuses_for(open311_values: list[str]) -> list[str]:
    wanted: set[str] = set()
    for value in open311_values:
        wanted |= OPEN_VALUES if value == "open" else CLOSED_VALUES
    return sorted(wanted)


def w3(moment: datetime | None, zone: ZoneInfo) -> str | None:
    """W3C date-time with the commune's offset, e.g. ``2026-11-25T10:15:00+01:00``."""
    if moment is None:
        return None
    return moment.astimezone(zone).isoformat(timespec="seconds")


def zone_of(jurisdiction: Jurisdiction) -> ZoneInfo:
    return ZoneInfo(jurisdiction.commune.business_hours.timezone)


def status_notes(ticket: Ticket, status_comment: str | None, language: str) -> str:
    """Vigie's own status first (``in_progress: ...``), then what the city said about it."""
    return f"{ticket.status}: {status_comment or text(language, ticket.status)}"


def agency_responsible(ticket: Ticket, jurisdiction: Jurisdiction) -> str | None:
    if ticket.outside_body:
        return ticket.outside_body
    team = jurisdiction.commune.team(ticket.team) if ticket.team else None
    return team.name if team else None


def service_notice(ticket_category: str, outside_body: str | None, jurisdiction: Jurisdiction,
                   language: str) -> str | None:
    if outside_body:
        return text(language, "redirected_to", body=outside_body)
    settings = jurisdiction.settings
    return settings.service_notices.get(ticket_category) or settings.service_notice


def expected(ticket: Ticket, jurisdiction: Jurisdiction) -> datetime | None:
    if ticket.due_at is not None:
        return ticket.due_at
    hours = jurisdiction.settings.expected_response_hours
    return ticket.created_at + timedelta(hours=hours) if hours else None


def updated(ticket: Ticket) -> datetime:
    """For a closed request the spec wants the moment it was closed."""
    if open311_status(ticket.status) == "closed":
        return ticket.resolved_at or ticket.closed_at or ticket.updated_at
    return ticket.updated_at


def request_entry(
    ticket: Ticket,
    jurisdiction: Jurisdiction,
    language: str,
    status_comment: str | None = None,
    media_url: str | None = None,
) -> dict[str, Any]:
    """One ``service_requests/request``: every field of the spec, in its order."""
    zone = zone_of(jurisdiction)
    category = jurisdiction.commune.category(ticket.category)
    return {
        "service_request_id": ticket.reference,
        "status": open311_status(ticket.status),
        "status_notes": status_notes(ticket, status_comment, language),
        "service_name": category.name if category else ticket.category,
        "service_code": ticket.category,
        "description": (
            None
            if ticket.channel in jurisdiction.settings.private_description_channels
            else ticket.description
        ),
        "agency_responsible": agency_responsible(ticket, jurisdiction),
        "service_notice": service_notice(
            ticket.category, ticket.outside_body, jurisdiction, language
        ),
        "requested_datetime": w3(ticket.created_at, zone),
        "updated_datetime": w3(updated(ticket), zone),
        "expected_datetime": w3(expected(ticket, jurisdiction), zone),
        "address": ticket.address,
        "address_id": None,
        "zipcode": None,
        "lat": ticket.latitude,
        "long": ticket.longitude,
        "media_url": media_url,
    }


def latest_status_comments(tickets: list[Ticket], events: list[TicketEvent]) -> dict[int, str]:
    """Per ticket, the public comment that came with its current status (if any)."""
    status_of = {ticket.id: ticket.status for ticket in tickets}
    comments: dict[int, str] = {}
    for event in events:  # in id order: the last one wins
        change = (event.changes or {}).get("status")
        if not (event.public and event.comment and isinstance(change, list) and len(change) == 2):
            continue
        if change[1] == status_of.get(event.ticket_id):
            comments[event.ticket_id] = event.comment
    return comments


def update_entries(
    ticket: Ticket, events: list[TicketEvent], jurisdiction: Jurisdiction, language: str
) -> list[dict[str, Any]]:
    """The public history of ``ticket`` as ``service_request_updates/request_update``
    (FixMyStreet's extension): status after each update, and what the city said."""
    zone = zone_of(jurisdiction)
    entries = []
    current = Status.NEW.value
    for event in events:
        changes = event.changes or {}
        status_change = changes.get("status")
        if isinstance(status_change, list) and len(status_change) == 2:
            current = str(status_change[1])
        if not event.public or event.action not in UPDATE_ACTIONS:
            continue
        description = _update_description(event, current, jurisdiction, language)
        if description is None:
            continue
        entries.append(
            {
                "update_id": str(event.id),
                "service_request_id": ticket.reference,
                "status": open311_status(current),
                "updated_datetime": w3(event.at, zone),
                "description": description,
                "media_url": "",
            }
        )
    return entries


def _update_description(
    event: TicketEvent, current: str, jurisdiction: Jurisdiction, language: str
) -> str | None:
    changes = event.changes or {}
    if event.action == "created":
        return text(language, "received")
    if event.action in ("routed", "assigned"):
        team_change = changes.get("team")
        code = team_change[1] if isinstance(team_change, list) and len(team_change) == 2 else None
        team = jurisdiction.commune.team(code) if code else None
        return text(language, "assigned_to", team=team.name) if team else None
    if event.action == "commented":
        return event.comment
    if event.action == "redirected" or current == Status.REDIRECTED.value:
        body_change = changes.get("outside_body")
        body = body_change[1] if isinstance(body_change, list) and len(body_change) == 2 else None
        if event.comment:
            return event.comment
        return text(language, "redirected_to", body=body) if body else text(language, current)
    return event.comment or text(language, "status_now", label=text(language, current))
