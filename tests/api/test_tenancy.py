"""Who may do what: tokens, the communes they cover, and what each role may do or read."""

from __future__ import annotations

import pytest

from core.auth import revoke_token

TICKETS = "/api/v1/tickets"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture
def clermont_ticket(new_ticket) -> dict:
    return new_ticket(
        "clermont-ferrand",
        reporter={
            "name": "Jeanne Martin",
            "email": "jeanne@example.org",
            "phone": "+33 6 12 34 56 78",
        },
    )


@pytest.fixture
def chamalieres(vigie_api) -> dict[str, str]:
    """An admin of Chamalières only: every permission, one commune."""
    return vigie_api.headers("admin", ["chamalieres"])


# --- Communes a token covers ---------------------------------------------------------


def test_another_communes_tickets_are_not_listed(
    vigie_api, admin, new_ticket, clermont_ticket, chamalieres
):
    own = new_ticket("chamalieres")
    listed = vigie_api.client.get(TICKETS, headers=chamalieres).json()
    assert [t["reference"] for t in listed["items"]] == [own["reference"]]
    assert listed["total"] == 1
    asked = vigie_api.client.get(
        TICKETS, params={"commune": "clermont-ferrand"}, headers=chamalieres
    ).json()
    assert asked["total"] == 0
    found = vigie_api.client.get(
        TICKETS, params={"q": clermont_ticket["reference"]}, headers=chamalieres
    ).json()
    assert found["total"] == 0
    assert vigie_api.client.get(TICKETS, headers=admin).json()["total"] == 2


@pytest.mark.parametrize("key", ["id", "reference"])
def test_another_communes_ticket_is_not_found(vigie_api, clermont_ticket, chamalieres, key):
    for path in ("", "/alerts", "/attachments/1"):
        response = vigie_api.client.get(
            f"{TICKETS}/{clermont_ticket[key]}{path}", headers=chamalieres
        )
        assert response.status_code == 404, (path, response.text)
        assert "Jeanne" not in response.text and "proprete" not in response.text


def test_another_communes_ticket_cannot_be_changed(
    vigie_api, admin, clermont_ticket, chamalieres, new_ticket
):
    key = clermont_ticket["id"]
    own = new_ticket("chamalieres")
    attempts = [
        ("status", {"status": "acknowledged"}),
        ("comments", {"comment": "Vu"}),
        ("assign", {"team": "proprete-nord"}),
        ("priority", {"priority": "urgent"}),
        ("duplicate", {"duplicate_of": own["id"]}),
    ]
    for name, body in attempts:
        response = vigie_api.client.post(f"{TICKETS}/{key}/{name}", json=body, headers=chamalieres)
        assert response.status_code == 404, (name, response.text)
    upload = vigie_api.client.post(
        f"{TICKETS}/{key}/attachments",
        files={"file": ("p.png", PNG, "image/png")},
        headers=chamalieres,
    )
    assert upload.status_code == 404
    # Nor linked as the original of one of its own tickets.
    linked = vigie_api.client.post(
        f"{TICKETS}/{own['id']}/duplicate", json={"duplicate_of": key}, headers=chamalieres
    )
    assert linked.status_code == 422
    assert vigie_api.client.get(f"{TICKETS}/{key}", headers=admin).json() == clermont_ticket


def test_a_ticket_cannot_be_created_in_another_commune(vigie_api, chamalieres, ticket_body, stored):
    response = vigie_api.client.post(
        TICKETS, json=ticket_body("clermont-ferrand"), headers=chamalieres
    )
    assert response.status_code in (403, 422)
    assert "clermont-ferrand" in response.json()["detail"]
    assert stored() == (0, 0)
    assert (
        vigie_api.client.post(
            TICKETS, json=ticket_body("chamalieres"), headers=chamalieres
        ).status_code
        == 201
    )


def test_a_token_for_several_communes_sees_those(vigie_api, new_ticket):
    made = {c: new_ticket(c)["reference"] for c in ("clermont-ferrand", "chamalieres", "aubiere")}
    both = vigie_api.headers("agent", ["chamalieres", "aubiere"])
    listed = vigie_api.client.get(TICKETS, headers=both).json()
    assert {t["reference"] for t in listed["items"]} == {made["chamalieres"], made["aubiere"]}


def test_communes_lists_only_the_tokens_communes(vigie_api, chamalieres):
    assert [
        c["slug"] for c in vigie_api.client.get("/api/v1/communes", headers=chamalieres).json()
    ] == ["chamalieres"]
    everything = vigie_api.client.get("/api/v1/communes", headers=vigie_api.headers("agent")).json()
    assert {c["slug"] for c in everything} == set(vigie_api.runtime.area.communes)


def test_an_all_communes_token_sees_every_ticket(vigie_api, new_ticket):
    made = {new_ticket(c)["reference"] for c in vigie_api.runtime.area.communes}
    listed = vigie_api.client.get(TICKETS, headers=vigie_api.headers("integration")).json()
    assert {t["reference"] for t in listed["items"]} == made


# --- Tokens -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        TICKETS,
        f"{TICKETS}/1",
        "/api/v1/communes",
        f"{TICKETS}/1/alerts",
        f"{TICKETS}/1/attachments/1",
    ],
)
def test_no_token_is_401_saying_how_to_authenticate(vigie_api, new_ticket, path):
    new_ticket()
    response = vigie_api.client.get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "bearer token" in response.json()["detail"]


@pytest.mark.parametrize(
    "authorization", ["Bearer vig_not-a-token", "Basic dXNlcjpwYXNz", "Bearer", "vig_x"]
)
def test_an_unknown_or_malformed_token_is_401(vigie_api, authorization):
    response = vigie_api.client.get(TICKETS, headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_revoked_token_is_401(vigie_api, new_ticket):
    token = vigie_api.token("agent")
    headers = {"Authorization": f"Bearer {token}"}
    ticket = new_ticket()
    assert vigie_api.client.get(f"{TICKETS}/{ticket['id']}", headers=headers).status_code == 200
    with vigie_api.runtime.sessions() as session:
        assert revoke_token(session, token[:10]) >= 1
        session.commit()
    response = vigie_api.client.get(f"{TICKETS}/{ticket['id']}", headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"] == "unknown or revoked token"
    assert (
        vigie_api.client.post(
            f"{TICKETS}/{ticket['id']}/comments", json={"comment": "x"}, headers=headers
        ).status_code
        == 401
    )


# --- Roles ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "body", "permission"),
    [
        ("assign", {"team": "proprete-nord"}, "assign"),
        ("priority", {"priority": "urgent"}, "prioritise"),
        ("duplicate", {"duplicate_of": "1"}, "link"),
    ],
)
def test_an_agent_cannot_assign_prioritise_or_link(
    vigie_api, admin, new_ticket, name, body, permission
):
    new_ticket()
    ticket = new_ticket()
    response = vigie_api.client.post(
        f"{TICKETS}/{ticket['id']}/{name}", json=body, headers=vigie_api.headers("agent")
    )
    assert response.status_code == 403
    assert response.json()["detail"] == f"role agent may not {permission}"
    assert vigie_api.client.get(f"{TICKETS}/{ticket['id']}", headers=admin).json() == ticket


def test_a_supervisor_can_assign_prioritise_and_link(vigie_api, new_ticket):
    chief = vigie_api.headers("supervisor", ["clermont-ferrand"])
    original, ticket = new_ticket(), new_ticket()
    for name, body in (
        ("assign", {"team": "proprete-nord"}),
        ("priority", {"priority": "high"}),
        ("duplicate", {"duplicate_of": original["reference"]}),
    ):
        assert (
            vigie_api.client.post(
                f"{TICKETS}/{ticket['id']}/{name}", json=body, headers=chief
            ).status_code
            == 200
        )


def test_an_integration_cannot_change_status(vigie_api, admin, new_ticket):
    ticket = new_ticket()
    response = vigie_api.client.post(
        f"{TICKETS}/{ticket['id']}/status",
        json={"status": "acknowledged"},
        headers=vigie_api.headers("integration"),
    )
    assert response.status_code == 403
    assert response.json()["detail"] == "role integration may not change status"
    assert (
        vigie_api.client.get(f"{TICKETS}/{ticket['id']}", headers=admin).json()["status"] == "new"
    )


def test_an_integration_creates_reads_and_comments(vigie_api, ticket_body):
    other_system = vigie_api.headers("integration", ["clermont-ferrand"])
    created = vigie_api.client.post(TICKETS, json=ticket_body(), headers=other_system)
    assert created.status_code == 201
    key = created.json()["id"]
    assert vigie_api.client.get(f"{TICKETS}/{key}", headers=other_system).status_code == 200
    commented = vigie_api.client.post(
        f"{TICKETS}/{key}/comments", json={"comment": "Vu"}, headers=other_system
    )
    assert commented.json()["history"][-1]["actor"] == "integration:test-integration"


def test_personal_data_is_hidden_from_integrations(vigie_api, clermont_ticket):
    other_system = vigie_api.headers("integration")
    key = clermont_ticket["id"]
    for body in (
        vigie_api.client.get(f"{TICKETS}/{key}", headers=other_system).json(),
        vigie_api.client.get(TICKETS, headers=other_system).json()["items"][0],
    ):
        assert body["reporter"] is None
        assert all(r["reporter"] is None for r in body.get("reports", []))
    text = vigie_api.client.get(f"{TICKETS}/{key}", headers=other_system).text
    text += vigie_api.client.get(TICKETS, headers=other_system).text
    for personal in ("Jeanne", "jeanne@example.org", "12 34 56"):
        assert personal not in text
    # An integration that creates a ticket does not get the personal data back either.
    again = vigie_api.client.post(
        TICKETS,
        json={
            "commune": "chamalieres",
            "category": "autre",
            "description": "Appel relayé",
            "address": "Mairie",
            "answers": {"precision": "x"},
            "reporter": {"name": "Paul Durand", "phone": "0612345678"},
        },
        headers=other_system,
    )
    assert (
        again.status_code == 201 and "Durand" not in again.text and "0612345678" not in again.text
    )


@pytest.mark.parametrize("role", ["agent", "supervisor", "admin"])
def test_staff_see_the_reporter(vigie_api, clermont_ticket, role):
    body = vigie_api.client.get(
        f"{TICKETS}/{clermont_ticket['id']}", headers=vigie_api.headers(role)
    ).json()
    assert body["reporter"] == {
        "name": "Jeanne Martin",
        "email": "jeanne@example.org",
        "phone": "+33 6 12 34 56 78",
        "notify_by": None,
    }
    assert body["reports"][0]["reporter"]["email"] == "jeanne@example.org"
