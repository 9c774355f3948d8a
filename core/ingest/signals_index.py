"""The devices' unrecovered alert signals, loaded once per batch.

Every rule of the alert desk starts from "what does this device already have
open for this condition": a repeat adds an occurrence, a recovery closes it.
One query per batch answers it for every device of the batch; signals stored
during the batch are added as they are made.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, lazyload

from core.config import Commune
from core.db.lists import among
from core.db.models import SignalRecord, Ticket
from core.db.types import utcnow
from core.signals import Alert
from core.workflow import OPEN_STATUSES

OPEN = frozenset(status.value for status in OPEN_STATUSES)
_CHUNK = 500


def alert_record(alert: Alert, commune: Commune) -> SignalRecord:
    """A stored alert signal, as core.intake stores one."""
    location = alert.location
    return SignalRecord(
        kind="alert",
        commune=commune.slug,
        channel=alert.channel,
        idempotency_key=alert.idempotency_key,
        latitude=location.latitude,
        longitude=location.longitude,
        address=location.address,
        received_at=utcnow(),
        device_id=alert.device_id,
        device_kind=alert.device_kind,
        connector=alert.connector,
        condition=alert.condition,
        severity=alert.severity,
        asset=alert.asset,
        occurrences=1,
        first_seen_at=alert.observed_at,
        last_seen_at=alert.observed_at,
        details=dict(alert.details),
    )


_COLUMNS = tuple(c.key for c in SignalRecord.__table__.columns if c.key != "id")
_DEFAULTS = {"answers": {}, "details": {}, "language": "fr", "occurrences": 1}


def signal_row(record: SignalRecord) -> dict[str, Any]:
    """A transient record as the values of a bulk INSERT (every column given)."""
    row = {key: record.__dict__.get(key) for key in _COLUMNS}
    for key, default in _DEFAULTS.items():
        if row[key] is None:
            row[key] = default
    return row


def existing_keys(session: Session, keys: Iterable[str]) -> set[str]:
    """The idempotency keys already stored, among ``keys``."""
    wanted = sorted(set(keys))
    found: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        part = wanted[start : start + _CHUNK]
        found.update(
            session.scalars(
                select(SignalRecord.idempotency_key).where(
                    among(session, SignalRecord.idempotency_key, part)
                )
            )
        )
    return found


class SignalIndex:
    """Unrecovered alert signals by (device_id, condition), oldest first.

    Tickets are not loaded with them (an incident's would bring thousands of
    signals along): their status comes with the query, and the ticket itself
    is loaded only when a signal joins or recovers.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._signals: dict[tuple[str, str], list[SignalRecord]] = defaultdict(list)
        self._status: dict[int, str] = {}  # ticket id -> status when loaded

    def load(self, device_ids: Iterable[str]) -> None:
        ids = sorted(set(device_ids))
        for start in range(0, len(ids), _CHUNK):
            query = (
                select(SignalRecord, Ticket.status)
                .outerjoin(Ticket, Ticket.id == SignalRecord.ticket_id)
                .where(
                    SignalRecord.kind == "alert",
                    among(self.session, SignalRecord.device_id, ids[start : start + _CHUNK]),
                    SignalRecord.recovered_at.is_(None),
                )
                .options(lazyload(SignalRecord.ticket))
                .order_by(SignalRecord.id)
            )
            for record, status in self.session.execute(query):
                self._signals[(record.device_id, record.condition)].append(record)
                if record.ticket_id is not None:
                    self._status[record.ticket_id] = status

    def ticket_ids(self) -> set[int]:
        """The tickets of the loaded signals."""
        return set(self._status)

    def add(self, record: SignalRecord) -> None:
        self._signals[(record.device_id, record.condition)].append(record)

    def note_status(self, ticket_id: int, status: str) -> None:
        self._status[ticket_id] = status

    def _ticket_status(self, record: SignalRecord) -> str | None:
        # A ticket loaded or set during the batch knows its current status.
        ticket = record.__dict__.get("ticket")
        if ticket is not None:
            return ticket.status
        if record.ticket_id is None:
            return None
        return self._status.get(record.ticket_id) or record.ticket.status

    def open_for(self, device_id: str, condition: str) -> SignalRecord | None:
        """The newest unrecovered signal that new alerts join: on an open ticket, or
        on none (an alert the commune turns into no ticket still counts repeats)."""
        for record in reversed(self._signals.get((device_id, condition), ())):
            status = self._ticket_status(record)
            if status is None or status in OPEN:
                return record
        return None

    def take_unrecovered(self, device_id: str, condition: str) -> list[SignalRecord]:
        """Every unrecovered signal of the device for the condition, removed from the index."""
        return self._signals.pop((device_id, condition), [])
