"""/healthz and /readyz for the orchestrator, and what any error looks like to a caller."""

from __future__ import annotations

import pytest
from fastapi import APIRouter
from sqlalchemy import create_engine

from core import hookimpl


def test_healthz_answers_without_a_token(vigie_api):
    response = vigie_api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_the_database(vigie_api):
    response = vigie_api.client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["communes"] == str(len(vigie_api.runtime.area.communes))


def test_readyz_is_503_when_the_database_is_unreachable(vigie_api, monkeypatch):
    unreachable = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    monkeypatch.setattr(vigie_api.runtime, "engine", unreachable)
    response = vigie_api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "not ready"
    assert response.json()["checks"]["database"].startswith("unreachable")
    assert "nobody" not in response.text and "Traceback" not in response.text


# --- Errors -----------------------------------------------------------------------------


class Exploding:
    """A plugin route that fails with internals in its message."""

    name = "exploding"

    @hookimpl
    def register_routes(self):
        router = APIRouter()

        @router.get("/api/v1/explode")
        def explode() -> None:
            raise RuntimeError("password=hunter2 in /srv/vigie/secret.py")

        return [router]


class TestUnexpectedErrors:
    @pytest.fixture
    def vigie_plugins(self):
        return (Exploding(),)

    def test_an_unexpected_error_is_json_without_internals(self, vigie_api, caplog):
        response = vigie_api.client.get("/api/v1/explode")
        assert response.status_code == 500
        detail = response.json()["detail"]
        assert detail.startswith("internal error; the server log has the details under id ")
        assert "hunter2" not in response.text and "Traceback" not in response.text
        incident = detail.rsplit(" ", 1)[1]
        assert any(incident in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("get", "/api/v1/tickets/1", {}, 404),
        ("get", "/api/v1/nowhere", {}, 404),
        (
            "post",
            "/api/v1/tickets",
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            422,
        ),
        ("post", "/api/v1/tickets", {"json": []}, 422),
        ("get", "/api/v1/tickets", {"params": {"page_size": "beaucoup"}}, 422),
        ("delete", "/api/v1/tickets", {}, 405),
        ("post", "/api/v1/tickets/1/status", {"json": {"status": "closed"}}, 404),
    ],
)
def test_error_bodies_are_json_with_a_detail(vigie_api, admin, method, path, kwargs, status):
    headers = {**admin, **kwargs.pop("headers", {})}
    response = getattr(vigie_api.client, method)(path, headers=headers, **kwargs)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    assert "Traceback" not in response.text and 'File "' not in response.text
