"""The routing plugin: the category's team, a default team, or an outside body."""

from __future__ import annotations

from datetime import UTC, datetime

from core.config import Category, Commune, Team
from core.signals import Location, RoutingDecision
from core.snapshots import TicketSnapshot
from plugins import routing


def _commune(**settings) -> Commune:
    return Commune(
        slug="testville",
        name="Testville",
        reference_prefix="TST",
        teams=(Team(code="voirie", name="Voirie"), Team(code="accueil", name="Accueil")),
        categories=(
            Category(code="voirie", name="Voirie", group="Voirie", team="voirie"),
            Category(code="autre", name="Autre", group="Autre"),
            Category(code="reseau-electrique", name="Réseau électrique", group="Autre"),
        ),
        plugins={"routing": routing.Settings(**settings)},
    )


def _ticket(category: str) -> TicketSnapshot:
    now = datetime.now(UTC)
    return TicketSnapshot(
        id=1,
        reference="TST-2026-000001",
        commune="testville",
        category=category,
        description="d",
        channel="phone",
        status="new",
        priority="normal",
        location=Location(),
        created_at=now,
        updated_at=now,
    )


def test_the_category_team_handles_it():
    assert routing.route_ticket(_ticket("voirie"), _commune()) == RoutingDecision(
        team="voirie", reason="category voirie"
    )


def test_a_category_without_team_goes_to_the_default_team_or_waits():
    assert (
        routing.route_ticket(_ticket("autre"), _commune(default_team="accueil")).team == "accueil"
    )
    assert routing.route_ticket(_ticket("autre"), _commune()) is None


def test_a_redirect_names_the_outside_body_and_why():
    commune = _commune(
        redirects={"reseau-electrique": {"outside_body": "Enedis", "reason": "réseau ERDF"}}
    )
    decision = routing.route_ticket(_ticket("reseau-electrique"), commune)
    assert decision == RoutingDecision(outside_body="Enedis", reason="réseau ERDF")


def test_config_naming_unknown_team_or_category_is_reported():
    commune = _commune(
        default_team="espaces-verts", redirects={"gaz": {"outside_body": "GRDF", "reason": "gaz"}}
    )
    assert routing.check_commune(commune) == [
        'default_team "espaces-verts" is not a team of testville (teams: voirie, accueil)',
        'redirects.gaz: "gaz" is not a category of testville',
    ]
    assert routing.check_commune(_commune(default_team="accueil")) == []


def test_redirected_ticket_through_the_api(vigie_api):
    # clermont-ferrand's example config redirects reseau-electrique to Enedis.
    response = vigie_api.client.post(
        "/api/v1/tickets",
        headers=vigie_api.headers(),
        json={
            "commune": "clermont-ferrand",
            "category": "reseau-electrique",
            "description": "Coffret électrique ouvert",
            "address": "3 rue Blatin",
            "answers": {"danger": True},
        },
    )
    assert response.status_code == 201, response.text
    ticket = response.json()
    assert ticket["status"] == "redirected"
    assert ticket["outside_body"] == "Enedis"
    redirected = [e for e in ticket["history"] if e["action"] == "redirected"][0]
    assert redirected["actor"] == "plugin:routing"
    assert redirected["comment"]
