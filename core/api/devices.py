"""/api/v1/devices: the sensor registry, its import, and what ingestion could not place.

Tenancy: a token scoped to communes lists and imports only those communes'
devices, and sees only their ignored-message counts. Messages from
unregistered devices belong to no commune (the registry is what would say
which): only admins and supervisors whose token covers every commune see
them, like the dead letters.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import func, or_, select

from core.api.deps import RuntimeDep, SessionDep, require
from core.auth import Actor, Permission, Role
from core.db.sensor_models import Device, IgnoredMessageCount, UnregisteredDevice
from core.devices import DeviceImportError, import_devices
from core.errors import NotFound

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])

MAX_IMPORT_BYTES = 20 * 1024 * 1024
_CSV_TYPES = ("text/csv", "application/csv", "text/plain")
_GEOJSON_TYPES = ("application/geo+json", "application/json")


def require_all_communes(actor: Annotated[Actor, Depends(require(Permission.READ))]) -> Actor:
    """Admins and supervisors whose token covers every commune: for what has no commune."""
    if actor.role not in (Role.ADMIN, Role.SUPERVISOR) or actor.communes is not None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "messages that belong to no commune are shown to admins and supervisors "
            "whose token covers all communes",
        )
    return actor


AllCommunesDep = Annotated[Actor, Depends(require_all_communes)]
ReaderDep = Annotated[Actor, Depends(require(Permission.READ))]


def page_size(runtime: Any, asked: int | None) -> int:
    api = runtime.settings.api
    return min(asked or api.default_page_size, api.max_page_size)


class DeviceOut(BaseModel):
    device_id: str
    dev_eui: str | None
    kind: str
    commune: str
    latitude: float | None
    longitude: float | None
    address: str | None
    asset: str | None
    tags: dict[str, str]
    last_seen_at: datetime | None

    @classmethod
    def of(cls, device: Device) -> DeviceOut:
        return cls(
            device_id=device.device_id,
            dev_eui=device.dev_eui,
            kind=device.kind,
            commune=device.commune,
            latitude=device.latitude,
            longitude=device.longitude,
            address=device.address,
            asset=device.asset,
            tags={str(k): str(v) for k, v in (device.tags or {}).items()},
            last_seen_at=device.last_seen_at,
        )


class DevicePage(BaseModel):
    items: list[DeviceOut]
    total: int
    page: int
    page_size: int


class ImportOut(BaseModel):
    created: int
    updated: int


class UnregisteredOut(BaseModel):
    device_id: str
    dev_eui: str | None
    network: str | None
    topic: str
    first_seen_at: datetime
    last_seen_at: datetime
    message_count: int
    last_payload: str | None


class UnregisteredPage(BaseModel):
    items: list[UnregisteredOut]
    total: int
    page: int
    page_size: int


class IgnoredOut(BaseModel):
    commune: str
    connector: str
    message_count: int
    last_device_id: str | None
    last_seen_at: datetime | None


@router.get("", response_model=DevicePage, summary="Registered sensors")
def list_devices(
    runtime: RuntimeDep,
    session: SessionDep,
    actor: ReaderDep,
    commune: Annotated[
        list[str] | None, Query(description="commune slug; repeat for several")
    ] = None,
    kind: Annotated[list[str] | None, Query(description="water_meter, streetlight...")] = None,
    asset: str | None = None,
    q: Annotated[str | None, Query(description="text in the device id, address or asset")] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size_: Annotated[int | None, Query(alias="page_size", ge=1)] = None,
) -> DevicePage:
    size = page_size(runtime, page_size_)
    query = select(Device)
    if actor.communes is not None:
        query = query.where(Device.commune.in_(actor.communes))
    if commune:
        query = query.where(Device.commune.in_(commune))
    if kind:
        query = query.where(Device.kind.in_(kind))
    if asset:
        query = query.where(Device.asset == asset)
    if q:
        pattern = f"%{q.strip()}%"
        query = query.where(
            or_(
                Device.device_id.ilike(pattern),
                Device.address.ilike(pattern),
                Device.asset.ilike(pattern),
            )
        )
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = session.scalars(query.order_by(Device.device_id).offset((page - 1) * size).limit(size))
    return DevicePage(
        items=[DeviceOut.of(d) for d in rows], total=total or 0, page=page, page_size=size
    )


def _import_name(content_type: str, filename: str | None) -> str:
    if filename:
        return filename
    return "body.geojson" if content_type in _GEOJSON_TYPES else "body.csv"


@router.post(
    "/import",
    response_model=ImportOut,
    summary="Import devices from CSV or GeoJSON",
    responses={422: {"description": "every problem of the file, nothing imported"}},
)
async def import_file(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    actor: Annotated[Actor, Depends(require(Permission.ADMINISTER))],
) -> Any:
    """The body is the file (``Content-Type: text/csv`` or ``application/geo+json``),
    or a multipart form with the file as ``file``. Devices are matched by
    ``device_id``: new ones are added, known ones updated. Nothing is stored
    if any row is wrong; the 422 lists every problem as ``FILE:line N: field: reason``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    filename = None
    if content_type == "multipart/form-data":
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422, "send the file as the multipart field 'file'")
        filename = upload.filename
        data = await upload.read(MAX_IMPORT_BYTES + 1)
    else:
        data = await request.body()
    if len(data) > MAX_IMPORT_BYTES:
        raise HTTPException(413, f"a device file may be at most {MAX_IMPORT_BYTES} bytes")
    name = _import_name(content_type, filename)
    try:
        result = import_devices(runtime, session, name, data, allowed=actor.communes)
    except DeviceImportError as exc:
        session.rollback()
        errors = [
            {"field": f"{where}: {field}" if field else where, "reason": reason}
            for where, field, reason in exc.parts()
        ]
        return JSONResponse(
            {"detail": f"{len(exc.problems)} problem(s); nothing imported", "errors": errors},
            status_code=422,
        )
    session.commit()
    return ImportOut(created=result.created, updated=result.updated)


@router.get(
    "/unregistered",
    response_model=UnregisteredPage,
    summary="Devices that send messages but are not registered",
)
def list_unregistered(
    runtime: RuntimeDep,
    session: SessionDep,
    _actor: AllCommunesDep,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size_: Annotated[int | None, Query(alias="page_size", ge=1)] = None,
) -> UnregisteredPage:
    """Newest first. Register them (``POST /api/v1/devices/import``) and their
    next messages are read; these are kept as a record, never as tickets."""
    size = page_size(runtime, page_size_)
    total = session.scalar(select(func.count()).select_from(UnregisteredDevice))
    rows = session.scalars(
        select(UnregisteredDevice)
        .order_by(UnregisteredDevice.last_seen_at.desc(), UnregisteredDevice.id.desc())
        .offset((page - 1) * size)
        .limit(size)
    )
    items = [
        UnregisteredOut(
            device_id=r.device_id,
            dev_eui=r.dev_eui,
            network=r.network,
            topic=r.topic,
            first_seen_at=r.first_seen_at,
            last_seen_at=r.last_seen_at,
            message_count=r.message_count,
            last_payload=r.last_payload,
        )
        for r in rows
    ]
    return UnregisteredPage(items=items, total=total or 0, page=page, page_size=size)


@router.get(
    "/ignored",
    response_model=list[IgnoredOut],
    summary="Messages ignored because the commune does not enable the device's connector",
)
def list_ignored(session: SessionDep, actor: ReaderDep) -> list[IgnoredOut]:
    query = select(IgnoredMessageCount).order_by(
        IgnoredMessageCount.commune, IgnoredMessageCount.connector
    )
    if actor.communes is not None:
        query = query.where(IgnoredMessageCount.commune.in_(actor.communes))
    return [
        IgnoredOut(
            commune=r.commune,
            connector=r.connector,
            message_count=r.message_count,
            last_device_id=r.last_device_id,
            last_seen_at=r.last_seen_at,
        )
        for r in session.scalars(query)
    ]


@router.get("/{device_id}", response_model=DeviceOut, summary="One registered sensor")
def get_device(device_id: str, session: SessionDep, actor: ReaderDep) -> DeviceOut:
    device = session.scalar(select(Device).where(Device.device_id == device_id))
    if device is None or not actor.sees(device.commune):
        raise NotFound(f"no device {device_id}")
    return DeviceOut.of(device)
