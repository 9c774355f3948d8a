"""The ticket database: tickets, the signals they hold, their history, tokens, outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core.db.types import UTCDateTime, utcnow
from core.signals import Location
from core.snapshots import HistoryEvent, ReporterContact, TicketSnapshot


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Ticket(Base):
    """The city's unit of work. Holds one or more signals about the same problem."""

    __tablename__ = "tickets"
    __table_args__ = (
        UniqueConstraint("commune", "year", "number", name="uq_ticket_number"),
        Index("ix_tickets_commune_status", "commune", "status"),
        Index("ix_tickets_location", "latitude", "longitude"),
        # A commune's tickets newest first, filtered by a window and a bbox (0004).
        Index("ix_tickets_commune_created", "commune", "created_at", "latitude", "longitude"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    commune: Mapped[str] = mapped_column(String(64))
    year: Mapped[int] = mapped_column(Integer)
    number: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(64), index=True)
    description: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    priority: Mapped[str] = mapped_column(String(16))
    team: Mapped[str | None] = mapped_column(String(64), index=True)
    outside_body: Mapped[str | None] = mapped_column(String(200))
    due_at: Mapped[datetime | None]
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(String(300))
    asset: Mapped[str | None] = mapped_column(String(128), index=True)
    answers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    is_incident: Mapped[bool] = mapped_column(Boolean, default=False)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]

    signals: Mapped[list[SignalRecord]] = relationship(
        back_populates="ticket", order_by="SignalRecord.id", lazy="selectin"
    )
    events: Mapped[list[TicketEvent]] = relationship(
        back_populates="ticket", order_by="TicketEvent.id", lazy="raise_on_sql"
    )
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="ticket", order_by="Attachment.id", lazy="selectin"
    )
    duplicate_of: Mapped[Ticket | None] = relationship(
        foreign_keys=[duplicate_of_id], remote_side=[id], lazy="selectin"
    )
    incident: Mapped[Ticket | None] = relationship(
        foreign_keys=[incident_id], remote_side=[id], lazy="selectin"
    )

    @property
    def location(self) -> Location:
        return Location(self.latitude, self.longitude, self.address)

    @property
    def reports(self) -> list[SignalRecord]:
        return [s for s in self.signals if s.kind == "report"]

    @property
    def alerts(self) -> list[SignalRecord]:
        return [s for s in self.signals if s.kind == "alert"]

    @property
    def device_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.device_id for s in self.alerts if s.device_id))

    @property
    def occurrences(self) -> int:
        return sum(s.occurrences for s in self.alerts)

    def snapshot(self) -> TicketSnapshot:
        return TicketSnapshot(
            id=self.id,
            reference=self.reference,
            commune=self.commune,
            category=self.category,
            description=self.description,
            channel=self.channel,
            status=self.status,
            priority=self.priority,
            location=self.location,
            created_at=self.created_at,
            updated_at=self.updated_at,
            team=self.team,
            outside_body=self.outside_body,
            due_at=self.due_at,
            asset=self.asset,
            answers=dict(self.answers or {}),
            device_ids=self.device_ids,
            duplicate_of=self.duplicate_of.reference if self.duplicate_of else None,
            incident_of=self.incident.reference if self.incident else None,
            reporters=tuple(
                ReporterContact(
                    s.reporter_name, s.reporter_email, s.reporter_phone, s.notify_by, s.language
                )
                for s in self.reports
                if s.reporter_email or s.reporter_phone or s.reporter_name
            ),
        )


class SignalRecord(Base):
    """A stored signal: a resident's report or a device's alert (with its repeats)."""

    __tablename__ = "signals"
    __table_args__ = (Index("ix_signals_device_condition", "device_id", "condition"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "report" | "alert"
    commune: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    category: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    answers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(String(300))
    # Reports: the resident (personal data, staff only).
    reporter_name: Mapped[str | None] = mapped_column(String(200))
    reporter_email: Mapped[str | None] = mapped_column(String(320))
    reporter_phone: Mapped[str | None] = mapped_column(String(40))
    notify_by: Mapped[str | None] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(8), default="fr")
    # Alerts: device, condition and how often it was seen.
    device_id: Mapped[str | None] = mapped_column(String(128))
    device_kind: Mapped[str | None] = mapped_column(String(32))
    connector: Mapped[str | None] = mapped_column(String(64))
    condition: Mapped[str | None] = mapped_column(String(64))
    severity: Mapped[str | None] = mapped_column(String(16))
    asset: Mapped[str | None] = mapped_column(String(128), index=True)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    first_seen_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]
    recovered_at: Mapped[datetime | None]
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    ticket: Mapped[Ticket | None] = relationship(back_populates="signals")

    @property
    def shown_details(self) -> dict[str, Any]:
        """The details, without Vigie's own bookkeeping: keys beginning with "_"
        (the idempotency keys of an alert's latest repeats, see core.ingest.alerts)."""
        return {k: v for k, v in (self.details or {}).items() if not k.startswith("_")}


class TicketEvent(Base):
    """One entry of a ticket's history. Rows are only ever added."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    comment: Mapped[str | None] = mapped_column(Text)
    # Shown on the resident's tracking page (internal notes are not).
    public: Mapped[bool] = mapped_column(Boolean, default=True)

    ticket: Mapped[Ticket] = relationship(back_populates="events")

    def snapshot(self) -> HistoryEvent:
        return HistoryEvent(
            ticket_id=self.ticket_id,
            at=self.at,
            actor=self.actor,
            action=self.action,
            changes=dict(self.changes or {}),
            comment=self.comment,
            public=self.public,
        )


class Attachment(Base):
    """A file attached to a ticket (photo, document); the bytes live under the data dir."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_path: Mapped[str] = mapped_column(String(500))
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))

    ticket: Mapped[Ticket] = relationship(back_populates="attachments")


class ReferenceCounter(Base):
    """The last reference number given, per commune and year."""

    __tablename__ = "reference_counters"

    commune: Mapped[str] = mapped_column(String(64), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer, default=0)


class ApiToken(Base):
    """A bearer token: a role and the communes it may see. Only its hash is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    communes: Mapped[list[Any]] = mapped_column(JSON)  # slugs, or ["*"] for all
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class OutboxMessage(Base):
    """A message to send after commit; retried until delivered or given up."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    commune: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8), default="fr")
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]

    # Never loaded; declared so that a flush writes a new ticket before its messages.
    ticket: Mapped[Ticket | None] = relationship(lazy="raise_on_sql")


# The sensor tables, on the same Base: complete metadata wherever models are imported.
import core.db.sensor_models  # noqa: E402, F401
