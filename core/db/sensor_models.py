"""The sensor side of the ticket database: the device registry and what
ingestion keeps besides signals (dead letters, unknown devices, ignored
messages, storm incidents).

Imported at the end of :mod:`core.db.models` so that ``Base.metadata`` is
complete wherever the models are used (Alembic included).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db.models import Base, Ticket
from core.db.types import utcnow


class Device(Base):
    """A registered sensor: where it is, what it watches, and the connector's memory of it."""

    __tablename__ = "devices"
    __table_args__ = (
        Index("ix_devices_commune_kind", "commune", "kind"),
        # Devices near a point, for "already reported" (0004).
        Index("ix_devices_commune_location", "commune", "latitude", "longitude"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The network server's device name (TTN device_id, ChirpStack deviceName...).
    device_id: Mapped[str] = mapped_column(String(200), unique=True)
    # LoRaWAN DevEUI, 16 lowercase hex digits.
    dev_eui: Mapped[str | None] = mapped_column(String(16), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    commune: Mapped[str] = mapped_column(String(64))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(String(300))
    # Cabinet or circuit, parking bay or site, supply point.
    asset: Mapped[str | None] = mapped_column(String(128), index=True)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The connector's state for this device (see SensorConnector.interpret).
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_seen_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeadLetter(Base):
    """A message that could not be read, kept byte for byte with the reason.

    The same bytes on the same topic again (the broker redelivering a batch
    that was not acknowledged, a device resending) are one dead letter with
    ``repeats`` counted, not another row."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(index=True)
    # "envelope" (size, JSON, network fields), "device" (registry), "connector"
    # (the decoded payload), "ticket" (storing what the connector read).
    stage: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    device_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # sha256 of topic and payload (see core.ingest.records.letter_digest).
    digest: Mapped[str | None] = mapped_column(String(64), index=True)
    repeats: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_received_at: Mapped[datetime | None]


class UnregisteredDevice(Base):
    """A device that sends messages but is not in the registry: kept, not a ticket."""

    __tablename__ = "unregistered_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(String(200), unique=True)
    dev_eui: Mapped[str | None] = mapped_column(String(16))
    network: Mapped[str | None] = mapped_column(String(32))
    topic: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(index=True)
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    last_payload: Mapped[str | None] = mapped_column(Text)


class IgnoredMessageCount(Base):
    """Messages from registered devices whose commune does not enable their connector."""

    __tablename__ = "ignored_message_counts"

    commune: Mapped[str] = mapped_column(String(64), primary_key=True)
    connector: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    last_device_id: Mapped[str | None] = mapped_column(String(200))
    last_seen_at: Mapped[datetime | None]


class StormIncident(Base):
    """The incident ticket opened for a storm: one condition on one asset (or area)."""

    __tablename__ = "storm_incidents"
    __table_args__ = (Index("ix_storm_incidents_key", "commune", "condition", "storm_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    commune: Mapped[str] = mapped_column(String(64))
    condition: Mapped[str] = mapped_column(String(64))
    # The asset, or "sector:<tag>" / "zone:<tag>" for devices without one.
    storm_key: Mapped[str] = mapped_column(String(200))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    device_kind: Mapped[str | None] = mapped_column(String(32))
    # The condition's ticket title, repeated in the description as the storm grows.
    title: Mapped[str | None] = mapped_column(String(300))
    device_count: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)

    # Never loaded; declared so that a flush writes the incident's ticket first.
    ticket: Mapped[Ticket] = relationship(lazy="raise_on_sql")
