"""/api/v1/devices: listing with filters and tenancy, importing CSV and GeoJSON
(admins only, all or nothing), unregistered devices for all-commune staff."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEVICES = REPO / "config" / "devices"
HEADER = "device_id,dev_eui,kind,commune,latitude,longitude,address,asset,tags\n"


@pytest.fixture(autouse=True)
def telemetry(monkeypatch) -> list:
    """Readings handed to telemetry, kept here: the example config's time-series
    plugin must not be written to (nor left with buffered points) by these tests."""
    handed: list = []
    monkeypatch.setattr(
        "core.ingest.pipeline.store_readings", lambda runtime, readings: handed.extend(readings)
    )
    return handed


@pytest.fixture
def admin(vigie_api) -> dict[str, str]:
    return vigie_api.headers("admin")


@pytest.fixture
def demo_registry(vigie_api, admin) -> None:
    for name, content_type in (
        ("clermont-ferrand.csv", "text/csv"),
        ("aubiere.csv", "text/csv"),
        ("chamalieres.geojson", "application/geo+json"),
    ):
        response = vigie_api.client.post(
            "/api/v1/devices/import",
            content=(DEVICES / name).read_bytes(),
            headers={**admin, "Content-Type": content_type},
        )
        assert response.status_code == 200, response.text


def test_import_csv_body_then_update(vigie_api, admin):
    body = HEADER + "m-1,70B3D5E75E000001,water_meter,aubiere,45.75,3.11,1 rue A,PDL-1,sector=sud\n"
    response = vigie_api.client.post(
        "/api/v1/devices/import", content=body, headers={**admin, "Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"created": 1, "updated": 0}
    device = vigie_api.client.get("/api/v1/devices/m-1", headers=admin).json()
    assert device["dev_eui"] == "70b3d5e75e000001"
    assert device["tags"] == {"sector": "sud"}
    assert device["last_seen_at"] is None
    response = vigie_api.client.post(
        "/api/v1/devices/import",
        content=body.replace("1 rue A", "3 rue B"),
        headers={**admin, "Content-Type": "text/csv"},
    )
    assert response.json() == {"created": 0, "updated": 1}
    assert vigie_api.client.get("/api/v1/devices/m-1", headers=admin).json()["address"] == "3 rue B"


def test_import_geojson_upload(vigie_api, admin):
    response = vigie_api.client.post(
        "/api/v1/devices/import",
        files={"file": ("chamalieres.geojson", (DEVICES / "chamalieres.geojson").read_bytes())},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 13
    bay = vigie_api.client.get("/api/v1/devices/PK-CHAM-0031", headers=admin).json()
    assert (bay["latitude"], bay["longitude"]) == (45.77428, 3.06698)
    assert bay["asset"] == "CHAM-GAMBETTA-31"


def test_a_bad_file_lists_every_problem_and_imports_nothing(vigie_api, admin):
    body = HEADER + "ok,,streetlight,aubiere,,,,,\nx,zz,lamp,aubiere,,,,,\n"
    response = vigie_api.client.post(
        "/api/v1/devices/import",
        files={"file": ("lamps.csv", body.encode())},
        headers=admin,
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "lamps.csv:line 3: kind", "reason": "unknown kind 'lamp'; kinds: water_meter, "
         "streetlight, parking_spot"},
        {"field": "lamps.csv:line 3: dev_eui", "reason": "'zz' is not 16 hex digits"},
    ]  # fmt: skip
    assert vigie_api.client.get("/api/v1/devices", headers=admin).json()["total"] == 0


def test_only_admins_import_and_only_into_their_communes(vigie_api):
    body = HEADER + "m-1,,water_meter,aubiere,,,,,\n"
    for role in ("agent", "supervisor", "integration"):
        response = vigie_api.client.post(
            "/api/v1/devices/import",
            content=body,
            headers={**vigie_api.headers(role), "Content-Type": "text/csv"},
        )
        assert response.status_code == 403, role
    scoped = {**vigie_api.headers("admin", ["chamalieres"]), "Content-Type": "text/csv"}
    response = vigie_api.client.post("/api/v1/devices/import", content=body, headers=scoped)
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "body.csv:line 2: commune", "reason": "your token does not cover aubiere"}
    ]


def test_list_filters_and_tenancy(vigie_api, admin, demo_registry):
    client = vigie_api.client
    everything = client.get("/api/v1/devices", params={"page_size": 500}, headers=admin).json()
    assert everything["total"] == len(everything["items"]) >= 70
    lamps = client.get(
        "/api/v1/devices", params={"asset": "ARM-CLF-112/C2", "page_size": 100}, headers=admin
    ).json()
    assert lamps["total"] == 24 and {d["kind"] for d in lamps["items"]} == {"streetlight"}
    meters = client.get(
        "/api/v1/devices",
        params={"kind": "water_meter", "commune": ["aubiere", "chamalieres"], "page_size": 100},
        headers=admin,
    ).json()
    assert {d["commune"] for d in meters["items"]} == {"aubiere", "chamalieres"}
    found = client.get("/api/v1/devices", params={"q": "Gambetta"}, headers=admin).json()
    assert {d["device_id"] for d in found["items"]} >= {"PK-CHAM-0031", "PK-CHAM-0032"}

    chamalieres = vigie_api.headers("agent", ["chamalieres"])
    theirs = client.get("/api/v1/devices", params={"page_size": 100}, headers=chamalieres).json()
    assert theirs["total"] == 13 and {d["commune"] for d in theirs["items"]} == {"chamalieres"}
    assert client.get("/api/v1/devices/SL-CLF-04412", headers=chamalieres).status_code == 404
    assert client.get("/api/v1/devices/PK-CHAM-0031", headers=chamalieres).status_code == 200
    paged = client.get("/api/v1/devices", params={"page": 2, "page_size": 5}, headers=admin).json()
    assert len(paged["items"]) == 5 and paged["page"] == 2


def test_unregistered_devices_are_for_all_commune_admins_and_supervisors(vigie_api, admin):
    from core.ingest.pipeline import IngestPipeline, RawMessage

    at = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    body = {"deviceInfo": {"deviceName": "mystery", "devEui": "0011223344556677"}, "object": {}}
    message = RawMessage(
        "application/x/device/0011223344556677/event/up", json.dumps(body).encode(), at
    )
    IngestPipeline(vigie_api.runtime).process_batch([message])
    client = vigie_api.client
    listed = client.get("/api/v1/devices/unregistered", headers=vigie_api.headers("supervisor"))
    assert listed.status_code == 200
    [device] = listed.json()["items"]
    assert (device["device_id"], device["dev_eui"], device["network"]) == (
        "mystery", "0011223344556677", "chirpstack-v4",
    )  # fmt: skip
    assert device["first_seen_at"].startswith("2026-11-24T09:00:00")
    for role, communes in (("agent", ["all"]), ("supervisor", ["aubiere"]), ("admin", ["aubiere"])):
        response = client.get(
            "/api/v1/devices/unregistered", headers=vigie_api.headers(role, communes)
        )
        assert response.status_code == 403, (role, communes)
