"""The application factory: ``create_app(settings)`` or ``create_app(runtime=...)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI

from core.api import communes, deadletters, devices, health, matching, tickets
from core.api.errors import install_error_handlers
from core.api.limits import BodyLimitMiddleware
from core.db.checkpoints import checkpoint_in_background
from core.outbox import deliver_due
from core.runtime import Runtime, open_runtime
from core.settings import Settings

log = logging.getLogger(__name__)

# matching before tickets: /tickets/similar is not a ticket key.
CORE_ROUTERS = (
    health.router,
    matching.router,
    tickets.router,
    communes.router,
    devices.router,
    deadletters.router,
)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the app. With no ``runtime``, one is opened from ``settings`` at start-up.

    Configuration errors and an out-of-date schema stop start-up with their message.
    """
    settings = runtime.settings if runtime else (settings or Settings())
    # Open now so that a bad config fails before the server binds its port.
    runtime = runtime or open_runtime(settings)
    if settings.ingest.enabled and not settings.mqtt_url:
        _check_local_broker_port(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = runtime
        # SQLite: writers do not pay for copying the WAL back (core.db.checkpoints).
        checkpoints = checkpoint_in_background(runtime.engine)
        worker = asyncio.create_task(_outbox_loop(runtime))
        # Sensor ingestion (MQTT subscriber, embedded broker, silent-meter checks):
        # `vigie serve` turns it on unless ingest.enabled is false.
        app.state.ingestion = None
        if settings.ingest.enabled:
            app.state.ingestion = await asyncio.to_thread(_start_ingestion, runtime)
        try:
            yield
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            if app.state.ingestion is not None:
                await asyncio.to_thread(app.state.ingestion.stop)
            if checkpoints is not None:
                await asyncio.to_thread(checkpoints.stop)

    app = FastAPI(
        title="Vigie",
        summary=f"Allô Mairie desk of {runtime.area.name}",
        version="1",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    if settings.api.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    app.add_middleware(BodyLimitMiddleware)
    install_error_handlers(app)
    plugin_routers = [
        router
        for routers in runtime.pm.call_all("register_routes", settings=settings)
        for router in routers
    ]
    # A router whose paths all sit under first segments of their own (/open311/...)
    # cannot take a core path: it is tried first, so that its requests (the busiest
    # public ones) skip matching every core route. Others are tried after core's.
    core_segments = _first_segments(CORE_ROUTERS)
    first = [
        router
        for router in plugin_routers
        if not _first_segments((router,)) & ({None} | core_segments)
    ]
    for router in [*first, *CORE_ROUTERS, *(r for r in plugin_routers if r not in first)]:
        app.include_router(router)
    return app


def _first_segment(path: str) -> str | None:
    """The first segment of a route's path, if it is fixed text (not a {parameter})."""
    segment = path.lstrip("/").split("/", 1)[0]
    return None if not segment or "{" in segment else segment


def _first_segments(routers: tuple[APIRouter, ...]) -> set[str | None]:
    """The first segments of the routers' paths (None for a path that starts with
    a parameter, or is ``/``)."""
    return {
        _first_segment(r.prefix + getattr(route, "path", "")) for r in routers for route in r.routes
    }


def create_worker_app() -> FastAPI:
    """The app of one process of ``vigie serve --workers N`` (uvicorn's factory):
    :func:`create_app` from the environment, then the process tuned as a
    service (:mod:`core.gc_tuning`), as ``vigie serve`` tunes its one process."""
    from core.gc_tuning import tune_for_service

    app = create_app()
    tune_for_service()
    return app


def _check_local_broker_port(settings: Settings) -> None:
    """Before the HTTP port is bound: stop if the local broker port is held by
    something that is not an MQTT broker (the error says what to set)."""
    from core.ingest.broker import refuse_foreign_port

    refuse_foreign_port(settings.ingest.embedded_port)


def _start_ingestion(runtime: Runtime):
    import threading

    from core.ingest.mqtt import Ingestion

    ingestion = Ingestion(runtime, role="serve", embedded_broker=True)
    ingestor = ingestion.start()
    burst = runtime.settings.ingest.demo_burst
    if burst:
        from core.simulate import run_demo_burst

        threading.Thread(
            target=run_demo_burst,
            args=(runtime, ingestion.broker_url, burst, ingestor.wait_ready),
            name="vigie-demo-burst",
            daemon=True,
        ).start()
    return ingestion


async def _outbox_loop(runtime: Runtime) -> None:
    while True:
        try:
            await asyncio.to_thread(deliver_due, runtime)
        except Exception:
            log.exception("outbox delivery failed; will try again")
        await asyncio.sleep(runtime.settings.outbox.poll_seconds)
