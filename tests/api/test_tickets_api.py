"""POST /api/v1/tickets (staff intake) and GET /api/v1/tickets (search).

On SQLite and PostgreSQL (``vigie_api`` runs each test on both).
"""

from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from core import hookimpl
from core.db.models import Ticket
from core.intake import accept_signal
from core.signals import Alert, Location, Report, Signal, TicketDraft

YEAR = datetime.now(UTC).year
TICKETS = "/api/v1/tickets"


def post(vigie_api, body, headers, **kwargs):
    return vigie_api.client.post(TICKETS, json=body, headers=headers, **kwargs)


def search(vigie_api, headers, **params) -> dict:
    response = vigie_api.client.get(TICKETS, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def references(page: dict) -> set[str]:
    return {item["reference"] for item in page["items"]}


# --- Creating a ticket ----------------------------------------------------------


def test_create_answers_201_with_the_stored_ticket(vigie_api, admin, ticket_body, stored):
    body = ticket_body(
        latitude=45.7772,
        longitude=3.0870,
        channel="counter",
        reporter={"name": "Jeanne Martin", "email": "jeanne@example.org", "notify_by": "email"},
    )
    response = post(vigie_api, body, admin)
    assert response.status_code == 201, response.text
    ticket = response.json()
    assert ticket["reference"] == f"CLF-{YEAR}-000001"
    assert response.headers["Location"] == f"/api/v1/tickets/{ticket['id']}"
    assert ticket["status"] == "new"
    assert ticket["channel"] == "counter"
    assert ticket["priority"] == "normal"  # the category's
    assert ticket["location"] == {
        "latitude": 45.7772,
        "longitude": 3.087,
        "address": "12 place de Jaude",
    }
    assert ticket["answers"] == {"nature": "detritus"}
    assert ticket["reporter"]["email"] == "jeanne@example.org"
    assert ticket["report_count"] == 1 and len(ticket["reports"]) == 1
    assert [e["action"] for e in ticket["history"]][0] == "created"
    assert ticket["history"][0]["actor"] == "admin:test-admin"
    # Committed before the answer: another session sees it.
    assert stored() == (1, 1)
    with vigie_api.runtime.sessions() as session:
        row = session.get(Ticket, ticket["id"])
        assert (row.reference, row.description, row.team) == (
            ticket["reference"],
            "Des papiers partout sur le trottoir",
            "proprete-centre",
        )
        assert row.reports[0].reporter_name == "Jeanne Martin"


def test_the_location_header_leads_to_the_ticket(vigie_api, admin, new_ticket):
    created = vigie_api.client.post(
        TICKETS,
        json={
            "commune": "chamalieres",
            "category": "autre",
            "description": "Question sur le marché",
            "address": "Place de Geôde",
            "answers": {"precision": "Horaires du marché"},
        },
        headers=admin,
    )
    again = vigie_api.client.get(created.headers["Location"], headers=admin)
    assert again.status_code == 200
    assert again.json()["reference"] == created.json()["reference"] == f"CHA-{YEAR}-000001"
    by_reference = vigie_api.client.get(
        f"{TICKETS}/{created.json()['reference'].lower()}", headers=admin
    )
    assert by_reference.json()["id"] == created.json()["id"]


def test_references_are_increasing_and_separate_per_commune(vigie_api, new_ticket):
    made = [
        new_ticket(commune)
        for commune in (
            "clermont-ferrand",
            "chamalieres",
            "clermont-ferrand",
            "aubiere",
            "clermont-ferrand",
        )
    ]
    assert [t["reference"] for t in made] == [
        f"CLF-{YEAR}-000001",
        f"CHA-{YEAR}-000001",
        f"CLF-{YEAR}-000002",
        f"AUB-{YEAR}-000001",
        f"CLF-{YEAR}-000003",
    ]
    assert all(re.fullmatch(r"[A-Z]{3}-\d{4}-\d{6}", t["reference"]) for t in made)


def test_references_stay_unique_when_desks_create_at_the_same_time(vigie_api):
    runtime = vigie_api.runtime
    report = Report(
        commune="clermont-ferrand",
        category="autre",
        description="Appel simultané",
        channel="phone",
        location=Location(address="Mairie"),
        answers={"precision": "Renseignement"},
    )

    def create(_: int) -> str:
        with runtime.sessions() as session:
            reference = accept_signal(runtime, session, report, "agent:standard").ticket.reference
            session.commit()
            return reference

    with ThreadPoolExecutor(max_workers=6) as pool:
        made = list(pool.map(create, range(18)))
    assert sorted(made) == [f"CLF-{YEAR}-{n:06d}" for n in range(1, 19)]


def test_a_ticket_is_routed_to_its_category_team(vigie_api, new_ticket):
    assert new_ticket("clermont-ferrand", "encombrants")["team"] == "collecte-encombrants"
    assert new_ticket("chamalieres", "proprete")["team"] == "proprete-ouest"
    routed = new_ticket("clermont-ferrand", "voirie")
    assert routed["team"] == "voirie-centre"
    assert {
        "actor": "plugin:routing",
        "action": "routed",
        "changes": {"team": [None, "voirie-centre"]},
    }.items() <= next(e for e in routed["history"] if e["action"] == "routed").items()
    # Aubière does not enable routing: its front desk dispatches by hand.
    assert new_ticket("aubiere", "proprete")["team"] is None


def test_a_category_handled_outside_is_redirected_at_once(vigie_api, new_ticket):
    ticket = new_ticket("clermont-ferrand", "reseau-electrique")
    assert ticket["status"] == "redirected"
    assert ticket["outside_body"] == "Enedis"


def test_due_date_only_where_the_commune_enables_sla(vigie_api, new_ticket):
    for commune in ("clermont-ferrand", "aubiere", "royat", "cournon-d-auvergne"):
        ticket = new_ticket(commune)
        due = datetime.fromisoformat(ticket["due_at"])
        assert due > datetime.fromisoformat(ticket["created_at"]), commune
        assert any(e["action"] == "due_date_set" for e in ticket["history"]), commune
    for commune in ("beaumont", "chamalieres"):
        ticket = new_ticket(commune)
        assert ticket["due_at"] is None, commune
        assert not any(e["action"] == "due_date_set" for e in ticket["history"]), commune


def test_same_idempotency_key_gives_one_ticket(vigie_api, admin, ticket_body, stored):
    headers = {**admin, "Idempotency-Key": "appel-0042"}
    first = post(vigie_api, ticket_body(), headers)
    second = post(vigie_api, ticket_body(description="Le même appel, renvoyé"), headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["reference"] == first.json()["reference"]
    assert second.headers["Location"] == first.headers["Location"]
    assert stored() == (1, 1)
    other = post(vigie_api, ticket_body(), {**admin, "Idempotency-Key": "appel-0043"})
    assert other.status_code == 201 and other.json()["reference"] != first.json()["reference"]


def test_a_long_idempotency_key_is_accepted(vigie_api, admin, ticket_body):
    headers = {**admin, "Idempotency-Key": "k" * 200}
    assert post(vigie_api, ticket_body(), headers).status_code == 201
    assert post(vigie_api, ticket_body(), headers).status_code == 200


def test_an_idempotency_key_does_not_cross_communes(vigie_api, ticket_body, stored):
    # Two desks whose tokens happen to share a name and a retry key.
    clermont = {**vigie_api.headers("agent", ["clermont-ferrand"]), "Idempotency-Key": "1"}
    chamalieres = {**vigie_api.headers("agent", ["chamalieres"]), "Idempotency-Key": "1"}
    first = post(vigie_api, ticket_body("clermont-ferrand"), clermont)
    second = post(vigie_api, ticket_body("chamalieres"), chamalieres)
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json()["commune"] == "chamalieres"
    assert stored() == (2, 2)


_PAPIERS = {"nature": "detritus"}


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"category": None}, "category", ["Field required"]),
        (
            {"category": "nids"},
            "category",
            ["'nids' is not a category", "proprete", "voirie-nid-de-poule"],
        ),
        ({"commune": "vichy"}, "commune", ["unknown", "clermont-ferrand", "chamalieres"]),
        ({"commune": None}, "commune", ["Field required"]),
        ({"description": None}, "description", ["Field required"]),
        ({"description": "x"}, "description", ["at least 3 characters"]),
        ({"description": "      "}, "description", ["at least 3 characters"]),
        ({"latitude": 45.77}, "longitude", ["latitude and longitude"]),
        ({"longitude": 3.08}, "latitude", ["latitude and longitude"]),
        ({"latitude": 95.0, "longitude": 3.08}, "latitude", ["less than or equal to 90"]),
        ({"address": None}, "body", ["location"]),
        ({"address": "    "}, "body", ["location"]),
        ({"reporter": {"email": "jeanne-at-example"}}, "reporter.email", ["email"]),
        (
            {"reporter": {"notify_by": "sms", "email": "j@example.org"}},
            "reporter.phone",
            ["SMS", "sms"],
        ),
        ({"reporter": {"notify_by": "email"}}, "reporter.email", ["email"]),
        ({"reporter": {"phone": "appelez-moi"}}, "reporter.phone", ["pattern"]),
        ({"priority": "critique"}, "priority", ["low", "urgent"]),
        ({"channel": "pigeon"}, "channel", ["phone"]),
        ({"colour": "red"}, "colour", ["Extra inputs"]),
        ({"answers": {}}, "answers.nature", ["required"]),
        (
            {"answers": {**_PAPIERS, "couleur": "vert"}},
            "answers.couleur",
            ["not a question of proprete"],
        ),
        ({"answers": {"nature": "pneus"}}, "answers.nature", ["'pneus' is not one of", "detritus"]),
        (
            {"category": "eclairage", "answers": {"nombre_points": "trois", "etat": "eteint"}},
            "answers.nombre_points",
            ["expected a whole number", "'trois'"],
        ),
        (
            {"category": "eau-assainissement", "answers": {"nature": "odeur", "danger": "bof"}},
            "answers.danger",
            ["expected true or false"],
        ),
    ],
)
def test_invalid_ticket_is_refused_naming_field_and_reason_and_nothing_is_stored(
    vigie_api, admin, ticket_body, stored, change, field, words
):
    body = ticket_body()
    body.update(change)
    body = {key: value for key, value in body.items() if value is not None}
    response = post(vigie_api, body, admin)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert field in [e["field"] for e in payload["errors"]], payload
    reason = next(e["reason"] for e in payload["errors"] if e["field"] == field)
    for word in words:
        assert word in reason, (word, reason)
        assert word in payload["detail"]
    assert "Traceback" not in response.text
    assert stored() == (0, 0)


def test_reasons_read_as_written_for_the_caller(vigie_api, admin, ticket_body):
    response = post(vigie_api, ticket_body(latitude=45.77), admin)
    assert response.json()["errors"] == [
        {"field": "longitude", "reason": "give both latitude and longitude, or neither"}
    ]


def test_every_problem_is_named_at_once(vigie_api, admin, ticket_body):
    body = ticket_body(category="eclairage", answers={"nombre_points": "trois"})
    fields = {e["field"] for e in post(vigie_api, body, admin).json()["errors"]}
    assert fields == {"answers.nombre_points", "answers.etat"}


def test_answers_are_stored_with_their_types(vigie_api, new_ticket):
    ticket = new_ticket(
        "clermont-ferrand",
        "eclairage",
        answers={"nombre_points": "3", "etat": "clignote", "numero_candelabre": "  L-1024 "},
    )
    assert ticket["answers"] == {
        "nombre_points": 3,
        "etat": "clignote",
        "numero_candelabre": "L-1024",
    }


def test_a_ticket_needs_a_valid_token_to_be_created(vigie_api, ticket_body, stored):
    assert post(vigie_api, ticket_body(), {}).status_code == 401
    assert post(vigie_api, ticket_body(), {"Authorization": "Bearer vig_nope"}).status_code == 401
    assert stored() == (0, 0)


# --- Reading one ticket ----------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["999", "CLF-2026-999999", "pas-un-ticket", "99999999999999999999", "²", "0"]
)
def test_an_unknown_ticket_is_404(vigie_api, admin, new_ticket, key):
    new_ticket()
    response = vigie_api.client.get(f"{TICKETS}/{key}", headers=admin)
    assert response.status_code == 404, response.text
    assert "no ticket" in response.json()["detail"]


# --- Searching ----------------------------------------------------------------------


@pytest.fixture
def some_tickets(vigie_api, admin, new_ticket, set_status) -> dict[str, dict]:
    made = {
        "jaude": new_ticket(
            "clermont-ferrand",
            "proprete",
            description="Papiers devant la fontaine",
            address="Place de Jaude",
            latitude=45.7772,
            longitude=3.0826,
        ),
        "montferrand": new_ticket(
            "clermont-ferrand",
            "voirie",
            description="Nid-de-poule dangereux",
            channel="counter",
            address="Rue de la Rodade",
            latitude=45.7930,
            longitude=3.1135,
        ),
        "chamalieres": new_ticket(
            "chamalieres",
            "proprete",
            description="Corbeille pleine",
            channel="email",
            address="Avenue de Royat",
            latitude=45.7740,
            longitude=3.0650,
        ),
        "aubiere": new_ticket(
            "aubiere",
            "autre",
            description="Question sur les papiers d'identité",
            address="Rue Cohendy",
        ),
    }
    assert set_status(made["montferrand"]["id"], "acknowledged").status_code == 200
    return made


def test_search_by_commune_status_category_channel_team(vigie_api, admin, some_tickets):
    t = some_tickets
    refs = {name: ticket["reference"] for name, ticket in t.items()}
    assert search(vigie_api, admin)["total"] == 4
    assert references(search(vigie_api, admin, commune="chamalieres")) == {refs["chamalieres"]}
    assert references(search(vigie_api, admin, commune=["chamalieres", "aubiere"])) == {
        refs["chamalieres"],
        refs["aubiere"],
    }
    assert references(search(vigie_api, admin, status="acknowledged")) == {refs["montferrand"]}
    assert len(references(search(vigie_api, admin, status="new"))) == 3
    assert references(search(vigie_api, admin, category="voirie")) == {refs["montferrand"]}
    assert references(search(vigie_api, admin, channel="email")) == {refs["chamalieres"]}
    assert references(search(vigie_api, admin, channel=["email", "counter"])) == {
        refs["chamalieres"],
        refs["montferrand"],
    }
    assert references(search(vigie_api, admin, team="proprete-centre")) == {refs["jaude"]}
    assert (
        search(vigie_api, admin, commune="clermont-ferrand", category="proprete", status="closed")[
            "total"
        ]
        == 0
    )


def test_search_text_in_description_address_or_reference(vigie_api, admin, some_tickets):
    t = some_tickets
    assert references(search(vigie_api, admin, q="papiers")) == {
        t["jaude"]["reference"],
        t["aubiere"]["reference"],
    }
    assert references(search(vigie_api, admin, q="RODADE")) == {t["montferrand"]["reference"]}
    assert references(search(vigie_api, admin, q=t["chamalieres"]["reference"].lower())) == {
        t["chamalieres"]["reference"]
    }
    # Wildcards are text like any other.
    assert search(vigie_api, admin, q="%")["total"] == 0
    assert search(vigie_api, admin, q="_")["total"] == 0


def test_search_in_a_bounding_box(vigie_api, admin, some_tickets):
    t = some_tickets
    centre = search(vigie_api, admin, bbox="3.07,45.77,3.09,45.78")
    assert references(centre) == {t["jaude"]["reference"]}
    west = search(vigie_api, admin, bbox="3.0,45.7,3.09,45.8")
    assert references(west) == {t["jaude"]["reference"], t["chamalieres"]["reference"]}


@pytest.mark.parametrize("bbox", ["3.07,45.77,3.09", "a,b,c,d", "3.09,45.77,3.07,45.78", ""])
def test_a_bad_bounding_box_is_refused_naming_bbox(vigie_api, admin, bbox):
    response = vigie_api.client.get(TICKETS, params={"bbox": bbox}, headers=admin)
    if bbox == "":
        assert response.status_code == 200  # no filter
        return
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "bbox"
    assert "min_lon" in response.json()["detail"] or "max" in response.json()["detail"]


def test_search_by_creation_time(vigie_api, admin, new_ticket):
    first, second, third = new_ticket(), new_ticket(), new_ticket()
    after = search(vigie_api, admin, created_after=second["created_at"])
    assert references(after) == {second["reference"], third["reference"]}
    before = search(vigie_api, admin, created_before=second["created_at"])
    assert references(before) == {first["reference"]}
    window = search(
        vigie_api, admin, created_after=first["created_at"], created_before=third["created_at"]
    )
    assert references(window) == {first["reference"], second["reference"]}
    # Another zone, same instant.
    paris = (
        datetime.fromisoformat(second["created_at"])
        .astimezone(timezone(timedelta(hours=1)))
        .isoformat()
    )
    assert references(search(vigie_api, admin, created_after=paris)) == {
        second["reference"],
        third["reference"],
    }
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert search(vigie_api, admin, created_after=tomorrow)["total"] == 0


@pytest.mark.parametrize("name", ["created_after", "created_before"])
def test_a_time_without_zone_is_refused(vigie_api, admin, name):
    response = vigie_api.client.get(TICKETS, params={name: "2026-11-25T08:00:00"}, headers=admin)
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": name, "reason": "give a time zone, e.g. 2026-11-25T08:00:00+01:00 or ...Z"}
    ]


def test_pages(vigie_api, admin, new_ticket):
    made = [new_ticket()["reference"] for _ in range(5)]
    pages = [search(vigie_api, admin, page=n, page_size=2) for n in (1, 2, 3, 4)]
    assert [p["total"] for p in pages] == [5, 5, 5, 5]
    assert [len(p["items"]) for p in pages] == [2, 2, 1, 0]
    assert [p["page"] for p in pages] == [1, 2, 3, 4] and {p["page_size"] for p in pages} == {2}
    listed = [item["reference"] for p in pages for item in p["items"]]
    assert listed == list(reversed(made)), "newest first, each once"


def test_page_size_defaults_and_is_clamped(vigie_api, admin, new_ticket):
    new_ticket()
    settings = vigie_api.runtime.settings.api
    assert search(vigie_api, admin)["page_size"] == settings.default_page_size
    assert search(vigie_api, admin, page_size=100_000)["page_size"] == settings.max_page_size


@pytest.mark.parametrize(
    ("name", "value"), [("page", 0), ("page_size", 0), ("page", 10**18), ("page", "un")]
)
def test_bad_paging_is_refused_naming_the_parameter(vigie_api, admin, name, value):
    response = vigie_api.client.get(TICKETS, params={name: value}, headers=admin)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == name


# --- Tickets opened by sensor alerts ---------------------------------------------------


class AlertDrafts:
    """A connector's drafting: a lamp failure becomes a street-lighting ticket."""

    name = "alert_drafts"

    @hookimpl
    def draft_ticket(self, signal: Signal, commune) -> TicketDraft | None:
        if not isinstance(signal, Alert):
            return None
        return TicketDraft(
            commune=commune.slug,
            category="eclairage",
            channel="sensor",
            description=f"{signal.condition} signalé par {signal.device_id}",
            location=signal.location,
        )


class TestSearchByDevice:
    @pytest.fixture
    def vigie_plugins(self):
        return (AlertDrafts(),)

    @pytest.fixture
    def vigie_config_dir(self, tmp_path: Path) -> Path:
        config = shutil.copytree(
            Path(__file__).resolve().parents[2] / "config", tmp_path / "config"
        )
        with (config / "communes" / "clermont-ferrand.toml").open("a", encoding="utf-8") as file:
            file.write("\n[plugins.alert_drafts]\n")
        return config

    def alert(self, runtime, device_id: str) -> str:
        with runtime.sessions() as session:
            result = accept_signal(
                runtime,
                session,
                Alert(
                    device_id=device_id,
                    condition="lamp_failure",
                    observed_at=datetime.now(UTC),
                    commune="clermont-ferrand",
                    location=Location(45.7772, 3.0826),
                    device_kind="lamp",
                ),
                "connector:test",
            )
            session.commit()
            return result.ticket.reference

    def test_search_by_device(self, vigie_api, admin, new_ticket):
        lamp = self.alert(vigie_api.runtime, "lamp-0042")
        other = self.alert(vigie_api.runtime, "lamp-0043")
        new_ticket()
        found = search(vigie_api, admin, device_id="lamp-0042")
        assert references(found) == {lamp}
        assert found["items"][0]["device_ids"] == ["lamp-0042"]
        assert found["items"][0]["channel"] == "sensor"
        assert references(search(vigie_api, admin, device_id="lamp-0043")) == {other}
        assert search(vigie_api, admin, device_id="lamp-9999")["total"] == 0
        alerts = vigie_api.client.get(f"{TICKETS}/{lamp}/alerts", headers=admin).json()
        assert [(a["device_id"], a["condition"], a["occurrences"]) for a in alerts] == [
            ("lamp-0042", "lamp_failure", 1)
        ]
