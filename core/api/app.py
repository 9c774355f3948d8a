"""The application factory: ``create_app(settings)`` or ``create_app(runtime=...)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from core.api import communes, health, tickets
from core.api.errors import install_error_handlers
from core.outbox import deliver_due
from core.runtime import Runtime, open_runtime
from core.settings import Settings

log = logging.getLogger(__name__)

CORE_ROUTERS = (health.router, tickets.router, communes.router)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the app. With no ``runtime``, one is opened from ``settings`` at start-up.

    Configuration errors and an out-of-date schema stop start-up with their message.
    """
    settings = runtime.settings if runtime else (settings or Settings())
    # Open now so that a bad config fails before the server binds its port.
    runtime = runtime or open_runtime(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = runtime
        worker = asyncio.create_task(_outbox_loop(runtime))
        try:
            yield
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

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
            CORSMiddleware, allow_origins=settings.api.cors_origins,
            allow_methods=["*"], allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    install_error_handlers(app)
    for router in CORE_ROUTERS:
        app.include_router(router)
    for routers in runtime.pm.call_all("register_routes", settings=settings):
        for router in routers:
            app.include_router(router)
    return app


async def _outbox_loop(runtime: Runtime) -> None:
    while True:
        try:
            await asyncio.to_thread(deliver_due, runtime)
        except Exception:
            log.exception("outbox delivery failed; will try again")
        await asyncio.sleep(runtime.settings.outbox.poll_seconds)
