"""/healthz (the process answers) and /readyz (database reachable, plugins loaded)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from core.api.deps import RuntimeDep
from core.db.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Ready to serve: database reachable and at the right schema")
def readyz(runtime: RuntimeDep, request: Request) -> JSONResponse:
    """Ready when the database answers at the right schema. Sensor ingestion is
    reported but does not decide: staff keep working while a broker is away."""
    checks: dict[str, str] = {}
    ready = True
    try:
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        revision = current_revision(runtime.engine)
        checks["database"] = "ok" if revision == head_revision() else f"schema at {revision}"
        ready = revision == head_revision()
    except Exception as exc:  # any driver error means not ready
        checks["database"] = f"unreachable: {type(exc).__name__}"
        ready = False
    checks["plugins"] = f"{len(runtime.pm.describe())} loaded"
    ingestion = getattr(request.app.state, "ingestion", None)
    ingestor = getattr(ingestion, "ingestor", None)
    if ingestor is not None:
        status = ingestor.status()
        state = "connected" if status.get("connected") else "disconnected"
        checks["mqtt"] = f"{state} to {status.get('broker')}, {status.get('queued', 0)} queued"
    checks["communes"] = str(len(runtime.area.communes))
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )
