"""Plugin routes and core routes: a plugin never takes a core path, and a
plugin's paths under a first segment of their own are matched first."""

from __future__ import annotations

import pytest
from fastapi import APIRouter

from core import hookimpl


class Shadowing:
    """A plugin with a path of its own and one that is also a core path."""

    name = "shadowing"

    @hookimpl
    def register_routes(self):
        own, clashing = APIRouter(), APIRouter()

        @own.get("/kiosk/{anything:path}")
        def kiosk(anything: str) -> dict:
            return {"kiosk": anything}

        @clashing.get("/api/v1/communes")
        def communes() -> dict:
            return {"taken": True}

        @clashing.get("/{page}")
        def page(page: str) -> dict:
            return {"page": page}

        return [own, clashing]


@pytest.fixture
def vigie_plugins():
    return (Shadowing(),)


def test_core_paths_stay_core_and_own_paths_are_tried_first(vigie_api):
    headers = vigie_api.headers("admin")
    assert "taken" not in vigie_api.client.get("/api/v1/communes", headers=headers).text
    assert vigie_api.client.get("/healthz").json()["status"] == "ok"
    assert vigie_api.client.get("/kiosk/a/b").json() == {"kiosk": "a/b"}
    assert vigie_api.client.get("/about").json() == {"page": "about"}
    order = [
        [getattr(route, "path", "") for route in route.original_router.routes]
        for route in vigie_api.client.app.routes
        if hasattr(route, "original_router")
    ]
    health = order.index(["/healthz", "/readyz"])
    assert order.index(["/kiosk/{anything:path}"]) < health
    assert order.index(["/api/v1/communes", "/{page}"]) > health
