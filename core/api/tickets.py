"""/api/v1/tickets: list, create, read, and the actions staff take on a ticket."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response, UploadFile, status
from fastapi.responses import FileResponse
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core import ticket_actions
from core.api.deps import RuntimeDep, SessionDep, require
from core.api.schemas import (
    AlertOut,
    AssignIn,
    CommentIn,
    DuplicateIn,
    PriorityIn,
    StatusChangeIn,
    TicketDetailOut,
    TicketIn,
    TicketOut,
    TicketPage,
)
from core.attachments import MAX_ATTACHMENT_BYTES, store_attachment
from core.auth import Actor, Permission
from core.db.models import SignalRecord, Ticket
from core.errors import InvalidInput, NotFound
from core.history import history_of
from core.intake import accept_signal
from core.signals import Location, Report, Reporter

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])

# Beyond this the row offset would not fit the databases' 64-bit integers.
MAX_PAGE = 1_000_000_000


def _visible(actor: Actor) -> frozenset[str] | None:
    return actor.communes


def _load(session: Session, key: str, actor: Actor) -> Ticket:
    return ticket_actions.find_ticket(session, key, _visible(actor))


def _like_pattern(text: str) -> str:
    """``%text%`` for ILIKE with ``\\`` as escape: a % or _ typed by the user is literal."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _idempotency_key(actor: Actor, commune: str, key: str) -> str:
    """The stored key: scoped to the caller and the commune, of a fixed length."""
    digest = hashlib.sha256(f"{actor.label}\0{commune}\0{key}".encode()).hexdigest()
    return f"api:{digest}"


def _parse_bbox(bbox: str) -> tuple[float, float, float, float]:
    try:
        min_lon, min_lat, max_lon, max_lat = (float(part) for part in bbox.split(","))
    except ValueError:
        raise InvalidInput.one(
            "bbox", "expected min_lon,min_lat,max_lon,max_lat (WGS84 degrees)"
        ) from None
    if min_lon > max_lon or min_lat > max_lat:
        raise InvalidInput.one("bbox", "min values must not exceed max values")
    return min_lon, min_lat, max_lon, max_lat


@router.get("", response_model=TicketPage, summary="Search tickets")
def list_tickets(
    runtime: RuntimeDep,
    session: SessionDep,
    actor: Annotated[Actor, Depends(require(Permission.READ))],
    commune: Annotated[
        list[str] | None, Query(description="commune slug; repeat for several")
    ] = None,
    status_: Annotated[list[str] | None, Query(alias="status")] = None,
    category: Annotated[list[str] | None, Query()] = None,
    channel: Annotated[list[str] | None, Query()] = None,
    team: Annotated[str | None, Query()] = None,
    q: Annotated[
        str | None, Query(description="text in the reference, description or address")
    ] = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat")] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    device_id: str | None = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int | None, Query(ge=1)] = None,
) -> TicketPage:
    size = min(
        page_size or runtime.settings.api.default_page_size, runtime.settings.api.max_page_size
    )
    query = select(Ticket)
    if actor.communes is not None:
        query = query.where(Ticket.commune.in_(actor.communes))
    if commune:
        query = query.where(Ticket.commune.in_(commune))
    if status_:
        query = query.where(Ticket.status.in_(status_))
    if category:
        query = query.where(Ticket.category.in_(category))
    if channel:
        query = query.where(Ticket.channel.in_(channel))
    if team:
        query = query.where(Ticket.team == team)
    if q:
        pattern = _like_pattern(q.strip())
        query = query.where(
            or_(
                Ticket.reference.ilike(pattern, escape="\\"),
                Ticket.description.ilike(pattern, escape="\\"),
                Ticket.address.ilike(pattern, escape="\\"),
            )
        )
    if bbox:
        min_lon, min_lat, max_lon, max_lat = _parse_bbox(bbox)
        query = query.where(
            Ticket.longitude.between(min_lon, max_lon), Ticket.latitude.between(min_lat, max_lat)
        )
    for name, value in (("created_after", created_after), ("created_before", created_before)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput.one(name, "give a time zone, e.g. 2026-11-25T08:00:00+01:00 or ...Z")
    if created_after:
        query = query.where(Ticket.created_at >= created_after)
    if created_before:
        query = query.where(Ticket.created_at < created_before)
    if device_id:
        query = query.where(
            Ticket.id.in_(select(SignalRecord.ticket_id).where(SignalRecord.device_id == device_id))
        )
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = session.scalars(
        query.order_by(Ticket.created_at.desc(), Ticket.id.desc())
        .offset((page - 1) * size)
        .limit(size)
    )
    return TicketPage(
        items=[TicketOut.of(t, actor) for t in rows], total=total or 0, page=page, page_size=size
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TicketDetailOut,
    summary="Create a ticket",
)
def create_ticket(
    body: TicketIn,
    response: Response,
    runtime: RuntimeDep,
    session: SessionDep,
    actor: Annotated[Actor, Depends(require(Permission.CREATE))],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> TicketDetailOut:
    """Staff intake on behalf of a caller. Stored (committed) before the 201 is sent.

    Send an ``Idempotency-Key`` header to make retries safe: the same key
    returns the ticket created the first time (status 200).
    """
    if not actor.sees(body.commune):
        raise InvalidInput.one("commune", f"your token does not cover {body.commune}")
    reporter = body.reporter
    report = Report(
        commune=body.commune,
        category=body.category,
        description=body.description.strip(),
        channel=body.channel,
        location=Location(body.latitude, body.longitude, body.address),
        reporter=Reporter(
            name=reporter.name,
            email=reporter.email,
            phone=reporter.phone,
            notify_by=reporter.notify_by,
            language=reporter.language,
        )
        if reporter
        else Reporter(),
        answers=body.answers,
        priority=body.priority,
        idempotency_key=(
            _idempotency_key(actor, body.commune, idempotency_key) if idempotency_key else None
        ),
    )
    if body.commune not in runtime.area.communes:
        raise InvalidInput.one("commune", f"unknown; communes: {', '.join(runtime.area.communes)}")
    result = accept_signal(runtime, session, report, actor.label)
    session.commit()
    if result.repeated:
        response.status_code = status.HTTP_200_OK
    ticket = result.ticket
    # Answer with what was stored, not with the objects intake built in memory.
    session.refresh(ticket)
    response.headers["Location"] = f"/api/v1/tickets/{ticket.id}"
    return TicketDetailOut.with_history(ticket, history_of(session, ticket.id), actor)


@router.get("/{key}", response_model=TicketDetailOut, summary="A ticket with its history")
def get_ticket(
    key: str, session: SessionDep, actor: Annotated[Actor, Depends(require(Permission.READ))]
) -> TicketDetailOut:
    ticket = _load(session, key, actor)
    return TicketDetailOut.with_history(ticket, history_of(session, ticket.id), actor)


@router.get(
    "/{key}/alerts", response_model=list[AlertOut], summary="The sensor alerts a ticket holds"
)
def get_ticket_alerts(
    key: str, session: SessionDep, actor: Annotated[Actor, Depends(require(Permission.READ))]
) -> list[AlertOut]:
    return [AlertOut.of(a) for a in _load(session, key, actor).alerts]


def _detail(session: Session, ticket: Ticket, actor: Actor) -> TicketDetailOut:
    session.commit()
    return TicketDetailOut.with_history(ticket, history_of(session, ticket.id), actor)


@router.post("/{key}/status", response_model=TicketDetailOut, summary="Move along the workflow")
def change_status(
    key: str,
    body: StatusChangeIn,
    runtime: RuntimeDep,
    session: SessionDep,
    actor: Annotated[Actor, Depends(require(Permission.CHANGE_STATUS))],
) -> TicketDetailOut:
    ticket = _load(session, key, actor)
    ticket_actions.change_status(
        runtime,
        session,
        ticket,
        body.status,
        actor.label,
        body.comment,
        body.outside_body,
        body.public,
    )
    return _detail(session, ticket, actor)


@router.post("/{key}/comments", response_model=TicketDetailOut, summary="Add a note")
def comment(
    key: str,
    body: CommentIn,
    session: SessionDep,
    actor: Annotated[Actor, Depends(require(Permission.COMMENT))],
) -> TicketDetailOut:
    ticket = _load(session, key, actor)
    ticket_actions.add_comment(session, ticket, actor.label, body.comment, body.public)
    return _detail(session, ticket, actor)


@router.post("/{key}/assign", response_model=TicketDetailOut, summary="Give to a team")
def assign(
    key: str,
    body: AssignIn,
    runtime: RuntimeDep,
    session: SessionDep,
    actor: Annotated[Actor, Depends(require(Permission.ASSIGN))],
) -> TicketDetailOut:
    ticket = _load(session, key, actor)
    ticket_actions.assign(runtime, session, ticket, body.team, actor.label, body.comment)
    return _detail(session, ticket, actor)


@router.post("/{key}/priority", response_model=TicketDetailOut, summary="Change the priority")
def prioritise(
    key: str,
    body: PriorityIn,
    runtime: RuntimeDep,
    session: SessionDep,
    actor: Annotated[Actor, Depends(require(Permission.PRIORITISE))],
) -> TicketDetailOut:
    ticket = _load(session, key, actor)
    ticket_actions.set_priority(runtime, session, ticket, body.priority, actor.label, body.comment)
    return _detail(session, ticket, actor)


@router.post("/{key}/duplicate", response_model=TicketDetailOut, summary="Link as a duplicate")
def mark_duplicate(
    key: str,
    body: DuplicateIn,
    runtime: RuntimeDep,
    session: SessionDep,
    actor: Annotated[Actor, Depends(require(Permission.LINK))],
) -> TicketDetailOut:
    ticket = _load(session, key, actor)
    try:
        original = _load(session, str(body.duplicate_of), actor)
    except NotFound:
        raise InvalidInput.one("duplicate_of", f"no ticket {body.duplicate_of}") from None
    ticket_actions.mark_duplicate(runtime, session, ticket, original, actor.label, body.comment)
    return _detail(session, ticket, actor)


@router.post(
    "/{key}/attachments",
    status_code=status.HTTP_201_CREATED,
    response_model=TicketDetailOut,
    summary="Attach a photo or document",
)
async def add_attachment(
    key: str,
    file: UploadFile,
    runtime: RuntimeDep,
    session: SessionDep,
    actor: Annotated[Actor, Depends(require(Permission.COMMENT))],
) -> TicketDetailOut:
    ticket = _load(session, key, actor)
    data = await file.read(MAX_ATTACHMENT_BYTES + 1)
    store_attachment(
        session, runtime.settings.data_dir, ticket, file.filename or "file", data, actor.label
    )
    return _detail(session, ticket, actor)


@router.get("/{key}/attachments/{attachment_id}", summary="Download an attachment")
def get_attachment(
    key: str,
    attachment_id: int,
    session: SessionDep,
    actor: Annotated[Actor, Depends(require(Permission.READ))],
) -> FileResponse:
    ticket = _load(session, key, actor)
    attachment = next((a for a in ticket.attachments if a.id == attachment_id), None)
    if attachment is None:
        raise NotFound(f"no attachment {attachment_id} on {ticket.reference}")
    return FileResponse(
        attachment.storage_path, media_type=attachment.content_type, filename=attachment.filename
    )
