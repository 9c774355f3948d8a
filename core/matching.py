"""Same problem, one ticket: find the open tickets a new report may join, join
it to one, and merge two tickets staff found to be the same.

A report is *similar* to an open ticket of its category within the commune's
matching distance (``matching_radius_m``, per category if set), and to an
open sensor ticket on the same asset: the asset named by the caller, or the
asset of a registered device within that distance of the report (a resident
standing under a dead lamp does not know its circuit, the registry does).

The caller owns the session and commits; plugins hear of a joined signal after
the commit (:mod:`core.events`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import events, history, notify
from core.config import Commune
from core.db.models import SignalRecord, Ticket
from core.db.sensor_models import Device
from core.db.types import utcnow
from core.errors import Conflict, InvalidInput

# Validation and storage exactly as a new report gets them in accept_signal.
from core.intake import IntakeResult, _checked_report, _signal_record
from core.runtime import Runtime
from core.signals import Alert, Location, Report, Reporter, Signal
from core.ticket_actions import mark_duplicate
from core.workflow import OPEN_STATUSES, Status, check_transition

EARTH_RADIUS_M = 6_371_008.8
SENSOR_CHANNEL = "sensor"
_OPEN = sorted(status.value for status in OPEN_STATUSES)
# Candidates read from one bounding box; a denser spot than this is a data problem.
_MAX_CANDIDATES = 500


@dataclass(frozen=True)
class SimilarTicket:
    """An open ticket a report may be about, and why it was offered."""

    ticket: Ticket
    distance_m: float | None  # from the report's point; None without both points
    same_asset: bool  # a sensor ticket on the asset the report is about


def distance_m(latitude1: float, longitude1: float, latitude2: float, longitude2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    phi1, phi2 = math.radians(latitude1), math.radians(latitude2)
    d_phi = phi2 - phi1
    d_lambda = math.radians(longitude2 - longitude1)
    h = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def bounding_box(
    latitude: float, longitude: float, radius_m: float
) -> tuple[float, float, float, float]:
    """``(min_lat, max_lat, min_lon, max_lon)`` holding every point within ``radius_m``.

    Slightly larger than the circle, so that an indexed range query finds
    every candidate and the exact distance sorts them out.
    """
    d_lat = math.degrees(radius_m / EARTH_RADIUS_M) * 1.001
    cos_lat = max(math.cos(math.radians(latitude)), 1e-6)
    d_lon = min(180.0, d_lat / cos_lat)
    return latitude - d_lat, latitude + d_lat, longitude - d_lon, longitude + d_lon


def similar_open_tickets(
    session: Session,
    commune: Commune,
    category: str,
    location: Location,
    radius_m: float | None = None,
    asset: str | Iterable[str] | None = None,
    limit: int = 5,
) -> list[SimilarTicket]:
    """Open tickets a new report of ``category`` at ``location`` may be about.

    Sensor tickets on the same asset first, then the nearest; at most ``limit``.
    ``radius_m`` defaults to the commune's setting for the category. An asset
    given by the caller matches sensor tickets of any category; an asset found
    from a device near the point only those of ``category``.
    """
    radius = commune.matching_radius(category) if radius_m is None else radius_m
    named = {asset} if isinstance(asset, str) else set(asset or ())
    named.discard("")
    found: dict[int, SimilarTicket] = {}

    def offer(ticket: Ticket, same_asset: bool) -> None:
        # A ticket gathered into an open incident is worked there: offer the incident.
        if ticket.incident is not None and ticket.incident.status in _OPEN:
            ticket = ticket.incident
        distance = _distance_to(ticket, location)
        known = found.get(ticket.id)
        if known is None or (same_asset and not known.same_asset):
            found[ticket.id] = SimilarTicket(ticket, distance, same_asset)

    if named:
        for ticket in _sensor_tickets(session, commune.slug, named, None):
            offer(ticket, True)
    if location.has_point and radius > 0:
        nearby_assets = _assets_near(session, commune.slug, location, radius) - named
        if nearby_assets:
            for ticket in _sensor_tickets(session, commune.slug, nearby_assets, category):
                offer(ticket, True)
        for ticket in _tickets_near(session, commune.slug, category, location, radius):
            offer(ticket, False)
    ranked = sorted(
        found.values(),
        key=lambda s: (
            not s.same_asset,
            s.distance_m if s.distance_m is not None else math.inf,
            s.ticket.id,
        ),
    )
    return ranked[: max(0, limit)]


def _distance_to(ticket: Ticket, location: Location) -> float | None:
    if not location.has_point or ticket.latitude is None or ticket.longitude is None:
        return None
    return distance_m(location.latitude, location.longitude, ticket.latitude, ticket.longitude)  # type: ignore[arg-type]


def _box(location: Location, radius_m: float) -> tuple[float, float, float, float]:
    return bounding_box(location.latitude, location.longitude, radius_m)  # type: ignore[arg-type]


def _tickets_near(
    session: Session, commune: str, category: str, location: Location, radius_m: float
) -> list[Ticket]:
    min_lat, max_lat, min_lon, max_lon = _box(location, radius_m)
    candidates = session.scalars(
        select(Ticket)
        .where(
            Ticket.latitude.between(min_lat, max_lat),
            Ticket.longitude.between(min_lon, max_lon),
            Ticket.commune == commune,
            Ticket.category == category,
            Ticket.status.in_(_OPEN),
        )
        .limit(_MAX_CANDIDATES)
    )
    return [t for t in candidates if (_distance_to(t, location) or 0.0) <= radius_m]


def _assets_near(session: Session, commune: str, location: Location, radius_m: float) -> set[str]:
    """Assets of the registered devices within ``radius_m`` of the point."""
    min_lat, max_lat, min_lon, max_lon = _box(location, radius_m)
    rows = session.execute(
        select(Device.asset, Device.latitude, Device.longitude)
        .where(
            Device.latitude.between(min_lat, max_lat),
            Device.longitude.between(min_lon, max_lon),
            Device.commune == commune,
            Device.asset.is_not(None),
        )
        .limit(_MAX_CANDIDATES)
    )
    return {
        asset
        for asset, latitude, longitude in rows
        if asset
        and distance_m(location.latitude, location.longitude, latitude, longitude) <= radius_m  # type: ignore[arg-type]
    }


def _sensor_tickets(
    session: Session, commune: str, assets: set[str], category: str | None
) -> list[Ticket]:
    query = select(Ticket).where(
        Ticket.asset.in_(sorted(assets)),
        Ticket.commune == commune,
        Ticket.channel == SENSOR_CHANNEL,
        Ticket.status.in_(_OPEN),
    )
    if category is not None:
        query = query.where(Ticket.category == category)
    return list(session.scalars(query.limit(_MAX_CANDIDATES)))


# --- Joining a report to a ticket ------------------------------------------------


def worked_ticket(ticket: Ticket) -> Ticket:
    """The ticket actually being worked: a duplicate's original (followed to the end)."""
    seen = {ticket.id}
    while ticket.duplicate_of is not None and ticket.duplicate_of.id not in seen:
        ticket = ticket.duplicate_of
        seen.add(ticket.id)
    return ticket


def attach_report(
    runtime: Runtime, session: Session, ticket: Ticket, report: Report, actor: str
) -> IntakeResult:
    """Store ``report`` as a further signal on ``ticket`` (or on the ticket it duplicates).

    Checked as a new report is (category, answers); raises InvalidInput for a
    bad report and Conflict when the ticket is no longer open. The history
    says a report came in and through which channel, never from whom. A
    report whose idempotency key was seen before stores nothing.
    """
    if report.idempotency_key:
        seen = session.scalar(
            select(SignalRecord).where(SignalRecord.idempotency_key == report.idempotency_key)
        )
        if seen is not None:
            return IntakeResult(seen, seen.ticket, created=False, repeated=True)
    ticket = worked_ticket(ticket)
    if report.commune != ticket.commune:
        raise InvalidInput.one("commune", f"{ticket.reference} belongs to {ticket.commune}")
    if ticket.status not in _OPEN:
        raise Conflict(
            f"ticket {ticket.reference} is {ticket.status}: a report can join only an open ticket"
        )
    commune = runtime.commune(ticket.commune)
    report = _checked_report(report, commune)
    reports_before = len(ticket.reports)
    record = _signal_record(report, commune)
    session.add(record)
    record.ticket = ticket  # back-populates ticket.signals
    ticket.updated_at = utcnow()
    session.flush()
    event = history.record(
        session,
        ticket,
        actor,
        "report_attached",
        {"channel": report.channel, "reports": [reports_before, reports_before + 1]},
    )
    notify.queue_notifications(runtime, session, ticket, event)
    events.after_commit(
        session, "signal_attached", ticket=ticket.snapshot(), signal=report, commune=commune
    )
    return IntakeResult(record, ticket, created=False)


# --- Merging ----------------------------------------------------------------------


def merge_tickets(
    runtime: Runtime,
    session: Session,
    source: Ticket,
    target: Ticket,
    actor: str,
    comment: str | None = None,
) -> Ticket:
    """Move ``source``'s signals and attachments onto ``target`` (or the ticket it
    duplicates) and close ``source`` as its duplicate; both histories say so.

    Returns the ticket the work continues on. Refuses (before writing
    anything) a ticket merged into itself or into another commune's ticket,
    a final ``source`` (IllegalTransition) and a ``target`` no longer open
    (Conflict).
    """
    if source.id == target.id:
        raise InvalidInput.one("into", "a ticket cannot be merged into itself")
    if source.commune != target.commune:
        raise InvalidInput.one("into", f"{target.reference} belongs to another commune")
    target = worked_ticket(target)
    if target.id == source.id:
        raise InvalidInput.one("into", f"{target.reference} is already a duplicate of this ticket")
    if target.status not in _OPEN:
        raise Conflict(f"ticket {target.reference} is {target.status}: merge into an open ticket")
    check_transition(source.status, Status.DUPLICATE.value)
    signals = list(source.signals)
    attachments = list(source.attachments)
    for record in signals:
        record.ticket = target
    for attachment in attachments:
        attachment.ticket = target
    now = utcnow()
    source.updated_at = target.updated_at = now
    session.flush()
    moved = {"signals": len(signals), "attachments": len(attachments)}
    # Which signals moved is for staff; the public "linked" events below tell residents.
    history.record(
        session, source, actor, "merged", {"merged_into": [None, target.reference], **moved},
        comment, public=False,
    )  # fmt: skip
    history.record(
        session, target, actor, "merged", {"merged_from": [None, source.reference], **moved},
        comment, public=False,
    )  # fmt: skip
    mark_duplicate(runtime, session, source, target, actor, comment)
    commune = runtime.commune(target.commune)
    snapshot = target.snapshot()
    for record in signals:
        events.after_commit(
            session, "signal_attached", ticket=snapshot, signal=signal_of(record), commune=commune
        )
    return target


def signal_of(record: SignalRecord) -> Signal:
    """The :class:`Report` or :class:`Alert` a stored signal was made from."""
    location = Location(record.latitude, record.longitude, record.address)
    if record.kind == "report":
        return Report(
            commune=record.commune,
            category=record.category or "",
            description=record.description or "",
            channel=record.channel,
            location=location,
            reporter=Reporter(
                name=record.reporter_name,
                email=record.reporter_email,
                phone=record.reporter_phone,
                notify_by=record.notify_by,
                language=record.language,
            ),
            answers=dict(record.answers or {}),
            received_at=record.received_at,
            idempotency_key=record.idempotency_key,
            extra=dict(record.details or {}),
        )
    return Alert(
        device_id=record.device_id or "",
        condition=record.condition or "",
        observed_at=record.last_seen_at or record.received_at,
        severity=record.severity or "normal",
        recovered=record.recovered_at is not None,
        commune=record.commune,
        location=location,
        asset=record.asset,
        device_kind=record.device_kind,
        connector=record.connector,
        idempotency_key=record.idempotency_key,
        details=record.shown_details,
    )
