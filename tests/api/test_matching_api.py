"""Staff API: "already reported?" before typing a call in, a caller's report on an
existing ticket, merging two tickets, and the cap on request bodies."""

from __future__ import annotations

from core.db.sensor_models import Device

CLF = "clermont-ferrand"
JAUDE = {"latitude": 45.7772, "longitude": 3.0830}
NEAR_JAUDE = {"latitude": 45.7774, "longitude": 3.0830}  # 22 m north
CALLER = {"name": "Bruno Second", "phone": "06 11 22 33 44", "notify_by": "sms"}


def similar(vigie_api, headers, **params):
    query = {"commune": CLF, "category": "proprete", **params}
    return vigie_api.client.get("/api/v1/tickets/similar", params=query, headers=headers)


def test_an_agent_sees_the_ticket_already_reported_nearby(vigie_api, new_ticket):
    first = new_ticket(**JAUDE)
    agent = vigie_api.headers("agent", [CLF])
    response = similar(vigie_api, agent, **NEAR_JAUDE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["radius_m"] == 50
    (item,) = body["items"]
    assert item["ticket"]["reference"] == first["reference"]
    assert item["distance_m"] == 22 and item["same_asset"] is False
    # Elsewhere, or in another category, nothing to follow.
    assert similar(vigie_api, agent, latitude=45.78, longitude=3.09).json()["items"] == []
    assert similar(vigie_api, agent, category="voirie", **NEAR_JAUDE).json()["items"] == []


def test_similar_respects_tenancy_and_checks_its_parameters(vigie_api, new_ticket):
    new_ticket(**JAUDE)
    other = vigie_api.headers("agent", ["chamalieres"])
    assert similar(vigie_api, other, **JAUDE).status_code == 422
    admin = vigie_api.headers()
    missing = similar(vigie_api, admin)
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "latitude"
    half = similar(vigie_api, admin, latitude=45.7772)
    assert half.json()["errors"][0]["field"] == "longitude"
    assert similar(vigie_api, admin, category="nope", **JAUDE).status_code == 422
    assert similar(vigie_api, {}, **JAUDE).status_code == 401


def test_a_sensor_ticket_on_the_asset_is_offered(vigie_api, ticket_body):
    from datetime import UTC, datetime

    from core.intake import accept_signal
    from core.signals import Alert, Location

    runtime = vigie_api.runtime
    with runtime.sessions() as session:
        session.add(
            Device(device_id="SL-CLF-04410", kind="streetlight", commune=CLF,
                   latitude=45.7754, longitude=3.0819, asset="ARM-CLF-112/C2")
        )  # fmt: skip
        alert = Alert(
            device_id="SL-CLF-04401", condition="lamp_failure", observed_at=datetime.now(UTC),
            commune=CLF, location=Location(45.77162, 3.08028), asset="ARM-CLF-112/C2",
            device_kind="streetlight", connector="lighting",
        )  # fmt: skip
        sensor = accept_signal(runtime, session, alert, "sensor:test").ticket
        session.commit()
    agent = vigie_api.headers("agent")
    by_device = similar(
        vigie_api, agent, category="eclairage", latitude=45.7755, longitude=3.0819
    ).json()["items"]
    assert [(i["ticket"]["reference"], i["same_asset"]) for i in by_device] == [
        (sensor.reference, True)
    ]
    named = similar(vigie_api, agent, category="voirie", asset="ARM-CLF-112/C2").json()["items"]
    assert [i["ticket"]["reference"] for i in named] == [sensor.reference]


def test_a_callers_report_joins_the_ticket(vigie_api, new_ticket, stored):
    first = new_ticket(**JAUDE, reporter={"name": "Alice Premier", "email": "alice@example.org"})
    agent = vigie_api.headers("agent", [CLF])
    body = {
        "description": "Toujours des papiers devant la fontaine",
        "channel": "phone",
        "answers": {"nature": "detritus"},
        "reporter": CALLER,
    }
    before = stored()
    response = vigie_api.client.post(
        f"/api/v1/tickets/{first['reference']}/reports", json=body,
        headers={**agent, "Idempotency-Key": "call-1"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    ticket = response.json()
    assert ticket["id"] == first["id"] and ticket["report_count"] == 2
    assert [r["reporter"]["name"] for r in ticket["reports"]] == ["Alice Premier", "Bruno Second"]
    (event,) = [e for e in ticket["history"] if e["action"] == "report_attached"]
    assert event["changes"] == {"channel": "phone", "reports": [1, 2]}
    assert event["actor"].startswith("agent:")
    assert stored() == (before[0], before[1] + 1)
    # The same call sent again: the same answer, nothing more stored.
    again = vigie_api.client.post(
        f"/api/v1/tickets/{first['id']}/reports", json=body,
        headers={**agent, "Idempotency-Key": "call-1"},
    )  # fmt: skip
    assert again.status_code == 200 and again.json()["report_count"] == 2
    assert stored() == (before[0], before[1] + 1)


def test_a_report_is_checked_against_the_tickets_category_and_state(
    vigie_api, new_ticket, set_status, stored
):
    first = new_ticket(**JAUDE)
    agent = vigie_api.headers("agent")
    url = f"/api/v1/tickets/{first['id']}/reports"
    before = stored()
    wrong = vigie_api.client.post(
        url, json={"description": "encore", "answers": {"nature": "nid"}}, headers=agent
    )
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "answers.nature"
    set_status(first["id"], "resolved")
    closed = vigie_api.client.post(
        url, json={"description": "encore", "answers": {"nature": "detritus"}}, headers=agent
    )
    assert closed.status_code == 409 and "resolved" in closed.json()["detail"]
    other = vigie_api.headers("agent", ["chamalieres"])
    hidden = vigie_api.client.post(url, json={"description": "encore"}, headers=other)
    assert hidden.status_code == 404
    reader = vigie_api.headers("integration")
    assert vigie_api.client.get(f"/api/v1/tickets/{first['id']}", headers=reader).status_code == 200
    assert stored() == (before[0], before[1])


def test_a_supervisor_merges_and_the_reports_move(vigie_api, new_ticket):
    kept = new_ticket(**JAUDE, reporter={"name": "Alice Premier"})
    copy = new_ticket(**NEAR_JAUDE, reporter={"name": "Bruno Second"})
    agent = vigie_api.headers("agent")
    refused = vigie_api.client.post(
        f"/api/v1/tickets/{copy['id']}/merge", json={"into": kept["reference"]}, headers=agent
    )
    assert refused.status_code == 403
    supervisor = vigie_api.headers("supervisor")
    response = vigie_api.client.post(
        f"/api/v1/tickets/{copy['reference']}/merge",
        json={"into": kept["id"], "comment": "même dépôt"}, headers=supervisor,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    merged_into = response.json()
    assert merged_into["reference"] == kept["reference"]
    assert [r["reporter"]["name"] for r in merged_into["reports"]] == [
        "Alice Premier", "Bruno Second",
    ]  # fmt: skip
    actions = [e["action"] for e in merged_into["history"]]
    assert "merged" in actions and "linked" in actions
    source = vigie_api.client.get(f"/api/v1/tickets/{copy['id']}", headers=supervisor).json()
    assert source["status"] == "duplicate" and source["duplicate_of"] == kept["reference"]
    assert source["report_count"] == 0
    (event,) = [e for e in source["history"] if e["action"] == "merged"]
    assert event["changes"]["merged_into"] == [None, kept["reference"]]
    unknown = vigie_api.client.post(
        f"/api/v1/tickets/{kept['id']}/merge", json={"into": "CLF-2026-999999"},
        headers=supervisor,
    )  # fmt: skip
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "into"


def test_a_ticket_key_named_similar_is_not_swallowed(vigie_api):
    # GET /tickets/{key} still answers 404 for keys that are not tickets.
    response = vigie_api.client.get("/api/v1/tickets/similar-x", headers=vigie_api.headers())
    assert response.status_code == 404


# --- Body cap --------------------------------------------------------------------------


def test_an_oversized_json_body_is_refused_with_413_and_nothing_stored(
    vigie_api, ticket_body, stored
):
    admin = vigie_api.headers()
    body = ticket_body(description="x" * 4000, answers={"nature": "detritus" * 40_000})
    before = stored()
    response = vigie_api.client.post("/api/v1/tickets", json=body, headers=admin)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert "too large" in response.json()["detail"]
    assert stored() == before


def test_a_chunked_body_over_the_cap_is_refused_too(vigie_api, ticket_body, stored):
    import json

    admin = vigie_api.headers()
    payload = json.dumps(ticket_body(answers={"nature": "y" * 400_000})).encode()

    def chunks():
        for start in range(0, len(payload), 16_384):
            yield payload[start : start + 16_384]

    before = stored()
    response = vigie_api.client.post(
        "/api/v1/tickets", content=chunks(),
        headers={**admin, "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 413
    assert stored() == before
    # A normal body still goes through.
    ok = vigie_api.client.post("/api/v1/tickets", json=ticket_body(), headers=admin)
    assert ok.status_code == 201
