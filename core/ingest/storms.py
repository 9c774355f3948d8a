"""Storms: many devices behind one asset raising the same condition at once.

A tripped lighting circuit darkens every lamp behind it; a burst main
empties every meter on it. Instead of one ticket per device, Vigie opens one
*incident* ticket for (commune, condition, asset) once ``storm_threshold``
distinct devices raised the condition within ``storm_window_seconds``, moves
their open alerts onto it, closes their own tickets as duplicates of it, and
attaches every later alert of the storm to it while it is open.

The asset is the alert's (a cabinet/circuit, a supply point, a parking
site); a device without one is grouped by its ``sector`` or ``zone`` tag.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import distinct, func, select, text
from sqlalchemy.orm import Session, lazyload

from core import events, history, ticket_actions
from core.config import Commune
from core.config.models import PRIORITIES
from core.db.models import SignalRecord, Ticket
from core.db.sensor_models import StormIncident
from core.db.types import utcnow
from core.intake import open_ticket
from core.runtime import Runtime
from core.signals import Alert, DeviceInfo, Location, TicketDraft
from core.workflow import OPEN_STATUSES

log = logging.getLogger(__name__)

STORM_ACTOR = "system:storm-detection"
AREA_TAGS = ("sector", "zone")
_OPEN = [status.value for status in OPEN_STATUSES]
# What the incident's description calls the devices of a kind (singular, plural).
DEVICE_NOUNS = {
    "streetlight": ("lampadaire", "lampadaires"),
    "water_meter": ("compteur d'eau", "compteurs d'eau"),
    "parking_spot": ("place de stationnement", "places de stationnement"),
}


def storm_key(alert: Alert, device: DeviceInfo | None) -> str | None:
    """What groups this alert with others in a storm: its asset, else an area tag."""
    if alert.asset:
        return alert.asset
    tags = device.tags if device else {}
    for tag in AREA_TAGS:
        if tags.get(tag):
            return f"{tag}:{tags[tag]}"
    return None


def is_area_key(key: str) -> bool:
    return key.split(":", 1)[0] in AREA_TAGS and ":" in key


def bumped(priority: str) -> str:
    """One priority level up (urgent stays urgent)."""
    if priority not in PRIORITIES:
        return "high"
    return PRIORITIES[min(PRIORITIES.index(priority) + 1, len(PRIORITIES) - 1)]


def describe_storm(key: str, devices: int, kind: str | None, title: str | None) -> str:
    singular, plural = DEVICE_NOUNS.get(kind or "", ("capteur", "capteurs"))
    where = key.replace(":", " ", 1) if is_area_key(key) else key
    noun = singular if devices == 1 else plural
    what = f" ({title})" if title else ""
    return f"Panne sur {where} : {devices} {noun}{what}."


@dataclass
class Incident:
    storm: StormIncident
    ticket: Ticket
    commune: Commune
    created: bool = False


class StormWatch:
    """Per batch: the storms' open incidents and who raised what recently."""

    def __init__(self, runtime: Runtime, session: Session) -> None:
        self.runtime = runtime
        self.session = session
        settings = runtime.settings.ingest
        self.threshold = settings.storm_threshold
        self.window = timedelta(seconds=settings.storm_window_seconds)
        self._incidents: dict[tuple[str, str, str], Incident | None] = {}
        self._recent: dict[tuple[str, str, str], dict[str, datetime]] = {}
        self.touched: dict[int, Incident] = {}

    # --- Lookups -------------------------------------------------------------

    def prepare(self, candidates: list[tuple[Commune, Alert, str]]) -> None:
        """Load, in a few queries, the open incidents and recent raises of every
        storm the batch's new alerts may belong to (lookups then need none)."""
        if not candidates:
            return
        communes = {commune.slug: commune for commune, _, _ in candidates}
        triples = {(commune.slug, alert.condition, key) for commune, alert, key in candidates}
        conditions = sorted({condition for _, condition, _ in triples})
        keys = sorted({key for _, _, key in triples})
        rows = self.session.execute(
            select(StormIncident, Ticket)
            .join(Ticket, Ticket.id == StormIncident.ticket_id)
            .options(lazyload(Ticket.signals))
            .where(
                StormIncident.commune.in_(sorted(communes)),
                StormIncident.condition.in_(conditions),
                StormIncident.storm_key.in_(keys),
                Ticket.status.in_(_OPEN),
            )
            .order_by(StormIncident.id)
        ).all()
        for triple in triples:
            self._incidents.setdefault(triple, None)
        for storm, ticket in rows:
            triple = (storm.commune, storm.condition, storm.storm_key)
            if triple in triples:
                self._incidents[triple] = Incident(storm, ticket, communes[storm.commune])
        since = min(alert.observed_at for _, alert, _ in candidates) - self.window
        wanted = [t for t in triples if self._incidents.get(t) is None and t not in self._recent]
        for triple in wanted:
            self._recent[triple] = {}
        asset_keys = sorted({key for _, _, key in wanted if not is_area_key(key)})
        query = select(
            SignalRecord.device_id,
            SignalRecord.last_seen_at,
            SignalRecord.commune,
            SignalRecord.condition,
            SignalRecord.asset,
            SignalRecord.details,
        ).where(
            SignalRecord.kind == "alert",
            SignalRecord.commune.in_(sorted(communes)),
            SignalRecord.condition.in_(conditions),
            SignalRecord.recovered_at.is_(None),
            SignalRecord.last_seen_at >= since,
        )
        found = []
        if asset_keys:
            found += self.session.execute(query.where(SignalRecord.asset.in_(asset_keys))).all()
        if len(asset_keys) < len({key for _, _, key in wanted}):
            found += self.session.execute(query.where(SignalRecord.asset.is_(None))).all()
        for device_id, last_seen_at, commune, condition, asset, details in found:
            key = asset if asset is not None else (details or {}).get("storm_key")
            recent = self._recent.get((commune, condition, key))
            if recent is None or not device_id:
                continue
            if device_id not in recent or last_seen_at > recent[device_id]:
                recent[device_id] = last_seen_at

    def incident(self, commune: Commune, condition: str, key: str) -> Incident | None:
        """The open incident for this storm, if any."""
        ident = (commune.slug, condition, key)
        if ident not in self._incidents:
            row = self.session.execute(
                select(StormIncident, Ticket)
                .join(Ticket, Ticket.id == StormIncident.ticket_id)
                .options(lazyload(Ticket.signals))
                .where(
                    StormIncident.commune == commune.slug,
                    StormIncident.condition == condition,
                    StormIncident.storm_key == key,
                    Ticket.status.in_(_OPEN),
                )
                .order_by(StormIncident.id.desc())
                .limit(1)
            ).first()
            self._incidents[ident] = Incident(row[0], row[1], commune) if row is not None else None
        return self._incidents[ident]

    def count(self, commune: Commune, alert: Alert, key: str) -> int:
        """Distinct devices that raised ``alert.condition`` on ``key`` within the
        window ending at this alert, this one included."""
        ident = (commune.slug, alert.condition, key)
        recent = self._recent.get(ident)
        if recent is None:
            recent = self._recent[ident] = self._load_recent(commune, alert, key)
        previous = recent.get(alert.device_id)
        if previous is None or alert.observed_at > previous:
            recent[alert.device_id] = alert.observed_at
        since = alert.observed_at - self.window
        return sum(1 for at in recent.values() if at >= since)

    def _load_recent(self, commune: Commune, alert: Alert, key: str) -> dict[str, datetime]:
        since = alert.observed_at - self.window
        query = select(
            SignalRecord.device_id, SignalRecord.last_seen_at, SignalRecord.details
        ).where(
            SignalRecord.kind == "alert",
            SignalRecord.commune == commune.slug,
            SignalRecord.condition == alert.condition,
            SignalRecord.recovered_at.is_(None),
            SignalRecord.last_seen_at >= since,
        )
        if is_area_key(key):
            query = query.where(SignalRecord.asset.is_(None))
        else:
            query = query.where(SignalRecord.asset == key)
        recent: dict[str, datetime] = {}
        for device_id, last_seen_at, details in self.session.execute(query):
            if is_area_key(key) and (details or {}).get("storm_key") != key:
                continue
            if device_id and (device_id not in recent or last_seen_at > recent[device_id]):
                recent[device_id] = last_seen_at
        return recent

    def recent_devices(self, commune: Commune, alert: Alert, key: str) -> list[str]:
        since = alert.observed_at - self.window
        recent = self._recent.get((commune.slug, alert.condition, key), {})
        return sorted(device for device, at in recent.items() if at >= since)

    # --- Opening an incident -----------------------------------------------------

    def opened_elsewhere(self, commune: Commune, alert: Alert, key: str) -> Incident | None:
        """Before opening this storm's incident: the one another ingest process
        opened meanwhile (then the storm's open alerts of this batch join it),
        or None, this process now being the only one that may open it.

        Two pipeline processes (core.ingest.pipeline_pool) or two ``vigie
        ingest`` each see part of a storm, and would each open an incident. On
        PostgreSQL this takes a transaction-level advisory lock on the storm,
        then looks again for an incident: committed by the process that held
        the lock before, it is visible now. On SQLite nothing is needed: a
        writer holds the database's only write lock from BEGIN, and this
        transaction's reads already saw every committed incident.
        """
        if self.session.get_bind().dialect.name != "postgresql":
            return None
        ident = (commune.slug, alert.condition, key)
        self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:storm))"),
            {"storm": "vigie-storm:" + "\x1f".join(ident)},
        )
        self._incidents.pop(ident, None)
        incident = self.incident(commune, alert.condition, key)
        if incident is not None:
            self._gather(incident, alert.condition, self.recent_devices(commune, alert, key))
            self.touched[incident.ticket.id] = incident
        return incident

    def open(self, commune: Commune, alert: Alert, key: str) -> Incident | None:
        """Open the incident for this storm and gather the storm's open alerts
        onto it; None when the commune turns this alert into no ticket."""
        draft, drafted_by = self.runtime.pm.call_first(
            "draft_ticket", signal=alert, commune=commune, settings=self.runtime.settings
        )
        if not isinstance(draft, TicketDraft):
            return None
        devices = self.recent_devices(commune, alert, key)
        incident_draft = replace(
            draft,
            priority=bumped(draft.priority),
            description=describe_storm(key, len(devices), alert.device_kind, draft.title),
            # The incident is about the asset, not about the lamp that tipped the count.
            location=Location(alert.location.latitude, alert.location.longitude),
            asset=None if is_area_key(key) else key,
            answers={},
        )
        ticket = open_ticket(
            self.runtime, self.session, incident_draft, commune, STORM_ACTOR, drafted_by=drafted_by
        )
        ticket.is_incident = True
        storm = StormIncident(
            commune=commune.slug,
            condition=alert.condition,
            storm_key=key,
            ticket_id=ticket.id,
            device_kind=alert.device_kind,
            title=draft.title,
            device_count=0,
            opened_at=utcnow(),
        )
        self.session.add(storm)
        incident = Incident(storm, ticket, commune, created=True)
        self._gather(incident, alert.condition, devices)
        self._incidents[(commune.slug, alert.condition, key)] = incident
        self.touched[ticket.id] = incident
        return incident

    def _gather(self, incident: Incident, condition: str, devices: list[str]) -> None:
        """Move the storm's devices' open alerts onto the incident; their own
        tickets become duplicates of it."""
        ticket = incident.ticket
        moved_from: dict[int, Ticket] = {}
        for start in range(0, len(devices), 500):
            records = self.session.scalars(
                select(SignalRecord)
                .join(Ticket, Ticket.id == SignalRecord.ticket_id)
                .where(
                    SignalRecord.kind == "alert",
                    SignalRecord.device_id.in_(devices[start : start + 500]),
                    SignalRecord.condition == condition,
                    SignalRecord.recovered_at.is_(None),
                    Ticket.commune == ticket.commune,
                    Ticket.status.in_(_OPEN),
                    Ticket.is_incident.is_(False),
                )
            ).all()
            for record in records:
                old = record.ticket
                record.ticket = ticket
                moved_from[old.id] = old
        comment = f"Fait partie de l'incident {ticket.reference}."
        self.session.flush()
        still_active = set()
        if moved_from:
            still_active = set(
                self.session.scalars(
                    select(SignalRecord.ticket_id).where(
                        SignalRecord.ticket_id.in_(sorted(moved_from)),
                        SignalRecord.kind == "alert",
                        SignalRecord.recovered_at.is_(None),
                    )
                )
            )
        for old in moved_from.values():
            old.incident_id = ticket.id
            if old.id in still_active:
                # It still holds other problems: linked to the incident, not closed.
                history.record(
                    self.session, old, STORM_ACTOR, "linked",
                    {"incident": [None, ticket.reference]}, comment,
                )  # fmt: skip
                continue
            ticket_actions.mark_duplicate(
                self.runtime, self.session, old, ticket, STORM_ACTOR, comment
            )

    # --- End of batch --------------------------------------------------------------

    def note_attached(self, incident: Incident) -> None:
        self.touched[incident.ticket.id] = incident

    def finish(self) -> None:
        """Bring each touched incident's description up to its device count."""
        for incident in self.touched.values():
            ticket, storm = incident.ticket, incident.storm
            devices = self.session.scalar(
                select(func.count(distinct(SignalRecord.device_id))).where(
                    SignalRecord.ticket_id == ticket.id, SignalRecord.kind == "alert"
                )
            )
            if devices == storm.device_count:
                continue
            old = storm.device_count
            storm.device_count = devices
            ticket.description = describe_storm(
                storm.storm_key, devices, storm.device_kind, storm.title
            )
            ticket.updated_at = utcnow()
            if not incident.created:
                history.record(
                    self.session, ticket, STORM_ACTOR, "storm_grew",
                    {"devices": [old, devices]}, public=False,
                )  # fmt: skip

    def created_incidents(self) -> list[Incident]:
        return [incident for incident in self.touched.values() if incident.created]


def emit_created(session: Session, incidents: list[Incident]) -> None:
    for incident in incidents:
        events.after_commit(
            session, "ticket_created", ticket=incident.ticket.snapshot(), commune=incident.commune
        )
