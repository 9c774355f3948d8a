"""What a batch keeps besides signals: dead letters, unknown devices, ignored
messages, and the connectors' state of each device. Written once per batch."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Text, case, cast, func, select, text
from sqlalchemy.orm import Session

from core.db.lists import among, array_literal
from core.db.sensor_models import DeadLetter, Device, IgnoredMessageCount, UnregisteredDevice
from core.db.types import utcnow
from core.signals import Uplink

PAYLOAD_EXCERPT = 1000  # characters of an unknown device's last message kept
_CHUNK = 500


def dead_letter(
    topic: str,
    payload: bytes,
    received_at: datetime,
    stage: str,
    reason: str,
    device_id: str | None = None,
) -> DeadLetter:
    payload = bytes(payload)
    return DeadLetter(
        topic=topic,
        payload=payload,
        received_at=received_at,
        stage=stage,
        reason=reason,
        device_id=device_id,
        created_at=utcnow(),
        digest=letter_digest(topic, payload),
        repeats=0,
    )


def letter_digest(topic: str, payload: bytes) -> str:
    """What makes two dead letters the same message: its topic and its bytes."""
    return hashlib.sha256(topic.encode("utf-8", "surrogatepass") + b"\0" + payload).hexdigest()


def store_dead_letters(session: Session, letters: list[DeadLetter]) -> None:
    """Add ``letters``; the same message already stored (or twice in the list)
    counts a repeat on the first one instead of a row (one query a batch)."""
    if not letters:
        return
    by_digest: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        by_digest.setdefault(letter.digest, []).append(letter)
    stored: dict[str, DeadLetter] = {}
    digests = sorted(by_digest)
    for start in range(0, len(digests), _CHUNK):
        query = (
            select(DeadLetter)
            .where(among(session, DeadLetter.digest, digests[start : start + _CHUNK]))
            .order_by(DeadLetter.id)
        )
        for earlier in session.scalars(query):
            stored.setdefault(earlier.digest, earlier)
    for digest, group in by_digest.items():
        first = stored.get(digest)
        if first is None:
            first, group = group[0], group[1:]
            session.add(first)
        if group:
            first.repeats = (first.repeats or 0) + len(group)
            latest = max(letter.received_at for letter in group)
            if first.last_received_at is None or latest > first.last_received_at:
                first.last_received_at = latest


def _upsert(session: Session):
    """The dialect's INSERT ... ON CONFLICT, or None where there is none."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - Vigie runs on SQLite and PostgreSQL
        return None
    return insert


def _later(excluded: Any, current: Any) -> Any:
    return case((excluded > current, excluded), else_=current)


@dataclass
class _Unknown:
    device_id: str
    dev_eui: str | None
    network: str
    topic: str
    first_seen_at: datetime
    last_seen_at: datetime
    message_count: int
    last_payload: str


class UnregisteredTally:
    """Messages from devices the registry does not know, summed per device."""

    def __init__(self) -> None:
        self.devices: dict[str, _Unknown] = {}

    def note(self, uplink: Uplink, payload: bytes, received_at: datetime) -> None:
        device_id = uplink.device_id or f"eui:{uplink.dev_eui}"
        excerpt = payload[: PAYLOAD_EXCERPT * 4].decode("utf-8", "replace")[:PAYLOAD_EXCERPT]
        seen = self.devices.get(device_id)
        if seen is None:
            self.devices[device_id] = _Unknown(
                device_id, uplink.dev_eui, uplink.network, uplink.topic,
                received_at, received_at, 1, excerpt,
            )  # fmt: skip
            return
        seen.message_count += 1
        seen.dev_eui = uplink.dev_eui or seen.dev_eui
        seen.first_seen_at = min(seen.first_seen_at, received_at)
        if received_at >= seen.last_seen_at:
            seen.last_seen_at, seen.topic, seen.last_payload = received_at, uplink.topic, excerpt
            seen.network = uplink.network

    def write(self, session: Session) -> None:
        if not self.devices:
            return
        rows = [vars(seen).copy() for seen in self.devices.values()]
        table = UnregisteredDevice.__table__
        insert = _upsert(session)
        if insert is None:  # pragma: no cover
            _write_unknown_portably(session, rows)
            return
        statement = insert(table)
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.device_id],
            set_={
                "message_count": table.c.message_count + excluded.message_count,
                "dev_eui": func.coalesce(excluded.dev_eui, table.c.dev_eui),
                "network": excluded.network,
                "topic": excluded.topic,
                "last_payload": excluded.last_payload,
                "last_seen_at": _later(excluded.last_seen_at, table.c.last_seen_at),
            },
        )
        session.execute(statement, sorted(rows, key=lambda row: row["device_id"]))


def _write_unknown_portably(
    session: Session, rows: list[dict[str, Any]]
) -> None:  # pragma: no cover
    for row in rows:
        found = session.scalar(
            select(UnregisteredDevice).where(UnregisteredDevice.device_id == row["device_id"])
        )
        if found is None:
            session.add(UnregisteredDevice(**row))
            continue
        found.message_count += row["message_count"]
        found.last_seen_at = max(found.last_seen_at, row["last_seen_at"])
        found.topic, found.last_payload = row["topic"], row["last_payload"]


class IgnoredTally:
    """Messages of devices whose commune does not enable their connector, per both."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], list[Any]] = {}

    def note(self, commune: str, connector: str, device_id: str, received_at: datetime) -> None:
        entry = self.counts.setdefault((commune, connector), [0, device_id, received_at])
        entry[0] += 1
        if received_at >= entry[2]:
            entry[1], entry[2] = device_id, received_at

    def write(self, session: Session) -> None:
        if not self.counts:
            return
        rows = [
            {
                "commune": commune,
                "connector": connector,
                "message_count": count,
                "last_device_id": device_id,
                "last_seen_at": at,
            }
            for (commune, connector), (count, device_id, at) in sorted(self.counts.items())
        ]
        table = IgnoredMessageCount.__table__
        insert = _upsert(session)
        if insert is None:  # pragma: no cover
            for row in rows:
                found = session.get(IgnoredMessageCount, (row["commune"], row["connector"]))
                if found is None:
                    session.add(IgnoredMessageCount(**row))
                else:
                    found.message_count += row["message_count"]
                    found.last_device_id, found.last_seen_at = (
                        row["last_device_id"],
                        row["last_seen_at"],
                    )
            return
        statement = insert(table)
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.commune, table.c.connector],
            set_={
                "message_count": table.c.message_count + excluded.message_count,
                "last_device_id": excluded.last_device_id,
                "last_seen_at": _later(excluded.last_seen_at, table.c.last_seen_at),
            },
        )
        session.execute(statement, rows)


@dataclass
class DeviceState:
    """A device's connector state and last-heard time, loaded once per batch."""

    pk: int
    state: dict[str, Any]
    last_seen_at: datetime | None
    touched: bool = False
    # The state as stored (JSON text): an unchanged state is not written back.
    stored: str | None = None

    def heard(self, at: datetime) -> None:
        self.touched = True
        if self.last_seen_at is None or at > self.last_seen_at:
            self.last_seen_at = at

    def decode(self) -> None:
        """``state`` from the stored JSON (anything but an object: empty)."""
        state = json.loads(self.stored) if self.stored else None
        if isinstance(state, dict):
            self.state = state
        else:
            self.state, self.stored = {}, None

    def take_over(self, worked: DeviceState) -> None:
        """Keep what ``worked`` (a copy read earlier, with the same stored state)
        made of the state, and the later of the two last-heard times."""
        self.state = worked.state
        if worked.touched:
            self.heard(worked.last_seen_at)


def load_states(
    session: Session, pks: Iterable[int], lock: bool = True, decode: bool = True
) -> dict[int, DeviceState]:
    """The state of each device; with ``lock``, locked until commit on
    PostgreSQL (two ingest processes then never interleave their updates of
    one device's state). Without ``decode``, only the stored JSON text is
    read (``state`` is empty until :meth:`DeviceState.decode`)."""
    table = Device.__table__
    ids = sorted(set(pks))
    states: dict[int, DeviceState] = {}
    lock = lock and session.get_bind().dialect.name == "postgresql"
    for start in range(0, len(ids), _CHUNK):
        query = (
            # The JSON as text, decoded here: kept to tell a changed state.
            select(table.c.id, cast(table.c.state, Text), table.c.last_seen_at)
            .where(among(session, table.c.id, ids[start : start + _CHUNK]))
            .order_by(table.c.id)
        )
        if lock:
            query = query.with_for_update()
        for pk, stored, last_seen_at in session.execute(query):
            device = DeviceState(pk, {}, last_seen_at, stored=stored)
            if decode:
                device.decode()
            states[pk] = device
    return states


_UNNEST_UPDATE = text(
    "UPDATE devices SET state = coalesce(given.state, devices.state), last_seen_at = given.seen"
    " FROM (SELECT unnest(CAST(:ids AS integer[])) AS id,"
    " unnest(CAST(:states AS json[])) AS state,"
    " unnest(CAST(:seen AS timestamptz[])) AS seen) AS given"
    " WHERE devices.id = given.id"
)
_SQLITE_STATE_UPDATE = "UPDATE devices SET state = ?, last_seen_at = ? WHERE id = ?"
_SQLITE_SEEN_UPDATE = "UPDATE devices SET last_seen_at = ? WHERE id = ?"


def write_states(session: Session, states: Iterable[DeviceState]) -> None:
    """The touched devices' last-heard time, and their state where it changed:
    one statement on PostgreSQL (arrays unnested), two executemany elsewhere."""
    touched = [s for s in states if s.touched]
    if not touched:
        return
    changed: dict[int, str] = {}
    for s in touched:
        dumped = json.dumps(s.state)
        if dumped != s.stored:
            changed[s.pk] = dumped
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # Each array as its text form: one string a parameter for psycopg to send.
        connection.execute(
            _UNNEST_UPDATE,
            {
                "ids": array_literal([s.pk for s in touched]),
                "states": array_literal([changed.get(s.pk) for s in touched]),
                "seen": array_literal([_pg_time(s.last_seen_at) for s in touched]),
            },
        )
        return
    # SQLite: straight to the driver, with the column type's own conversion of times.
    seen = _sqlite_time(connection.dialect)
    with_state = [(changed[s.pk], seen(s.last_seen_at), s.pk) for s in touched if s.pk in changed]
    only_seen = [(seen(s.last_seen_at), s.pk) for s in touched if s.pk not in changed]
    if with_state:
        connection.exec_driver_sql(_SQLITE_STATE_UPDATE, with_state)
    if only_seen:
        connection.exec_driver_sql(_SQLITE_SEEN_UPDATE, only_seen)


def _pg_time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _sqlite_time(dialect):
    column_type = Device.__table__.c.last_seen_at.type
    convert = column_type.dialect_impl(dialect).bind_processor(dialect)
    return lambda value: convert(value) if convert else value
