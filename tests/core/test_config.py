"""Loading ``config/communes/*.toml``: the shipped example area, and the messages
an administrator reads when a file is wrong."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from core import hookimpl
from core.config import Category, Commune
from core.config.loader import ConfigError, ConfigProblem, check_config, load_area
from core.plugin_manager import get_plugin_manager
from core.settings import Settings
from plugins import routing, sla

# Every plugin installed with Vigie, as the "unknown plugin" message lists them.
INSTALLED = ", ".join(sorted(name for name, _ in get_plugin_manager().list_name_plugin()))

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"

PROXIM_CITE_CODES = {
    "proprete",
    "encombrants",
    "espaces-verts",
    "voirie",
    "travaux",
    "eau-assainissement",
    "eclairage",
    "signalisation",
    "incivilites",
    "stationnement",
    "autre",
}


def commune_toml(slug: str, prefix: str, body: str = "") -> str:
    """A small valid commune file, plus ``body`` (dedented) at the end."""
    head = textwrap.dedent(
        f"""\
        slug = "{slug}"
        name = "{slug.title()}"
        reference_prefix = "{prefix}"
        """
    )
    return head + textwrap.dedent(body)


def write_config(config_dir: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = config_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return config_dir


def problems(config_dir: Path, pm=None) -> list[str]:
    area, found = check_config(config_dir, pm or get_plugin_manager())
    assert area is None if found else area is not None
    return [str(problem) for problem in found]


# --- The shipped example area --------------------------------------------------


@pytest.fixture(scope="module")
def area():
    return load_area(CONFIG_DIR, get_plugin_manager(), "Clermont Auvergne Métropole")


def test_shipped_config_has_no_problem():
    assert problems(CONFIG_DIR) == []


def test_shipped_area_has_the_metropole_communes(area):
    assert area.name == "Clermont Auvergne Métropole"
    assert {"clermont-ferrand", "chamalieres", "aubiere"} <= set(area.communes)
    assert len(area.communes) >= 5
    assert area.by_prefix("CLF").slug == "clermont-ferrand"
    assert area.by_prefix("CHA").slug == "chamalieres"
    assert area.by_prefix("AUB").slug == "aubiere"
    clermont = area.commune("clermont-ferrand")
    assert clermont.insee_code == "63113"
    assert clermont.source == "communes/clermont-ferrand.toml"
    for commune in area.communes.values():
        assert commune.business_hours.timezone == "Europe/Paris"
        assert {"2026-07-14", "2027-05-17"} <= {
            d.isoformat() for d in commune.business_hours.holidays
        }
        lat, lon = commune.center
        min_lon, min_lat, max_lon, max_lat = commune.bbox
        assert min_lon < lon < max_lon and min_lat < lat < max_lat


def test_every_commune_has_the_proxim_cite_categories(area):
    for commune in area.communes.values():
        codes = {category.code for category in commune.categories}
        assert PROXIM_CITE_CODES <= codes, commune.slug
        assert commune.category("stationnement").group == "Incivilités"
        for category in commune.categories:
            assert category.keywords, (commune.slug, category.code)
            assert category.team is None or commune.team(category.team), category.code
        nombre = commune.category("eclairage").question("nombre_points")
        assert (nombre.type, nombre.label) == ("integer", "Nombre de lampadaires concernés")
        encombrants = commune.category("encombrants").questions
        assert any(question.type == "choice" and question.choices for question in encombrants)


def test_communes_enable_different_plugins(area):
    enabled = {slug: frozenset(commune.plugins) for slug, commune in area.communes.items()}
    sensors = {"water", "lighting", "parking"}
    # The example area as issue 4 sets it out: each commune its own connectors.
    assert enabled["clermont-ferrand"] >= {"routing", "sla", *sensors}
    assert enabled["chamalieres"] & sensors == {"parking", "lighting"}
    assert enabled["aubiere"] & sensors == {"water"}
    assert "routing" in enabled["chamalieres"] and "sla" not in enabled["chamalieres"]
    assert "sla" in enabled["aubiere"] and "routing" not in enabled["aubiere"]
    assert len({enabled[slug] for slug in ("clermont-ferrand", "chamalieres", "aubiere")}) == 3
    clermont = area.commune("clermont-ferrand")
    routing_settings = clermont.plugin_config("routing")
    assert isinstance(routing_settings, routing.Settings)
    assert routing_settings.redirects["reseau-electrique"].outside_body == "Enedis"
    assert clermont.team(routing_settings.default_team) is not None
    assert isinstance(clermont.plugin_config("sla"), sla.Settings)
    assert clermont.plugin_config("sla").default_hours == 72
    assert area.commune("chamalieres").plugin_config("sla") is None


def test_shipped_platform_settings_name_the_area(monkeypatch):
    for name in [name for name in os.environ if name.startswith("VIGIE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("VIGIE_CONFIG_DIR", str(CONFIG_DIR))
    assert Settings().area_name == "Clermont Auvergne Métropole"


# --- What an administrator reads when a file is wrong ----------------------------


def test_toml_syntax_error_gives_line_and_column(tmp_path):
    write_config(tmp_path, {"communes/royat.toml": 'slug = "royat"\nname = \n'})
    assert problems(tmp_path) == [
        "communes/royat.toml: TOML syntax error at line 2, column 8: invalid value"
    ]


def test_missing_required_field(tmp_path):
    write_config(tmp_path, {"communes/royat.toml": 'slug = "royat"\nreference_prefix = "ROY"\n'})
    assert problems(tmp_path) == ["communes/royat.toml: name: field required"]


def test_unknown_key_suggests_the_right_one(tmp_path):
    body = """
        [[categories]]
        code = "voirie"
        name = "Voirie"
        group = "Voirie"
        teem = "voirie-ouest"
        """
    write_config(tmp_path, {"communes/royat.toml": commune_toml("royat", "ROY", body)})
    assert problems(tmp_path) == [
        'communes/royat.toml: categories[0].teem: unknown key (did you mean "team"?)'
    ]


def test_unknown_plugin_lists_the_installed_ones(tmp_path):
    write_config(
        tmp_path, {"communes/royat.toml": commune_toml("royat", "ROY", "[plugins.smss]\n")}
    )
    assert problems(tmp_path) == [
        f'communes/royat.toml: plugins.smss: unknown plugin "smss"; installed: {INSTALLED}'
    ]


def test_invalid_plugin_settings_name_the_setting(tmp_path):
    body = """
        [plugins.sla]
        default_hours = -5
        [plugins.routing.redirects.reseau-electrique]
        outside_body = "Enedis"
        """
    write_config(tmp_path, {"communes/royat.toml": commune_toml("royat", "ROY", body)})
    assert problems(tmp_path) == [
        "communes/royat.toml: plugins.sla.default_hours: must be greater than 0 (got -5)",
        "communes/royat.toml: plugins.routing.redirects.reseau-electrique.reason: field required",
    ]


def test_plugin_section_must_be_a_table(tmp_path):
    body = "[plugins]\nrouting = true\n"
    write_config(tmp_path, {"communes/royat.toml": commune_toml("royat", "ROY", body)})
    assert problems(tmp_path) == [
        "communes/royat.toml: plugins.routing: must be a table, [plugins.routing] "
        "(empty for the defaults); got true"
    ]


def test_category_team_must_be_a_team_of_the_commune(tmp_path):
    body = """
        [[teams]]
        code = "voirie-ouest"
        name = "Régie voirie Pôle Ouest"
        [[teams]]
        code = "accueil-mairie"
        name = "Accueil de la mairie"
        [[categories]]
        code = "voirie"
        name = "Voirie"
        group = "Voirie"
        team = "voirie-sud"
        """
    write_config(tmp_path, {"communes/royat.toml": commune_toml("royat", "ROY", body)})
    assert problems(tmp_path) == [
        'communes/royat.toml: categories[0].team: team "voirie-sud" is not defined in this '
        "commune (teams: accueil-mairie, voirie-ouest)"
    ]


def test_duplicate_codes_within_a_commune(tmp_path):
    body = """
        [[teams]]
        code = "voirie"
        name = "Voirie"
        [[teams]]
        code = "voirie"
        name = "Voirie bis"
        [[categories]]
        code = "voirie"
        name = "Voirie"
        group = "Voirie"
        [[categories]]
        code = "voirie"
        name = "Nid-de-poule"
        group = "Voirie"
        """
    write_config(tmp_path, {"communes/royat.toml": commune_toml("royat", "ROY", body)})
    assert problems(tmp_path) == [
        'communes/royat.toml: categories[1].code: duplicate category code "voirie" '
        "(first at categories[0])",
        'communes/royat.toml: teams[1].code: duplicate team code "voirie" (first at teams[0])',
    ]


def test_duplicate_reference_prefix_across_files(tmp_path):
    write_config(
        tmp_path,
        {
            "communes/ceyrat.toml": commune_toml("ceyrat", "CEY"),
            "communes/cebazat.toml": commune_toml("cebazat", "CEY"),
        },
    )
    assert problems(tmp_path) == [
        'communes/ceyrat.toml: reference_prefix: "CEY" is already used by communes/cebazat.toml'
    ]


def test_slug_must_match_the_file_name(tmp_path):
    write_config(tmp_path, {"communes/chamalieres.toml": commune_toml("chamaliere", "CHA")})
    assert problems(tmp_path) == [
        'communes/chamalieres.toml: slug: "chamaliere" does not match the file name '
        "chamalieres.toml"
    ]


def test_invalid_business_hours_range(tmp_path):
    body = """
        [business_hours]
        monday = ["08:30-12:00", "17:00-13:30"]
        tuesday = ["8h30 à midi"]
        """
    write_config(tmp_path, {"communes/royat.toml": commune_toml("royat", "ROY", body)})
    assert problems(tmp_path) == [
        "communes/royat.toml: business_hours.monday: '17:00-13:30' ends before it starts",
        "communes/royat.toml: business_hours.tuesday: '8h30 à midi' is not a range like "
        "08:30-12:00",
    ]


def test_wrong_values_say_what_is_expected(tmp_path):
    body = """
        center = [45.76, 3.05, 400]
        [[categories]]
        code = "voirie"
        name = "Voirie"
        group = "Voirie"
        priority = "critique"
        resolution_hours = "deux jours"
        """
    write_config(tmp_path, {"communes/royat.toml": commune_toml("royat", "roy", body)})
    assert problems(tmp_path) == [
        'communes/royat.toml: reference_prefix: must be 2 to 5 capital letters, like "CLF" '
        '(got "roy")',
        "communes/royat.toml: center: must have at most 2 items (got 3)",
        'communes/royat.toml: categories[0].priority: must be one of "low", "normal", "high" '
        'or "urgent" (got "critique")',
        "communes/royat.toml: categories[0].resolution_hours: must be a valid number, unable "
        'to parse string as a number (got "deux jours")',
    ]


def test_no_commune_file(tmp_path):
    (tmp_path / "communes").mkdir()
    assert problems(tmp_path) == [
        "communes/: no commune file; write one per commune, named <slug>.toml"
    ]


def test_missing_config_dir(tmp_path):
    missing = tmp_path / "nowhere"
    assert problems(missing) == [f"{missing}: configuration directory not found"]


def test_platform_file_unknown_key(tmp_path):
    write_config(
        tmp_path,
        {
            "vigie.toml": 'area_nam = "Clermont Auvergne Métropole"\n',
            "communes/royat.toml": commune_toml("royat", "ROY"),
        },
    )
    assert problems(tmp_path) == ['vigie.toml: area_nam: unknown key (did you mean "area_name"?)']


def test_every_problem_of_every_file_is_in_one_error(tmp_path):
    write_config(
        tmp_path,
        {
            "communes/aubiere.toml": commune_toml("aubiere", "AUB", "[plugins.smss]\n"),
            "communes/beaumont.toml": commune_toml("beaumont", "AUB", "couleur = 1\n"),
            "communes/royat.toml": "slug = royat\n",
            "communes/romagnat.toml": 'slug = "romagnat"\n',
        },
    )
    with pytest.raises(ConfigError) as caught:
        load_area(tmp_path, get_plugin_manager())
    expected = [
        f'communes/aubiere.toml: plugins.smss: unknown plugin "smss"; installed: {INSTALLED}',
        "communes/beaumont.toml: couleur: unknown key",
        'communes/beaumont.toml: reference_prefix: "AUB" is already used by communes/aubiere.toml',
        "communes/romagnat.toml: name: field required",
        "communes/romagnat.toml: reference_prefix: field required",
        "communes/royat.toml: TOML syntax error at line 1, column 8: invalid value",
    ]
    assert str(caught.value).splitlines() == expected
    assert caught.value.problems[0] == ConfigProblem(
        "communes/aubiere.toml",
        "plugins.smss",
        f'unknown plugin "smss"; installed: {INSTALLED}',
    )


def test_problem_about_a_whole_file_has_no_key_part():
    assert str(ConfigProblem("communes/royat.toml", "", "not UTF-8 text")) == (
        "communes/royat.toml: not UTF-8 text"
    )


def test_area_name_defaults_to_vigie_and_source_is_set(tmp_path):
    write_config(tmp_path, {"communes/royat.toml": commune_toml("royat", "ROY")})
    area = load_area(tmp_path, get_plugin_manager())
    assert area.name == "Vigie"
    assert area.commune("royat").source == "communes/royat.toml"
    assert area.commune("royat").plugins == {}


# --- Plugins: settings and register_categories -------------------------------------


class WaterPlugin:
    """A plugin adding the water network's categories to communes that enable it."""

    name = "eau_test"

    class Settings(BaseModel):
        team: str | None = None

    @hookimpl
    def register_categories(self, commune: Commune) -> list[Category]:
        settings = commune.plugin_config("eau_test")
        return [
            Category(code="eau-compteur", name="Compteur d'eau", group="Eau", team=settings.team),
            Category(code="eau-fuite", name="Fuite (plugin)", group="Eau"),
        ]


class PluginWithoutSettings:
    name = "sans_reglages"

    @hookimpl
    def register_categories(self, commune: Commune) -> None:
        return None


class BrokenPlugin:
    name = "casse"

    @hookimpl
    def register_categories(self, commune: Commune) -> list[Category]:
        raise RuntimeError("water network API unreachable")


FUITE = """
    [[categories]]
    code = "eau-fuite"
    name = "Fuite d'eau sur la voie publique"
    group = "Eau et assainissement"
    """


def test_register_categories_adds_to_communes_that_enable_the_plugin(tmp_path):
    enabled = (
        '[plugins.eau_test]\nteam = "regie-eau"\n[[teams]]\ncode = "regie-eau"\nname = "Eau"\n'
    )
    write_config(
        tmp_path,
        {
            "communes/royat.toml": commune_toml("royat", "ROY", enabled + FUITE),
            "communes/durtol.toml": commune_toml("durtol", "DUR", FUITE),
        },
    )
    area = load_area(tmp_path, get_plugin_manager(extra_plugins=(WaterPlugin(),)))
    royat, durtol = area.commune("royat"), area.commune("durtol")
    assert isinstance(royat.plugin_config("eau_test"), WaterPlugin.Settings)
    assert [c.code for c in royat.categories] == ["eau-fuite", "eau-compteur"]
    assert royat.category("eau-compteur").team == "regie-eau"
    # The commune's own category wins over the plugin's.
    assert royat.category("eau-fuite").name == "Fuite d'eau sur la voie publique"
    assert [c.code for c in durtol.categories] == ["eau-fuite"]


def test_plugin_category_naming_a_missing_team_is_a_problem(tmp_path):
    body = '[plugins.eau_test]\nteam = "regie-eau"\n'
    write_config(tmp_path, {"communes/royat.toml": commune_toml("royat", "ROY", body)})
    pm = get_plugin_manager(extra_plugins=(WaterPlugin(),))
    assert problems(tmp_path, pm) == [
        'communes/royat.toml: plugins.eau_test: category "eau-compteur" added by a plugin: team "regie-eau" is '
        "not defined: this commune has no [[teams]]; add the team, or define the category "
        "in this file"
    ]


def test_plugin_without_settings_takes_an_empty_section(tmp_path):
    write_config(
        tmp_path,
        {
            "communes/royat.toml": commune_toml("royat", "ROY", "[plugins.sans_reglages]\n"),
            "communes/durtol.toml": commune_toml(
                "durtol", "DUR", '[plugins.sans_reglages]\ncouleur = "bleu"\n'
            ),
        },
    )
    pm = get_plugin_manager(extra_plugins=(PluginWithoutSettings(),))
    assert problems(tmp_path, pm) == [
        "communes/durtol.toml: plugins.sans_reglages.couleur: unknown key (plugin "
        '"sans_reglages" takes no settings)'
    ]
    (tmp_path / "communes/durtol.toml").unlink()
    assert load_area(tmp_path, pm).commune("royat").plugins == {"sans_reglages": {}}


def test_a_failing_register_categories_does_not_stop_loading(tmp_path, caplog):
    write_config(
        tmp_path, {"communes/royat.toml": commune_toml("royat", "ROY", "[plugins.casse]\n")}
    )
    area = load_area(tmp_path, get_plugin_manager(extra_plugins=(BrokenPlugin(),)))
    assert area.commune("royat").categories == ()
    assert 'plugin "casse" failed in register_categories for commune royat' in caplog.text


def test_a_translation_must_name_the_categorys_questions_and_choices(tmp_path):
    body = """
        [[categories]]
        code = "voirie"
        name = "Voirie"
        group = "Voirie"
        [[categories.questions]]
        code = "taille"
        label = "Taille"
        type = "choice"
        choices = [{ key = "petit", name = "Petit" }]
        [categories.translations.en]
        name = "Roads"
        [categories.translations.en.questions.taille]
        choices = { small = "Small" }
        [categories.translations.en.questions.couleur]
        label = "Colour"
        [categories.translations.English]
        name = "Roads"
        """
    write_config(tmp_path, {"communes/royat.toml": commune_toml("royat", "ROY", body)})
    [problem] = problems(tmp_path)
    assert problem.startswith("communes/royat.toml: categories[0]: ")
    assert "translations.en.questions.taille.choices.small: no such choice (choices: petit)" in problem
    assert "translations.en.questions.couleur: no such question" in problem
    assert "translations.English: not a two-letter language code" in problem
