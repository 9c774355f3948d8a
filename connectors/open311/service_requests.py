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


# The columns of a ticket a public request shows, in the order RequestEntries
# reads them (connectors.open311.queries selects them so). ``updated`` is the
# spec's updated_datetime: for a closed request, when it was closed.
REQUEST_FIELDS = (
    "id", "reference", "status", "category", "channel", "description", "team",
    "outside_body", "address", "latitude", "longitude", "created_at", "updated", "due_at",
)  # fmt: skip


class RequestEntries:
    """``service_requests/request`` entries of one jurisdiction in one language.

    A listing shows up to 1,000 requests: what is the same for all of them
    (time zone, names of services and teams, texts) is worked out once, here.
    """

    def __init__(self, jurisdiction: Jurisdiction, language: str) -> None:
        self.jurisdiction = jurisdiction
        self.language = language
        self.zone = zone_of(jurisdiction)
        settings = jurisdiction.settings
        self.private_channels = frozenset(settings.private_description_channels)
        hours = settings.expected_response_hours
        self.expected_after = timedelta(hours=hours) if hours else None
        self._services: dict[str, tuple[str, str | None]] = {}  # name, notice
        self._team_names: dict[str, str | None] = {}
        self._status_labels: dict[str, str] = {}

    def _service(self, code: str) -> tuple[str, str | None]:
        """The service's name, and its notice unless the ticket went to an outside body."""
        found = self._services.get(code)
        if found is None:
            category = self.jurisdiction.commune.category(code)
            notice = service_notice(code, None, self.jurisdiction, self.language)
            found = self._services[code] = (category.name if category else code, notice)
        return found

    def _team_name(self, code: str) -> str | None:
        if code not in self._team_names:
            team = self.jurisdiction.commune.team(code)
            self._team_names[code] = team.name if team else None
        return self._team_names[code]

    def _status_label(self, status: str) -> str:
        label = self._status_labels.get(status)
        if label is None:
            label = self._status_labels[status] = text(self.language, status)
        return label

    def entry(
        self, row: tuple[Any, ...], status_comment: str | None = None, media_url: str | None = None
    ) -> dict[str, Any]:
        """One request, from a row of :data:`REQUEST_FIELDS`: every field of the spec,
        in its order."""
        (_id, reference, status, category, channel, description, team, outside_body, address,
         latitude, longitude, created_at, updated, due_at) = row  # fmt: skip
        zone = self.zone
        service_name, notice = self._service(category)
        if outside_body:
            agency = outside_body
            notice = service_notice(category, outside_body, self.jurisdiction, self.language)
        else:
            agency = self._team_name(team) if team else None
        if due_at is None and self.expected_after is not None:
            due_at = created_at + self.expected_after
        return {
            "service_request_id": reference,
            "status": "open" if status in OPEN_VALUES else "closed",
            "status_notes": f"{status}: {status_comment or self._status_label(status)}",
            "service_name": service_name,
            "service_code": category,
            "description": None if channel in self.private_channels else description,
            "agency_responsible": agency,
            "service_notice": notice,
            "requested_datetime": created_at.astimezone(zone).isoformat(timespec="seconds"),
            "updated_datetime": updated.astimezone(zone).isoformat(timespec="seconds"),
            "expected_datetime": (
                None if due_at is None else due_at.astimezone(zone).isoformat(timespec="seconds")
            ),
            "address": address,
            "address_id": None,
            "zipcode": None,
            "lat": latitude,
            "long": longitude,
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
