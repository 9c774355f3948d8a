"""/api/v1/deadletters: the messages ingestion could not read, with why.

A dead letter belongs to no commune (it could not be read far enough to
say), so only admins and supervisors whose token covers every commune see
them. The raw bytes are shown as text when they are UTF-8, else in base64
(``encoding`` says which).
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import func, select

from core.api.deps import RuntimeDep, SessionDep
from core.api.devices import AllCommunesDep, page_size
from core.db.sensor_models import DeadLetter

router = APIRouter(prefix="/api/v1/deadletters", tags=["dead letters"])

Stage = Literal["envelope", "device", "connector", "ticket"]


def shown_payload(payload: bytes) -> tuple[str, Literal["utf-8", "base64"]]:
    """The bytes as text if they are UTF-8, else as base64; and which."""
    try:
        return payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode("ascii"), "base64"


class DeadLetterOut(BaseModel):
    id: int
    topic: str
    received_at: datetime
    stage: str
    reason: str
    device_id: str | None
    size: int
    encoding: Literal["utf-8", "base64"]
    payload: str
    # The same bytes on the same topic again (a redelivery, a device resending).
    repeats: int = 0
    last_received_at: datetime | None = None

    @classmethod
    def of(cls, letter: DeadLetter) -> DeadLetterOut:
        payload, encoding = shown_payload(letter.payload)
        return cls(
            id=letter.id,
            topic=letter.topic,
            received_at=letter.received_at,
            stage=letter.stage,
            reason=letter.reason,
            device_id=letter.device_id,
            size=len(letter.payload),
            encoding=encoding,
            payload=payload,
            repeats=letter.repeats or 0,
            last_received_at=letter.last_received_at,
        )


class DeadLetterPage(BaseModel):
    items: list[DeadLetterOut]
    total: int
    page: int
    page_size: int


@router.get("", response_model=DeadLetterPage, summary="Messages that could not be read")
def list_dead_letters(
    runtime: RuntimeDep,
    session: SessionDep,
    _actor: AllCommunesDep,
    stage: Annotated[list[Stage] | None, Query(description="repeat for several")] = None,
    topic: Annotated[str | None, Query(description="exact MQTT topic")] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size_: Annotated[int | None, Query(alias="page_size", ge=1)] = None,
) -> DeadLetterPage:
    """Newest first: topic, raw bytes, when the broker delivered it, and the reason."""
    size = page_size(runtime, page_size_)
    query = select(DeadLetter)
    if stage:
        query = query.where(DeadLetter.stage.in_(stage))
    if topic:
        query = query.where(DeadLetter.topic == topic)
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = session.scalars(
        query.order_by(DeadLetter.received_at.desc(), DeadLetter.id.desc())
        .offset((page - 1) * size)
        .limit(size)
    )
    return DeadLetterPage(
        items=[DeadLetterOut.of(d) for d in rows], total=total or 0, page=page, page_size=size
    )
