"""/api/v1/tickets: "already reported?" before creating, a caller's report on an
existing ticket, and merging two tickets about the same problem.

Included before the tickets router so that ``/tickets/similar`` is not read as
a ticket key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core import matching, ticket_actions
from core.api.deps import RuntimeDep, SessionDep, require
from core.api.schemas import ReporterIn, TicketDetailOut, TicketOut
from core.api.tickets import _idempotency_key
from core.auth import Actor, Permission
from core.errors import InvalidInput, NotFound
from core.history import history_of
from core.signals import Location, Report, Reporter

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])

Channel = Literal["phone", "counter", "email", "web", "app", "sms", "mail", "social", "staff"]


class ReportIn(BaseModel):
    """A further report of a ticket's problem: POST /tickets' body without commune,
    category and priority (they are the ticket's). The location is optional: the
    caller is talking about the ticket's place."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    description: str = Field(min_length=3, max_length=5000)
    channel: Channel = "phone"
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    address: str | None = Field(default=None, max_length=300)
    reporter: ReporterIn | None = None
    answers: dict[str, Any] = {}

    @model_validator(mode="after")
    def _both_coordinates(self) -> ReportIn:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("give both latitude and longitude, or neither")
        return self


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    into: int | str = Field(description="id or reference of the ticket that carries on")
    comment: str | None = Field(default=None, max_length=5000)


class SimilarTicketOut(BaseModel):
    ticket: TicketOut
    distance_m: float | None = Field(description="from the given point, rounded to the metre")
    same_asset: bool = Field(description="a sensor ticket on the same asset")


class SimilarTickets(BaseModel):
    radius_m: float
    items: list[SimilarTicketOut]


@router.get(
    "/similar", response_model=SimilarTickets, summary="Open tickets about the same problem"
)
def similar(
    runtime: RuntimeDep,
    session: SessionDep,
    actor: Annotated[Actor, Depends(require(Permission.READ))],
    commune: str,
    category: str,
    latitude: Annotated[float | None, Query(ge=-90, le=90)] = None,
    longitude: Annotated[float | None, Query(ge=-180, le=180)] = None,
    asset: Annotated[str | None, Query(max_length=128, description="cabinet, circuit...")] = None,
    radius_m: Annotated[float | None, Query(gt=0, le=5000, description="metres")] = None,
    limit: Annotated[int, Query(ge=1, le=20)] = 5,
) -> SimilarTickets:
    """Before typing a caller's report in: the open tickets of this category near
    the point, and the sensor tickets on the asset (named, or of a device near
    the point). Empty when there is nothing to follow."""
    if not actor.sees(commune) or commune not in runtime.area.communes:
        raise InvalidInput.one("commune", f"unknown or not covered by your token: {commune}")
    found = runtime.commune(commune)
    if found.category(category) is None:
        known = ", ".join(c.code for c in found.categories)
        reason = f"{category!r} is not a category of {commune}; known: {known}"
        raise InvalidInput.one("category", reason)
    if (latitude is None) != (longitude is None):
        missing = "longitude" if longitude is None else "latitude"
        raise InvalidInput.one(missing, "give both latitude and longitude, or neither")
    if latitude is None and not asset:
        raise InvalidInput.one("latitude", "give a point (latitude and longitude) or an asset")
    radius = radius_m if radius_m is not None else found.matching_radius(category)
    offers = matching.similar_open_tickets(
        session, found, category, Location(latitude, longitude), radius, asset, limit
    )
    return SimilarTickets(
        radius_m=radius,
        items=[
            SimilarTicketOut(
                ticket=TicketOut.of(offer.ticket, actor),
                distance_m=round(offer.distance_m) if offer.distance_m is not None else None,
                same_asset=offer.same_asset,
            )
            for offer in offers
        ],
    )


@router.post(
    "/{key}/reports", status_code=status.HTTP_201_CREATED, response_model=TicketDetailOut,
    summary="Add a caller's report to an existing ticket",
)
def add_report(
    key: str,
    body: ReportIn,
    response: Response,
    runtime: RuntimeDep,
    session: SessionDep,
    actor: Annotated[Actor, Depends(require(Permission.CREATE))],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> TicketDetailOut:
    """The caller's report joins the ticket (or the one it duplicates), which must
    be open (409 otherwise); answers are checked against the ticket's category.
    The caller is told when the ticket is resolved, like its first reporter.
    The same ``Idempotency-Key`` again answers 200 and stores nothing."""
    ticket = ticket_actions.find_ticket(session, key, actor.communes)
    reporter = body.reporter
    report = Report(
        commune=ticket.commune,
        category=ticket.category,
        description=body.description,
        channel=body.channel,
        location=Location(body.latitude, body.longitude, body.address),
        reporter=Reporter(
            name=reporter.name, email=reporter.email, phone=reporter.phone,
            notify_by=reporter.notify_by, language=reporter.language,
        ) if reporter else Reporter(),
        answers=body.answers,
        idempotency_key=(
            _idempotency_key(actor, ticket.commune, f"report\0{idempotency_key}")
            if idempotency_key
            else None
        ),
    )
    result = matching.attach_report(runtime, session, ticket, report, actor.label)
    session.commit()
    if result.repeated:
        response.status_code = status.HTTP_200_OK
    joined = result.ticket
    session.refresh(joined)
    response.headers["Location"] = f"/api/v1/tickets/{joined.id}"
    return TicketDetailOut.with_history(joined, history_of(session, joined.id), actor)


@router.post("/{key}/merge", response_model=TicketDetailOut, summary="Merge into another ticket")
def merge(
    key: str,
    body: MergeIn,
    runtime: RuntimeDep,
    session: SessionDep,
    actor: Annotated[Actor, Depends(require(Permission.LINK))],
) -> TicketDetailOut:
    """The ticket's reports, alerts and attachments move to ``into`` (or the ticket
    it duplicates), and the ticket becomes its duplicate; answers the ticket that
    carries on, with every report."""
    source = ticket_actions.find_ticket(session, key, actor.communes)
    try:
        target = ticket_actions.find_ticket(session, str(body.into), actor.communes)
    except NotFound:
        raise InvalidInput.one("into", f"no ticket {body.into}") from None
    carried_on = matching.merge_tickets(runtime, session, source, target, actor.label, body.comment)
    session.commit()
    return TicketDetailOut.with_history(carried_on, history_of(session, carried_on.id), actor)
