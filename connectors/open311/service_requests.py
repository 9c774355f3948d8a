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


def service_notice(ticket_category: str, outside_body: str | None, jurisdiction: Jurisdiction,
                   language: str) -> str | None:
    if outside_body:
        return text(language, "redirected_to", body=outside_body)
    settings = jurisdiction.settings
    return settings.service_notices.get(ticket_category) or settings.service_notice


class RequestEntries:
    """``service_requests/request`` entries of one jurisdiction in one language.

    A listing shows up to 1,000 requests: what is the same for all of them
    (time zone, names of services and teams, texts) is worked out once, here.
    Rows are anything with a ticket's public columns as attributes (see
    :data:`connectors.open311.queries.REQUEST_COLUMNS`): ``reference``,
    ``status``, ``category``, ``channel``, ``description``, ``team``,
    ``outside_body``, ``address``, ``latitude``, ``longitude``,
    ``created_at``, ``updated`` (for a closed request, when it was closed) and
    ``due_at``.
    """

    def __init__(self, jurisdiction: Jurisdiction, language: str) -> None:
        self.jurisdiction = jurisdiction
        self.language = language
        self.zone = zone_of(jurisdiction)
        settings = jurisdiction.settings
        self.private_channels = frozenset(settings.private_description_channels)
        hours = settings.expected_response_hours
        self.expected_after = timedelta(hours=hours) if hours else None
        self._service_names: dict[str, str] = {}
        self._team_names: dict[str, str | None] = {}
        self._status_labels: dict[str, str] = {}

    def _service_name(self, code: str) -> str:
        name = self._service_names.get(code)
        if name is None:
            category = self.jurisdiction.commune.category(code)
            name = self._service_names[code] = category.name if category else code
        return name

    def _agency(self, outside_body: str | None, team_code: str | None) -> str | None:
        if outside_body:
            return outside_body
        if not team_code:
            return None
        if team_code not in self._team_names:
            team = self.jurisdiction.commune.team(team_code)
            self._team_names[team_code] = team.name if team else None
        return self._team_names[team_code]

    def _status_label(self, status: str) -> str:
        label = self._status_labels.get(status)
        if label is None:
            label = self._status_labels[status] = text(self.language, status)
        return label

    def entry(
        self, row: Any, status_comment: str | None = None, media_url: str | None = None
    ) -> dict[str, Any]:
        """One request: every field of the spec, in its order."""
        zone = self.zone
        status = row.status
        due_at = row.due_at
        if due_at is None and self.expected_after is not None:
            due_at = row.created_at + self.expected_after
        return {
            "service_request_id": row.reference,
            "status": "open" if status in OPEN_VALUES else "closed",
            "status_notes": f"{status}: {status_comment or self._status_label(status)}",
            "service_name": self._service_name(row.category),
            "service_code": row.category,
            "description": None if row.channel in self.private_channels else row.description,
            "agency_responsible": self._agency(row.outside_body, row.team),
            "service_notice": service_notice(
                row.category, row.outside_body, self.jurisdiction, self.language
            ),
            "requested_datetime": row.created_at.astimezone(zone).isoformat(timespec="seconds"),
            "updated_datetime": row.updated.astimezone(zone).isoformat(timespec="seconds"),
            "expected_datetime": w3(due_at, zone),
            "address": row.address,
            "address_id": None,
            "zipcode": None,
            "lat": row.latitude,
            "long": row.longitude,
            "media_url": media_url,
        }


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
