"""GET /api/v1/communes: what a desk needs to type in a ticket, for the communes it covers."""

from __future__ import annotations

COMMUNES = "/api/v1/communes"


def by_slug(vigie_api, headers) -> dict[str, dict]:
    response = vigie_api.client.get(COMMUNES, headers=headers)
    assert response.status_code == 200, response.text
    return {commune["slug"]: commune for commune in response.json()}


def test_every_configured_commune_is_listed_with_its_name(vigie_api, admin):
    communes = by_slug(vigie_api, admin)
    assert set(communes) == set(vigie_api.runtime.area.communes)
    assert communes["clermont-ferrand"]["name"] == "Clermont-Ferrand"
    assert communes["chamalieres"]["reference_prefix"] == "CHA"


def test_categories_carry_their_questions(vigie_api, admin):
    clermont = by_slug(vigie_api, admin)["clermont-ferrand"]
    categories = {c["code"]: c for c in clermont["categories"]}
    configured = vigie_api.runtime.area.commune("clermont-ferrand")
    assert list(categories) == [c.code for c in configured.categories]
    lighting = categories["eclairage"]
    assert (lighting["name"], lighting["group"]) == ("Éclairage public", "Éclairage public")
    questions = {q["code"]: q for q in lighting["questions"]}
    assert questions["nombre_points"] == {
        "code": "nombre_points",
        "label": "Nombre de lampadaires concernés",
        "type": "integer",
        "required": True,
        "choices": [],
    }
    assert questions["etat"]["required"] is True
    assert {"key": "eteint", "name": "Éteint"} in questions["etat"]["choices"]
    assert questions["numero_candelabre"]["required"] is False
    assert categories["proprete"]["questions"][0]["code"] == "nature"


def test_teams_are_listed(vigie_api, admin):
    communes = by_slug(vigie_api, admin)
    teams = {t["code"]: t for t in communes["clermont-ferrand"]["teams"]}
    assert teams["proxim-cite"] == {
        "code": "proxim-cite",
        "name": "Proxim'Cité — accueil et orientation",
        "hub": "pole-centre",
    }
    assert "proprete-ouest" in {t["code"] for t in communes["chamalieres"]["teams"]}
    assert "proprete-ouest" not in teams


def test_each_commune_lists_its_own_categories(vigie_api, admin):
    communes = by_slug(vigie_api, admin)
    clermont = {c["code"] for c in communes["clermont-ferrand"]["categories"]}
    beaumont = {c["code"] for c in communes["beaumont"]["categories"]}
    assert "voirie-nid-de-poule" in clermont and "voirie-nid-de-poule" not in beaumont


def test_a_token_sees_only_its_communes(vigie_api):
    headers = vigie_api.headers("agent", ["aubiere", "royat"])
    assert set(by_slug(vigie_api, headers)) == {"aubiere", "royat"}


def test_communes_need_a_token(vigie_api):
    response = vigie_api.client.get(COMMUNES)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
