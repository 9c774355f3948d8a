"""What a resident may see of a ticket: its status and its public history, in words.

Only events staff marked public are shown, and of those only what the city
says (status, team, outside body, dates, public messages): never who did
it, never the reporter's details, the description or the answers, which may
hold names or number plates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from connectors.webform.i18n import format_datetime, translator
from core.config import Commune
from core.db.models import Ticket, TicketEvent


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime  # in the commune's time zone
    at_text: str
    text: str
    comment: str | None = None


@dataclass(frozen=True)
class PublicTicket:
    reference: str
    commune: str
    category: str
    status: str
    status_label: str
    received: str
    updated: str
    due: str | None
    duplicate_of: str | None
    timeline: list[TimelineEntry]


def _new_value(changes: dict, key: str) -> object:
    change = changes.get(key)
    if isinstance(change, list | tuple) and len(change) == 2:
        return change[1]
    return None


def describe_event(event: TicketEvent, commune: Commune, language: str, zone: ZoneInfo) -> str:
    _ = translator(language)
    changes = event.changes or {}
    action = event.action
    if action == "created":
        return _("event.created")
    if action == "status_changed":
        status = _new_value(changes, "status")
        outside_body = _new_value(changes, "outside_body")
        if status == "redirected" and outside_body:
            return _("event.redirected", outside_body=outside_body)
        return _("event.status_changed", status=status_label(str(status), language))
    if action == "redirected":
        outside_body = _new_value(changes, "outside_body")
        return (
            _("event.redirected", outside_body=outside_body) if outside_body else _("event.other")
        )
    if action in ("assigned", "routed"):
        code = _new_value(changes, "team")
        if not code:
            return _("event.assigned_none")
        team = commune.team(str(code))
        return _("event.assigned", team=team.name if team else code)
    if action == "due_date_set":
        due = _new_value(changes, "due_at")
        if not due:
            return _("event.due_date_cleared")
        try:
            moment = datetime.fromisoformat(str(due)).astimezone(zone)
        except ValueError:
            return _("event.other")
        return _("event.due_date_set", date=format_datetime(language, moment))
    if action == "priority_changed":
        return _("event.priority_changed")
    if action == "commented":
        return _("event.commented")
    if action == "report_attached":
        return _("event.report_attached")
    if action == "linked":
        original = _new_value(changes, "duplicate_of")
        if original:
            return _("event.duplicate_of", reference=original)
        return _("event.duplicates")
    return _("event.other")


def status_label(status: str, language: str) -> str:
    key = f"status.{status}"
    catalogue = translator(language)
    try:
        return catalogue(key)
    except KeyError:
        return status


def public_ticket(
    ticket: Ticket, events: list[TicketEvent], commune: Commune, language: str
) -> PublicTicket:
    """``events`` must already be the public ones (``history_of(..., public_only=True)``)."""
    zone = ZoneInfo(commune.business_hours.timezone)
    category = commune.category(ticket.category)
    timeline = []
    for event in events:
        if not event.public:  # belt and braces: the caller asked for public events only
            continue
        at = event.at.astimezone(zone)
        timeline.append(
            TimelineEntry(
                at=at,
                at_text=format_datetime(language, at),
                text=describe_event(event, commune, language, zone),
                # Automatic routing explains itself to staff ("category voirie"), not to residents.
                comment=None if event.action == "routed" else event.comment,
            )
        )
    return PublicTicket(
        reference=ticket.reference,
        commune=commune.name,
        category=category.in_language(language).name if category else ticket.category,
        status=ticket.status,
        status_label=status_label(ticket.status, language),
        received=format_datetime(language, ticket.created_at.astimezone(zone)),
        updated=format_datetime(language, ticket.updated_at.astimezone(zone)),
        due=format_datetime(language, ticket.due_at.astimezone(zone)) if ticket.due_at else None,
        duplicate_of=ticket.duplicate_of.reference if ticket.duplicate_of else None,
        timeline=timeline,
    )
