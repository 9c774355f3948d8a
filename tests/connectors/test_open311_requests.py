"""Open311 on the shipped area: Clermont-Ferrand and Chamalières serve it, so
jurisdiction_id is required. POST and GET requests, every filter and error,
status and history as residents' apps see them, and what they never see."""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select, update

from connectors.open311.testing import add_api_key, spark
from core.db.models import SignalRecord, Ticket
from core.runtime import open_runtime

API = "/open311/v2"
SAMPLE = Path("/work/shared/samples/open311/post-request.txt")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def client(vigie_api):
    return vigie_api.client


@pytest.fixture
def key(vigie_api) -> str:
    """An Open311 api_key of Clermont-Ferrand: an integration token."""
    return vigie_api.token("integration", ["clermont-ferrand"])


@pytest.fixture
def stored(vigie_api):
    def count() -> tuple[int, int]:
        with vigie_api.runtime.sessions() as session:
            return (
                session.scalar(select(func.count()).select_from(Ticket)),
                session.scalar(select(func.count()).select_from(SignalRecord)),
            )

    return count


def lamp_form(key: str, **changes: str) -> dict[str, str]:
    fields = {
        "api_key": key,
        "jurisdiction_id": "clermont-ferrand",
        "service_code": "eclairage",
        "lat": "45.77722",
        "long": "3.08700",
        "address_string": "12 rue Blatin",
        "description": "Trois lampadaires éteints",
        "attribute[nombre_points]": "3",
        "attribute[etat]": "eteint",
    }
    fields.update(changes)
    return {name: value for name, value in fields.items() if value is not None}


def post(client, fields: dict | str, fmt: str = "json", headers: dict | None = None):
    body = fields if isinstance(fields, str) else urlencode(fields)
    return client.post(f"{API}/requests.{fmt}", content=body, headers={**FORM, **(headers or {})})


def create(client, key: str, **changes: str) -> str:
    response = post(client, lamp_form(key, **changes))
    assert response.status_code == 201, response.text
    return response.json()[0]["service_request_id"]


def get(client, path: str, fmt: str = "json", **params):
    params.setdefault("jurisdiction_id", "clermont-ferrand")
    return client.get(f"{API}/{path}.{fmt}", params=params)


def descriptions(response) -> list[str]:
    return [error["description"] for error in response.json()]


# --- Jurisdictions ----------------------------------------------------------------


def test_jurisdiction_id_is_required_when_several_communes_are_served(client):
    missing = client.get(f"{API}/services.json")
    assert missing.status_code == 400
    assert "jurisdiction_id was not provided" in descriptions(missing)[0]
    assert "chamalieres" in descriptions(missing)[0]
    for unknown in ("vichy", "aubiere"):  # Aubière exists but does not enable open311
        response = client.get(f"{API}/services.xml", params={"jurisdiction_id": unknown})
        assert response.status_code == 404
        assert spark(ET.fromstring(response.content))[0]["code"] == "404"


def test_each_commune_lists_its_own_public_categories(client, vigie_api):
    area = vigie_api.runtime.area
    for slug, alias in (
        ("clermont-ferrand", "clermont-ferrand.fr"),
        ("chamalieres", "ville-chamalieres.fr"),
    ):
        expected = [c.code for c in area.commune(slug).categories if c.public]
        for jurisdiction_id in (slug, alias, alias.upper()):
            body = client.get(f"{API}/services.json", params={"jurisdiction_id": jurisdiction_id})
            assert body.status_code == 200
            assert [s["service_code"] for s in body.json()] == expected
    clermont = client.get(f"{API}/services.json", params={"jurisdiction_id": "clermont-ferrand"})
    lamp = next(s for s in clermont.json() if s["service_code"] == "eclairage")
    assert lamp["service_name"] == "Éclairage public" and lamp["metadata"] is True
    assert "lampadaire" in lamp["keywords"].split(", ")


# --- POST requests ------------------------------------------------------------------


def test_the_shared_sample_body_is_refused_for_its_missing_required_attribute(
    client, vigie_api, stored
):
    add_api_key(vigie_api.runtime, "demo-app-key", ("clermont-ferrand",))
    sample = SAMPLE.read_text().strip()
    response = post(client, sample)
    assert response.status_code == 400
    assert descriptions(response) == ["attribute[etat]: required: État constaté"]
    assert stored() == (0, 0)
    response = post(client, sample + "&attribute[etat]=eteint", "xml")
    assert response.status_code == 201, response.text
    reference = spark(ET.fromstring(response.content))[0]["service_request_id"]
    assert reference.startswith("CLF-")
    with vigie_api.runtime.sessions() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.reference == reference))
        assert ticket.channel == "app" and ticket.category == "eclairage"
        assert ticket.answers == {"nombre_points": 3, "etat": "eteint"}
        report = ticket.reports[0]
        assert (report.reporter_name, report.reporter_email) == (
            "Claire Martin",
            "habitant@example.org",
        )
        assert report.notify_by == "email" and report.reporter_phone == "0600000000"
    public = get(client, f"requests/{reference}").text + get(client, "requests").text
    for personal in ("Claire", "Martin", "habitant@example.org", "0600000000"):
        assert personal not in public


def test_an_api_key_serves_only_its_communes(client, key, stored):
    response = post(
        client, lamp_form(key, jurisdiction_id="chamalieres", lat="45.7744", long="3.0672")
    )
    assert response.status_code == 403
    assert "does not cover jurisdiction chamalieres" in descriptions(response)[0]
    assert stored() == (0, 0)


def test_every_problem_of_a_post_is_listed_at_once(client, key, stored):
    fields = lamp_form(
        key,
        lat="abc",
        long=None,
        email="not-an-address",
        description="x" * 4001,
        media_url="ftp://example.org/a.jpg",
        **{
            "attribute[nombre_points]": "trois",
            "attribute[etat]": None,
            "attribute[couleur]": "rouge",
        },
    )
    response = post(client, fields, "xml")
    assert response.status_code == 400
    errors = spark(ET.fromstring(response.content))
    assert {error["code"] for error in errors} == {"400"}
    text = " | ".join(error["description"] for error in errors)
    for field in (
        "lat:",
        "lat and long",
        "email:",
        "description:",
        "media_url:",
        "attribute[nombre_points]:",
        "attribute[etat]: required",
        "attribute[couleur]:",
    ):
        assert field in text, field
    assert len(errors) == 8
    assert stored() == (0, 0)


@pytest.mark.parametrize(
    ("changes", "status", "words"),
    [
        ({"service_code": None}, 400, "service_code was not provided"),
        ({"service_code": "piscine"}, 404, "service_code 'piscine' not found"),
        ({"jurisdiction_id": None}, 400, "jurisdiction_id was not provided"),
        ({"jurisdiction_id": "vichy"}, 404, "jurisdiction_id 'vichy' not found"),
        ({"lat": None, "long": None, "address_string": None}, 400, "location: send lat and long"),
        ({"lat": "48.8566", "long": "2.3522"}, 400, "is outside Clermont-Ferrand"),
        ({"lat": "95", "long": "3.08"}, 400, "lat: must be between -90 and 90"),
        ({"api_key": None}, 403, "api_key was not provided"),
    ],
)
def test_each_refusal_has_the_spec_status(client, key, stored, changes, status, words):
    response = post(client, lamp_form(key, **changes))
    assert response.status_code == status
    assert words in " ".join(descriptions(response))
    assert stored() == (0, 0)


def test_a_location_may_be_an_address_or_an_address_id_alone(client, key, vigie_api):
    by_address = create(client, key, lat=None, long=None)
    by_id = create(
        client, key, lat=None, long=None, address_string=None, address_id="BAN-63113-0042"
    )
    with vigie_api.runtime.sessions() as session:
        addresses = dict(session.execute(select(Ticket.reference, Ticket.address)).all())
    assert addresses == {by_address: "12 rue Blatin", by_id: "address_id BAN-63113-0042"}


def test_a_body_that_is_not_a_form_is_refused(client, key):
    as_json = client.post(f"{API}/requests.json", json=lamp_form(key))
    assert as_json.status_code == 400 and "x-www-form-urlencoded" in descriptions(as_json)[0]
    latin1 = client.post(
        f"{API}/requests.json", content="description=\xe9t\xe9".encode("latin-1"), headers=FORM
    )
    assert latin1.status_code == 400 and "UTF-8" in descriptions(latin1)[0]


def test_parameters_in_the_query_string_count_too(client, key):
    fields = lamp_form(key)
    query = urlencode(
        {"api_key": fields.pop("api_key"), "jurisdiction_id": fields.pop("jurisdiction_id")}
    )
    response = client.post(f"{API}/requests.json?{query}", content=urlencode(fields), headers=FORM)
    assert response.status_code == 201, response.text


def test_attribute_lists_and_codes_in_another_case(client, key, vigie_api):
    reference = create(
        client,
        key,
        **{
            "attribute[ETAT]": "clignote",
            "attribute[etat]": None,
            "attribute[nombre_points][]": "2",
            "attribute[nombre_points]": None,
        },
    )
    with vigie_api.runtime.sessions() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.reference == reference))
        assert ticket.answers == {"nombre_points": 2, "etat": "clignote"}
    two = urlencode(lamp_form(key)) + "&attribute[etat][]=eteint&attribute[etat][]=clignote"
    response = post(client, two.replace("&attribute%5Betat%5D=eteint", ""))
    assert response.status_code == 400
    assert descriptions(response)[0].startswith("attribute[etat]:")


def test_a_retried_post_with_the_same_idempotency_key_is_one_request(
    client, key, vigie_api, stored
):
    headers = {"Idempotency-Key": "app-7f3e-0001"}
    first = post(client, lamp_form(key), headers=headers)
    again = post(client, lamp_form(key), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert stored() == (1, 1)
    other_key = vigie_api.token("integration", ["clermont-ferrand"])
    assert post(client, lamp_form(other_key), headers=headers).status_code == 201
    assert (
        post(client, lamp_form(key), headers={"Idempotency-Key": "app-7f3e-0002"}).status_code
        == 201
    )
    assert post(client, lamp_form(key)).status_code == 201  # no header: every POST is new
    assert stored() == (4, 4)


def test_the_token_of_a_realtime_post_finds_its_request(client, key, vigie_api):
    reference = create(client, key)
    with vigie_api.runtime.sessions() as session:
        token = session.scalar(select(SignalRecord.details))["open311"]["token"]
    found = get(client, f"tokens/{token}")
    assert found.json() == [{"service_request_id": reference, "token": token}]
    assert get(client, f"tokens/{token}", jurisdiction_id="chamalieres").status_code == 404


# --- What GET requests says about a ticket ---------------------------------------------


def staff(vigie_api, reference: str, action: str, body: dict) -> None:
    response = vigie_api.client.post(
        f"/api/v1/tickets/{reference}/{action}", json=body, headers=vigie_api.headers("admin")
    )
    assert response.status_code == 200, response.text


def test_status_is_open_or_closed_with_vigie_status_in_the_notes(client, key, vigie_api):
    reference = create(client, key)
    request = get(client, f"requests/{reference}").json()[0]
    assert (request["status"], request["status_notes"]) == ("open", "new: Nouvelle demande")
    assert request["agency_responsible"] == "Astreinte éclairage"
    with vigie_api.runtime.sessions() as session:
        due = session.scalar(select(Ticket.due_at).where(Ticket.reference == reference))
    assert request["expected_datetime"] == due.astimezone(PARIS).isoformat(timespec="seconds")
    staff(vigie_api, reference, "status", {"status": "in_progress", "comment": "Équipe en route"})
    staff(
        vigie_api, reference, "comments", {"comment": "Voisin pénible, rappeler", "public": False}
    )
    request = get(client, f"requests/{reference}").json()[0]
    assert (request["status"], request["status_notes"]) == ("open", "in_progress: Équipe en route")
    staff(vigie_api, reference, "status", {"status": "resolved", "comment": "Lampes remplacées"})
    request = get(client, f"requests/{reference}").json()[0]
    assert (request["status"], request["status_notes"]) == ("closed", "resolved: Lampes remplacées")
    with vigie_api.runtime.sessions() as session:
        resolved_at = session.scalar(
            select(Ticket.resolved_at).where(Ticket.reference == reference)
        )
    assert request["updated_datetime"] == resolved_at.astimezone(PARIS).isoformat(
        timespec="seconds"
    )
    english = client.get(
        f"{API}/requests/{reference}.json",
        params={"jurisdiction_id": "clermont-ferrand"},
        headers={"Accept-Language": "en-GB,en;q=0.8"},
    )
    assert english.json()[0]["status_notes"] == "resolved: Lampes remplacées"
    updates = get(client, f"requests/{reference}/updates").json()
    assert [(u["status"], u["description"]) for u in updates] == [
        ("open", "Demande enregistrée"),
        ("open", "Confiée à : Astreinte éclairage"),
        ("open", "Équipe en route"),
        ("closed", "Lampes remplacées"),
    ]
    assert all(
        set(u)
        == {
            "update_id",
            "service_request_id",
            "status",
            "updated_datetime",
            "description",
            "media_url",
        }
        for u in updates
    )
    for path in (f"requests/{reference}", f"requests/{reference}/updates", "servicerequestupdates"):
        assert "Voisin" not in get(client, path).text


def test_status_notes_quote_the_comment_that_came_with_the_current_status(client, key, vigie_api):
    reference = create(client, key)
    other = create(client, key)
    staff(vigie_api, reference, "status", {"status": "resolved", "comment": "Lampes remplacées"})
    staff(vigie_api, reference, "status", {"status": "reopened", "comment": "Encore éteint"})
    staff(vigie_api, reference, "status", {"status": "resolved"})  # no comment this time
    staff(vigie_api, other, "status", {"status": "in_progress", "comment": "Équipe en route"})
    expected = {
        reference: ("closed", "resolved: Lampes remplacées"),
        other: ("open", "in_progress: Équipe en route"),
    }
    listed = get(client, "requests", service_request_id=f"{reference},{other}").json()
    assert {r["service_request_id"]: (r["status"], r["status_notes"]) for r in listed} == expected
    for ref, (status, notes) in expected.items():
        request = get(client, f"requests/{ref}").json()[0]
        assert (request["status"], request["status_notes"]) == (status, notes)


def test_the_listing_gives_each_request_its_own_media_url(client, key):
    photo = create(client, key, media_url="https://photos.example.org/2.jpg")
    plain = create(client, key)
    listed = get(client, "requests", page_size="10").json()
    assert {r["service_request_id"]: r["media_url"] for r in listed} == {
        photo: "https://photos.example.org/2.jpg",
        plain: None,
    }


def test_a_redirected_request_is_closed_and_names_the_outside_body(client, key):
    reference = create(
        client,
        key,
        service_code="reseau-electrique",
        **{"attribute[danger]": "true", "attribute[etat]": None, "attribute[nombre_points]": None},
    )
    request = get(client, f"requests/{reference}").json()[0]
    assert request["status"] == "closed"
    assert request["status_notes"].startswith("redirected: Le réseau de distribution")
    assert request["agency_responsible"] == "Enedis"
    assert request["service_notice"] == "Transmise à : Enedis"
    english = client.get(
        f"{API}/requests/{reference}.json",
        headers={"Accept-Language": "en"},
        params={"jurisdiction_id": "clermont-ferrand"},
    )
    assert english.json()[0]["service_notice"] == "Passed on to: Enedis"


def test_a_commune_without_due_dates_gives_no_expected_datetime(client, vigie_api):
    key = vigie_api.token("integration", ["chamalieres"])
    reference = create(client, key, jurisdiction_id="chamalieres", lat="45.7744", long="3.0672")
    request = get(client, f"requests/{reference}", jurisdiction_id="chamalieres").json()[0]
    assert request["expected_datetime"] is None
    assert reference.startswith("CHA-")
    assert get(client, f"requests/{reference}").status_code == 404  # not Clermont's


def test_a_request_of_an_unknown_id_is_404(client):
    for reference in ("CLF-2026-999999", "nothing"):
        response = get(client, f"requests/{reference}", "xml")
        assert response.status_code == 404
        assert "not found" in spark(ET.fromstring(response.content))[0]["description"]


# --- GET requests: filters, defaults, extensions -----------------------------------------


def backdate(vigie_api, reference: str, days: float) -> None:
    with vigie_api.runtime.sessions() as session:
        session.execute(
            update(Ticket)
            .where(Ticket.reference == reference)
            .values(created_at=datetime.now(UTC) - timedelta(days=days))
        )
        session.commit()


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [request["service_request_id"] for request in response.json()]


@pytest.fixture
def three(client, key, vigie_api) -> list[str]:
    """Three requests, newest first: a closed lamp, an open lamp, an open litter report."""
    litter = create(
        client,
        key,
        service_code="proprete",
        lat="45.7790",
        long="3.0950",
        **{
            "attribute[nature]": "detritus",
            "attribute[etat]": None,
            "attribute[nombre_points]": None,
        },
    )
    lamp = create(client, key, lat="45.7700", long="3.0800")
    done = create(client, key, lat="45.7600", long="3.1100")
    staff(vigie_api, done, "status", {"status": "resolved", "comment": "Fait"})
    for age, reference in ((3, litter), (2, lamp), (1, done)):
        backdate(vigie_api, reference, age)
    return [done, lamp, litter]


def test_filters_by_status_service_code_and_ids(client, three):
    done, lamp, litter = three
    assert ids(get(client, "requests")) == [done, lamp, litter]
    assert ids(get(client, "requests", status="open")) == [lamp, litter]
    assert ids(get(client, "requests", status="closed")) == [done]
    assert ids(get(client, "requests", status="open,closed")) == [done, lamp, litter]
    assert ids(get(client, "requests", service_code="proprete")) == [litter]
    assert ids(get(client, "requests", service_code="proprete,eclairage", status="closed")) == [
        done
    ]
    repeated = get(client, "requests", service_code="eclairage,proprete,eclairage", status="open")
    assert ids(repeated) == [lamp, litter]
    # service_request_id overrides every other argument
    assert ids(
        get(
            client,
            "requests",
            service_request_id=f"{litter},{done.lower()}",
            status="open",
            service_code="voirie",
        )
    ) == [done, litter]
    bad = get(client, "requests", status="pending")
    assert bad.status_code == 400 and "status:" in descriptions(bad)[0]
    assert get(client, "requests", service_code="piscine").status_code == 404


def test_dates_default_to_the_last_90_days_and_may_not_span_more(client, three, vigie_api):
    done, lamp, litter = three
    backdate(vigie_api, litter, 100)
    assert ids(get(client, "requests")) == [done, lamp]
    now = datetime.now(UTC)
    since = (now - timedelta(days=101)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ids(get(client, "requests", start_date=since)) == [litter]
    until = (now - timedelta(days=1, hours=12)).astimezone(PARIS).isoformat(timespec="seconds")
    assert ids(get(client, "requests", end_date=until)) == [lamp]
    # A "+" left unencoded reads as a space: still understood.
    raw = client.get(f"{API}/requests.json?jurisdiction_id=clermont-ferrand&end_date={until}")
    assert ids(raw) == [lamp]
    wide = get(
        client, "requests", start_date="2026-01-01T00:00:00Z", end_date="2026-06-01T00:00:00Z"
    )
    assert wide.status_code == 400 and "90 days" in descriptions(wide)[0]
    for params in (
        {"start_date": "yesterday"},
        {"end_date": "2026-01-01T10:00:00"},
        {"start_date": "2026-03-02T00:00:00Z", "end_date": "2026-03-01T00:00:00Z"},
    ):
        assert get(client, "requests", **params).status_code == 400, params


def test_paging_and_bbox_extensions(client, three):
    done, lamp, litter = three
    assert ids(get(client, "requests", page_size="2")) == [done, lamp]
    assert ids(get(client, "requests", page_size="2", page="2")) == [litter]
    assert ids(get(client, "requests", page="3", page_size="2")) == []
    for params in ({"page": "0"}, {"page_size": "1001"}, {"page_size": "ten"}):
        assert get(client, "requests", **params).status_code == 400, params
    assert ids(get(client, "requests", bbox="3.07,45.765,3.10,45.785")) == [lamp, litter]
    assert get(client, "requests", bbox="3.10,45.78,3.07,45.76").status_code == 400
    several = get(client, "requests", bbox="north", page="-1")
    assert several.status_code == 400 and len(several.json()) == 2


def test_small_pages_are_read_on_the_event_loop_larger_ones_in_a_thread(
    client, three, monkeypatch
):
    import connectors.open311.routes as routes

    threaded = []
    real = routes.run_in_threadpool

    async def counting(function, *args, **kwargs):
        threaded.append(function.__name__)
        return await real(function, *args, **kwargs)

    monkeypatch.setattr(routes, "run_in_threadpool", counting)
    done, lamp, litter = three
    assert ids(get(client, "requests", page_size="50")) == [done, lamp, litter]
    assert ids(get(client, f"requests/{lamp}")) == [lamp]
    assert threaded == []
    assert ids(get(client, "requests", page_size="51")) == [done, lamp, litter]
    assert ids(get(client, "requests")) == [done, lamp, litter]  # up to 1,000
    assert threaded == ["find_requests", "find_requests"]
    # Either way a refusal comes in the format asked for.
    for page_size in ("20", "1000"):
        refused = get(client, "requests", page_size=page_size, status="pending")
        assert refused.status_code == 400 and "status:" in descriptions(refused)[0]
        xml = get(client, "requests", "xml", page_size=page_size, status="pending")
        assert xml.status_code == 400 and spark(ET.fromstring(xml.content))[0]["code"] == "400"


def test_at_most_1000_requests_are_returned_by_default(client, vigie_api):
    now = datetime.now(UTC)
    rows = [
        dict(
            reference=f"CLF-2026-{n:06d}",
            commune="clermont-ferrand",
            year=2026,
            number=n,
            category="eclairage",
            description="Lampe",
            channel="app",
            status="new",
            priority="normal",
            answers={},
            created_at=now - timedelta(seconds=n),
            updated_at=now,
        )
        for n in range(1, 1006)
    ]
    with vigie_api.runtime.sessions() as session:
        session.execute(insert(Ticket), rows)
        session.commit()
    listed = ids(get(client, "requests"))
    assert len(listed) == 1000 and listed[0] == "CLF-2026-000001"
    assert ids(get(client, "requests", page="2")) == [
        f"CLF-2026-{n:06d}" for n in range(1001, 1006)
    ]


def test_service_request_updates_of_a_period(client, three, vigie_api):
    done, lamp, litter = three
    updates = get(client, "servicerequestupdates").json()
    assert {u["service_request_id"] for u in updates} == {done, lamp, litter}
    closing = [u for u in updates if u["service_request_id"] == done][-1]
    assert (closing["status"], closing["description"]) == ("closed", "Fait")
    future = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert get(client, "servicerequestupdates", start_date=future).json() == []
    assert [u["update_id"] for u in get(client, "servicerequestupdates", page_size="2").json()] == [
        u["update_id"] for u in updates[:2]
    ]


# --- Formats and paths ---------------------------------------------------------------


def test_unknown_formats_and_paths_answer_open311_errors(client):
    html = get(client, "services", "html")
    assert html.status_code == 400 and html.headers["content-type"].startswith("text/xml")
    assert get(client, "reports", "json").json()[0]["code"] == 404
    assert client.get(f"{API}/services").status_code == 404
    assert client.delete(f"{API}/requests/CLF-2026-000001.json").status_code == 404


def test_the_channel_connector_is_registered(vigie_api):
    connector = vigie_api.runtime.connectors["open311"]
    assert connector.channel == "app"


def test_a_multipart_post_is_read_like_a_form_without_its_files(client, key, vigie_api):
    photo = ("lampe.jpg", b"\xff\xd8\xff\xe0 not really a photo", "image/jpeg")
    response = client.post(
        f"{API}/requests.json",
        data=lamp_form(key, media_url="https://photos.example.org/1.jpg"),
        files={"media": photo},
    )
    assert response.status_code == 201, response.text
    reference = response.json()[0]["service_request_id"]
    request = get(client, f"requests/{reference}").json()[0]
    assert request["media_url"] == "https://photos.example.org/1.jpg"
    broken = client.post(
        f"{API}/requests.json",
        content=b"--xyz\r\nnonsense",
        headers={"Content-Type": "multipart/form-data"},  # no boundary
    )
    assert broken.status_code == 400
    assert "multipart/form-data" in descriptions(broken)[0]


def test_a_form_of_too_many_fields_is_refused(client, key, stored):
    fields = urlencode(lamp_form(key)) + "".join(f"&x{n}=1" for n in range(300))
    response = post(client, fields)
    assert response.status_code == 400 and "too many fields" in descriptions(response)[0]
    assert stored() == (0, 0)


# --- Answers kept between GETs (core.answer_cache): never older than the last commit ---


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


def test_a_commit_keeps_the_entries_of_the_requests_it_did_not_change(client, key, vigie_api):
    cache = vigie_api.runtime.entry_cache
    first = create(client, key)
    assert ids(get(client, "requests")) == [first]
    second = create(client, key, lat="45.7801", long="3.0902")  # a commit
    hits, misses = cache.hits, cache.misses
    assert ids(get(client, "requests")) == [second, first]
    assert (cache.hits - hits, cache.misses - misses) == (1, 1)  # first's entry kept


def test_a_merge_shows_at_once_on_both_requests_kept_before(client, key, vigie_api):
    plain = create(client, key)
    photo = create(client, key, lat="45.7801", long="3.0902",
                   media_url="https://photos.example.org/3.jpg")  # fmt: skip
    listed = {r["service_request_id"]: r for r in get(client, "requests").json()}
    assert (listed[plain]["media_url"], listed[photo]["status"]) == (None, "open")
    staff(vigie_api, photo, "merge", {"into": plain})
    listed = {r["service_request_id"]: r for r in get(client, "requests").json()}
    assert listed[plain]["media_url"] == "https://photos.example.org/3.jpg"
    assert listed[photo]["status"] == "closed"
    assert get(client, f"requests/{photo}").json()[0]["status"] == "closed"


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


def test_the_openapi_document_declares_every_path_parameter_of_open311(client):
    """The busiest routes read their path parameters themselves (no FastAPI
    checking): their OpenAPI declaration is written out, and must stay whole."""
    spec = client.get("/openapi.json").json()
    checked = 0
    for path, operations in spec["paths"].items():
        if not path.startswith(API):
            continue
        wanted = set(re.findall(r"{(\w+)}", path))
        for method, operation in operations.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == wanted, (method, path)
            checked += 1
    assert checked >= 8
