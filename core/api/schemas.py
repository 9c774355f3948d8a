"""JSON shapes of the staff API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, model_validator

from core.auth import Actor, Permission
from core.db.models import SignalRecord, Ticket, TicketEvent

PriorityName = Literal["low", "normal", "high", "urgent"]


def _field_error(field: str, reason: str) -> ValidationError:
    """A validation error located at ``field`` (a model validator's own errors have no field)."""
    return ValidationError.from_exception_data(
        "fields",
        [{"type": "value_error", "loc": (field,), "input": None, "ctx": {"error": reason}}],
    )


class ReporterIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str | None = Field(default=None, max_length=200)
    email: EmailStr | None = None
    phone: str | None = Field(default=None, max_length=40, pattern=r"^\+?[0-9 .()-]{6,40}$")
    notify_by: Literal["email", "sms"] | None = None
    language: Literal["fr", "en"] = "fr"

    @model_validator(mode="after")
    def _can_notify(self) -> ReporterIn:
        # Reported on the missing contact, which is what the caller must add.
        if self.notify_by == "email" and not self.email:
            raise _field_error("email", "required to be told by email (notify_by is email)")
        if self.notify_by == "sms" and not self.phone:
            raise _field_error("phone", "required to be told by SMS (notify_by is sms)")
        return self


class TicketIn(BaseModel):
    """A ticket typed in by staff for a caller (phone, counter...) or sent by another system."""

    # Blank text is no text: "   " is neither a description nor an address.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    commune: str
    category: str
    description: str = Field(min_length=3, max_length=5000)
    channel: Literal[
        "phone", "counter", "email", "web", "app", "sms", "mail", "social", "staff"
    ] = "phone"
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    address: str | None = Field(default=None, max_length=300)
    priority: PriorityName | None = None
    reporter: ReporterIn | None = None
    answers: dict[str, Any] = {}

    @model_validator(mode="after")
    def _located(self) -> TicketIn:
        if (self.latitude is None) != (self.longitude is None):
            missing = "longitude" if self.longitude is None else "latitude"
            raise _field_error(missing, "give both latitude and longitude, or neither")
        if self.latitude is None and not self.address:
            raise ValueError("give a location: latitude and longitude, or an address")
        return self


class StatusChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str
    comment: str | None = Field(default=None, max_length=5000)
    outside_body: str | None = Field(default=None, max_length=200)
    public: bool = True


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field(min_length=1, max_length=5000)
    public: bool = False


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    team: str
    comment: str | None = Field(default=None, max_length=5000)


class PriorityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    priority: PriorityName
    comment: str | None = Field(default=None, max_length=5000)


class DuplicateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Ids are integers in every answer: take them as sent, as well as references.
    duplicate_of: int | str = Field(description="id or reference of the original ticket")
    comment: str | None = Field(default=None, max_length=5000)


class LocationOut(BaseModel):
    latitude: float | None
    longitude: float | None
    address: str | None


class ReporterOut(BaseModel):
    name: str | None
    email: str | None
    phone: str | None
    notify_by: str | None


class HistoryEventOut(BaseModel):
    at: datetime
    actor: str
    action: str
    changes: dict[str, Any]
    comment: str | None
    public: bool

    @classmethod
    def of(cls, event: TicketEvent) -> HistoryEventOut:
        return cls(
            at=event.at,
            actor=event.actor,
            action=event.action,
            changes=event.changes or {},
            comment=event.comment,
            public=event.public,
        )


class ReportOut(BaseModel):
    id: int
    channel: str
    received_at: datetime
    description: str | None
    reporter: ReporterOut | None


class AlertOut(BaseModel):
    id: int
    device_id: str | None
    device_kind: str | None
    condition: str | None
    severity: str | None
    asset: str | None
    occurrences: int
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    recovered_at: datetime | None
    details: dict[str, Any]

    @classmethod
    def of(cls, record: SignalRecord) -> AlertOut:
        return cls(
            id=record.id,
            device_id=record.device_id,
            device_kind=record.device_kind,
            condition=record.condition,
            severity=record.severity,
            asset=record.asset,
            occurrences=record.occurrences,
            first_seen_at=record.first_seen_at,
            last_seen_at=record.last_seen_at,
            recovered_at=record.recovered_at,
            details=record.shown_details,
        )


class AttachmentOut(BaseModel):
    id: int
    filename: str
    content_type: str
    size: int
    created_at: datetime


class TicketOut(BaseModel):
    id: int
    reference: str
    commune: str
    category: str
    description: str
    status: str
    channel: str
    priority: str
    created_at: datetime
    updated_at: datetime
    location: LocationOut
    team: str | None
    outside_body: str | None
    due_at: datetime | None
    asset: str | None
    answers: dict[str, Any]
    reporter: ReporterOut | None
    device_ids: list[str]
    occurrences: int
    report_count: int
    duplicate_of: str | None
    incident: str | None
    is_incident: bool

    @classmethod
    def of(cls, ticket: Ticket, actor: Actor) -> TicketOut:
        first_report = ticket.reports[0] if ticket.reports else None
        reporter = None
        if first_report is not None and actor.can(Permission.READ_PERSONAL_DATA):
            reporter = _reporter(first_report)
        return cls(
            id=ticket.id,
            reference=ticket.reference,
            commune=ticket.commune,
            category=ticket.category,
            description=ticket.description,
            status=ticket.status,
            channel=ticket.channel,
            priority=ticket.priority,
            created_at=ticket.created_at,
            updated_at=ticket.updated_at,
            location=LocationOut(
                latitude=ticket.latitude, longitude=ticket.longitude, address=ticket.address
            ),
            team=ticket.team,
            outside_body=ticket.outside_body,
            due_at=ticket.due_at,
            asset=ticket.asset,
            answers=ticket.answers or {},
            reporter=reporter,
            device_ids=list(ticket.device_ids),
            occurrences=ticket.occurrences,
            report_count=len(ticket.reports),
            duplicate_of=ticket.duplicate_of.reference if ticket.duplicate_of else None,
            incident=ticket.incident.reference if ticket.incident else None,
            is_incident=ticket.is_incident,
        )


def _reporter(record: SignalRecord) -> ReporterOut | None:
    if not (record.reporter_name or record.reporter_email or record.reporter_phone):
        return None
    return ReporterOut(
        name=record.reporter_name,
        email=record.reporter_email,
        phone=record.reporter_phone,
        notify_by=record.notify_by,
    )


class TicketDetailOut(TicketOut):
    history: list[HistoryEventOut]
    reports: list[ReportOut]
    attachments: list[AttachmentOut]

    @classmethod
    def with_history(
        cls, ticket: Ticket, events: list[TicketEvent], actor: Actor
    ) -> TicketDetailOut:
        personal = actor.can(Permission.READ_PERSONAL_DATA)
        base = TicketOut.of(ticket, actor).model_dump()
        return cls(
            **base,
            history=[HistoryEventOut.of(e) for e in events],
            reports=[
                ReportOut(
                    id=r.id,
                    channel=r.channel,
                    received_at=r.received_at,
                    description=r.description,
                    reporter=_reporter(r) if personal else None,
                )
                for r in ticket.reports
            ],
            attachments=[
                AttachmentOut(
                    id=a.id,
                    filename=a.filename,
                    content_type=a.content_type,
                    size=a.size,
                    created_at=a.created_at,
                )
                for a in ticket.attachments
            ],
        )


class TicketPage(BaseModel):
    items: list[TicketOut]
    total: int
    page: int
    page_size: int


class QuestionOut(BaseModel):
    code: str
    label: str
    type: str
    required: bool
    choices: list[dict[str, str]]


class CategoryOut(BaseModel):
    code: str
    name: str
    group: str
    description: str | None
    priority: str
    questions: list[QuestionOut]


class TeamOut(BaseModel):
    code: str
    name: str
    hub: str | None


class CommuneOut(BaseModel):
    slug: str
    name: str
    reference_prefix: str
    hub: str | None
    categories: list[CategoryOut]
    teams: list[TeamOut]
    plugins: list[str]
