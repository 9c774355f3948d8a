"""Open311 GETs served from kept answers: never older than the last commit, by
this process or another, and the bbox extension through the spatial index."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import insert, update

from core.db.models import Ticket
from core.runtime import open_runtime

API = "/open311/v2"


def create(client, key: str, **changes: str) -> str:
    """A lamp reported through Open311, as an app posts it."""
    fields = {
        "api_key": key, "jurisdiction_id": "clermont-ferrand", "service_code": "eclairage",
        "lat": "45.77722", "long": "3.08700", "description": "Trois lampadaires éteints",
        "attribute[nombre_points]": "3", "attribute[etat]": "eteint", **changes,
    }  # fmt: skip
    response = client.post(f"{API}/requests.json", data=fields)
    assert response.status_code == 201, response.text
    return response.json()[0]["service_request_id"]


def get(client, path: str, fmt: str = "json", **params):
    params.setdefault("jurisdiction_id", "clermont-ferrand")
    return client.get(f"{API}/{path}.{fmt}", params=params)


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [request["service_request_id"] for request in response.json()]


def staff(vigie_api, reference: str, action: str, body: dict) -> None:
    response = vigie_api.client.post(
        f"/api/v1/tickets/{reference}/{action}", json=body, headers=vigie_api.headers("admin")
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def client(vigie_api):
    return vigie_api.client


@pytest.fixture
def key(vigie_api) -> str:
    return vigie_api.token("integration", ["clermont-ferrand"])


def statuses(response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {r["service_request_id"]: r["status_notes"] for r in response.json()}


def test_repeated_gets_are_served_again_until_a_change_is_committed(client, key, vigie_api):
    cache = vigie_api.runtime.answer_cache
    reference = create(client, key)
    listing = {"status": "open", "page_size": "20"}
    assert statuses(get(client, "requests", **listing)) == {reference: "new: Nouvelle demande"}
    hits = cache.hits
    for _ in range(3):
        assert statuses(get(client, "requests", **listing)) == {reference: "new: Nouvelle demande"}
        assert get(client, f"requests/{reference}").json()[0]["status"] == "open"
    assert cache.hits >= hits + 5  # the first GET by id was built, the others kept
    staff(vigie_api, reference, "status", {"status": "in_progress", "comment": "Équipe en route"})
    assert statuses(get(client, "requests", **listing)) == {
        reference: "in_progress: Équipe en route"
    }
    by_id = get(client, f"requests/{reference}", fmt="xml")
    assert "<status_notes>in_progress: Équipe en route</status_notes>" in by_id.text
    staff(vigie_api, reference, "status", {"status": "resolved", "comment": "Lampe changée"})
    assert ids(get(client, "requests", **listing)) == []
    assert get(client, f"requests/{reference}").json()[0]["status"] == "closed"


def test_a_change_made_by_another_worker_is_seen_at_once(client, key, vigie_api, vigie_settings):
    first, second = create(client, key), create(client, key, lat="45.7801", long="3.0902")
    assert ids(get(client, "requests")) == [second, first]
    assert get(client, f"requests/{first}").json()[0]["status"] == "open"
    other = open_runtime(vigie_settings)  # another process's engine and connections
    try:
        with other.sessions() as session:
            session.execute(update(Ticket).where(Ticket.reference == first).values(status="closed"))
            session.commit()
    finally:
        other.close()
    assert get(client, f"requests/{first}").json()[0]["status"] == "closed"
    assert ids(get(client, "requests", status="open")) == [second]


def test_a_request_unknown_then_created_is_found(client, key, vigie_api):
    assert get(client, "requests/CLF-2026-000001").status_code == 404
    assert ids(get(client, "requests")) == []
    reference = create(client, key)
    assert reference == "CLF-2026-000001"
    assert ids(get(client, f"requests/{reference}")) == [reference]
    assert ids(get(client, "requests")) == [reference]


def test_bbox_finds_exactly_the_requests_inside_edges_included(client, vigie_api):
    """Points on a grid (some exactly on the box's edges, some moved after they were
    stored, some without a point): the listing is what a plain comparison finds."""
    rng = random.Random(311)
    runtime = vigie_api.runtime
    lons = [round(3.0800 + 0.0005 * i, 6) for i in range(12)]
    lats = [round(45.7700 + 0.0005 * i, 6) for i in range(12)]
    points: dict[str, tuple[float, float] | None] = {}
    rows = []
    for number in range(1, 121):
        reference = f"CLF-2026-{number:06d}"
        point = (rng.choice(lons), rng.choice(lats)) if number % 10 else None
        points[reference] = point
        rows.append({
            "reference": reference, "commune": "clermont-ferrand", "year": 2026,
            "number": number, "category": "eclairage", "channel": "web", "status": "new",
            "priority": "normal", "description": f"lampe {number}",
            "longitude": point[0] if point else None, "latitude": point[1] if point else None,
        })  # fmt: skip
    with runtime.sessions() as session:
        session.execute(insert(Ticket), rows)
        session.commit()
        for number in range(1, 121, 7):  # moved: the index follows
            reference = f"CLF-2026-{number:06d}"
            point = (rng.choice(lons), rng.choice(lats))
            points[reference] = point
            session.execute(
                update(Ticket)
                .where(Ticket.reference == reference)
                .values(longitude=point[0], latitude=point[1])
            )
        session.commit()
    for _ in range(15):
        min_lon, max_lon = sorted(rng.sample(lons, 2))
        min_lat, max_lat = sorted(rng.sample(lats, 2))
        expected = {
            reference
            for reference, point in points.items()
            if point and min_lon <= point[0] <= max_lon and min_lat <= point[1] <= max_lat
        }
        bbox = f"{min_lon},{min_lat},{max_lon},{max_lat}"
        found = ids(get(client, "requests", bbox=bbox))
        assert set(found) == expected, bbox
        assert found == sorted(found, reverse=True)  # newest first (created in order)
