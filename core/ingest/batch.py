"""The two shapes the transport and the pipeline exchange."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class RawMessage:
    """One MQTT message as the broker delivered it."""

    topic: str
    payload: bytes
    received_at: datetime  # aware, UTC


@dataclass
class BatchOutcome:
    """What a batch did, for the transport's logs and metrics."""

    accepted: int = 0  # messages a connector read
    alerts: int = 0  # alerts stored (raised, repeated or recovered)
    readings: int = 0  # readings handed to telemetry
    dead_letters: int = 0
    unregistered: int = 0  # messages from devices not in the registry
    ignored: int = 0  # messages of devices whose commune does not enable the connector
    duplicates: int = 0  # alerts already stored (a redelivered message)
    tickets_created: list[str] = field(default_factory=list)  # references, incidents included

    def add(self, other: BatchOutcome) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.tickets_created += other.tickets_created


_COUNTS = (
    "accepted",
    "alerts",
    "readings",
    "dead_letters",
    "unregistered",
    "ignored",
    "duplicates",
)
