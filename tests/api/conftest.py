"""Helpers for the staff API tests: valid tickets, workflow moves, counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from core.config import Category
from core.db.models import SignalRecord, Ticket

# How to bring a fresh ticket to each status through POST /status.
PATH_TO: dict[str, tuple[str, ...]] = {
    "new": (),
    "acknowledged": ("acknowledged",),
    "assigned": ("assigned",),
    "in_progress": ("in_progress",),
    "resolved": ("resolved",),
    "reopened": ("resolved", "reopened"),
    "closed": ("resolved", "closed"),
    "rejected": ("rejected",),
    "redirected": ("redirected",),
    # "duplicate" goes through POST /duplicate
}

_SAMPLE = {
    "string": "texte",
    "text": "Un texte libre",
    "integer": 2,
    "number": 1.5,
    "boolean": True,
    "date": "2026-11-20",
}


def valid_answers(category: Category) -> dict[str, Any]:
    """An answer to every required question of ``category``, of the right type."""
    answers: dict[str, Any] = {}
    for question in category.questions:
        if not question.required:
            continue
        if question.type == "choice":
            answers[question.code] = question.choices[0].key
        elif question.type == "multichoice":
            answers[question.code] = [question.choices[0].key]
        else:
            answers[question.code] = _SAMPLE[question.type]
    return answers


@pytest.fixture
def admin(vigie_api) -> dict[str, str]:
    """Headers of an admin token covering every commune."""
    return vigie_api.headers("admin")


@pytest.fixture
def ticket_body(vigie_api) -> Callable[..., dict[str, Any]]:
    """A valid POST /tickets body for a commune and category, with ``overrides``."""

    def make(
        commune: str = "clermont-ferrand", category: str = "proprete", **overrides: Any
    ) -> dict:
        found = vigie_api.runtime.area.commune(commune)
        known = found.category(category) if found else None
        body: dict[str, Any] = {
            "commune": commune,
            "category": category,
            "description": "Des papiers partout sur le trottoir",
            "address": "12 place de Jaude",
            "answers": valid_answers(known) if known else {},
        }
        body.update(overrides)
        return body

    return make


@pytest.fixture
def new_ticket(vigie_api, admin, ticket_body) -> Callable[..., dict[str, Any]]:
    """Create a ticket through the API (201 expected) and return its JSON."""

    def make(
        commune: str = "clermont-ferrand",
        category: str = "proprete",
        headers: dict[str, str] | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        response = vigie_api.client.post(
            "/api/v1/tickets",
            json=ticket_body(commune, category, **overrides),
            headers=headers or admin,
        )
        assert response.status_code == 201, response.text
        return response.json()

    return make


@pytest.fixture
def set_status(vigie_api, admin) -> Callable[..., Any]:
    """POST /status with the comment and outside body every status accepts."""

    def move(
        ticket_id: int | str, status: str, headers: dict[str, str] | None = None, **extra: Any
    ):
        body = {
            "status": status,
            "comment": f"passage en {status}",
            "outside_body": "Enedis",
            **extra,
        }
        body = {key: value for key, value in body.items() if value is not None}
        return vigie_api.client.post(
            f"/api/v1/tickets/{ticket_id}/status", json=body, headers=headers or admin
        )

    return move


@pytest.fixture
def ticket_in(vigie_api, admin, new_ticket, set_status) -> Callable[..., dict[str, Any]]:
    """A new ticket brought to ``status`` (through the API), as GET returns it."""

    def make(status: str, **ticket_fields: Any) -> dict[str, Any]:
        ticket = new_ticket(**ticket_fields)
        if status == "duplicate":
            original = new_ticket(**ticket_fields)
            response = vigie_api.client.post(
                f"/api/v1/tickets/{ticket['id']}/duplicate",
                json={"duplicate_of": original["reference"]},
                headers=admin,
            )
            assert response.status_code == 200, response.text
        for step in PATH_TO.get(status, ()):
            response = set_status(ticket["id"], step)
            assert response.status_code == 200, response.text
        current = vigie_api.client.get(f"/api/v1/tickets/{ticket['id']}", headers=admin).json()
        assert current["status"] == status
        return current

    return make


@pytest.fixture
def stored(vigie_api) -> Callable[[], tuple[int, int]]:
    """How many tickets and signals the database holds, read with a new session."""

    def count() -> tuple[int, int]:
        with vigie_api.runtime.sessions() as session:
            tickets = session.scalar(select(func.count()).select_from(Ticket))
            signals = session.scalar(select(func.count()).select_from(SignalRecord))
        return tickets, signals

    return count
