"""What a commune's ``[plugins.open311]`` settings change, and the mistakes in
them that stop start-up with the culprit named."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from connectors import open311
from connectors.open311.settings import Settings
from connectors.open311.testing import add_api_key, write_spec_city
from core.config.loader import check_config
from core.db.models import Ticket
from core.intake import accept_signal
from core.plugin_manager import get_plugin_manager
from core.signals import Location, Report

API = "/open311/v2"


@pytest.fixture
def vigie_config_dir(tmp_path, request):
    return write_spec_city(tmp_path / "config", getattr(request, "param", ""))


def problems_of(tmp_path, settings: str) -> list[str]:
    config = write_spec_city(tmp_path / "checked", settings)
    _area, problems = check_config(config, get_plugin_manager())
    return [str(problem) for problem in problems]


def test_settings_naming_unknown_categories_stop_start_up(tmp_path):
    found = problems_of(tmp_path, 'public_categories = ["001", "piscine"]')
    assert any(
        "communes/city.toml" in p and "plugins.open311" in p and '"piscine"' in p for p in found
    ), found
    with pytest.raises(ValueError, match="not usable as a jurisdiction_id"):
        Settings(jurisdiction_aliases=(" city.gov",))
    assert any("service_type" in p for p in problems_of(tmp_path, 'service_type = "sometimes"'))
    assert problems_of(tmp_path, "") == []


def test_check_commune_names_every_unknown_category(vigie_runtime):
    city = vigie_runtime.area.commune("city")
    settings = Settings(public_categories=("internal",), service_notices={"x": "y"})
    assert open311.check_commune(city.model_copy(update={"plugins": {"open311": settings}})) == [
        'service_notices.x: "x" is not a category of city'
    ]
    nothing = Settings(public_categories=())
    assert open311.check_commune(city.model_copy(update={"plugins": {"open311": nothing}})) == [
        "no category is published as an Open311 service"
    ]


@pytest.mark.parametrize(
    "vigie_config_dir", ['public_categories = ["033", "internal"]'], indirect=True
)
def test_public_categories_choose_the_services(vigie_api):
    listed = vigie_api.client.get(f"{API}/services.json").json()
    assert [s["service_code"] for s in listed] == ["033", "internal"]
    assert vigie_api.client.get(f"{API}/services/001.json").status_code == 404


@pytest.mark.parametrize("vigie_config_dir", ["expected_response_hours = 48"], indirect=True)
def test_expected_response_hours_when_no_plugin_gives_a_due_date(vigie_api):
    runtime = vigie_api.runtime
    with runtime.sessions() as session:
        report = Report(
            commune="city",
            category="006",
            description="Curb",
            channel="web",
            location=Location(address="8TH AVE and JUDAH ST"),
        )
        ticket = accept_signal(runtime, session, report, "test").ticket
        session.commit()
        reference, created = ticket.reference, ticket.created_at
    request = vigie_api.client.get(f"{API}/requests/{reference}.json").json()[0]
    zone = ZoneInfo("America/Los_Angeles")
    expected = (created + timedelta(hours=48)).astimezone(zone).isoformat(timespec="seconds")
    assert request["expected_datetime"] == expected


def test_descriptions_typed_by_staff_stay_private(vigie_api):
    runtime = vigie_api.runtime
    references = {}
    with runtime.sessions() as session:
        for channel in ("phone", "web"):
            report = Report(
                commune="city",
                category="006",
                channel=channel,
                description=f"Mme Dupont ({channel}) signale une bordure cassée",
                location=Location(address="8TH AVE and JUDAH ST"),
            )
            references[channel] = accept_signal(runtime, session, report, "test").ticket.reference
        session.commit()
    listed = {
        r["service_request_id"]: r for r in vigie_api.client.get(f"{API}/requests.json").json()
    }
    assert listed[references["phone"]]["description"] is None
    assert "web" in listed[references["web"]]["description"]


def test_a_single_served_commune_needs_no_jurisdiction_id_but_checks_one_given(vigie_api):
    client = vigie_api.client
    assert client.get(f"{API}/services.xml").status_code == 200
    assert (
        client.get(f"{API}/services.xml", params={"jurisdiction_id": "city.gov"}).status_code == 200
    )
    assert (
        client.get(f"{API}/services.xml", params={"jurisdiction_id": "sfgov.org"}).status_code
        == 404
    )
    add_api_key(vigie_api.runtime, "xyz", ("city",))
    form = {"api_key": "xyz", "service_code": "006", "address_string": "1 Main St"}
    created = client.post(f"{API}/requests.json", data=form)
    assert created.status_code == 201, created.text
    with vigie_api.runtime.sessions() as session:
        assert session.scalar(select(Ticket.commune)) == "city"
