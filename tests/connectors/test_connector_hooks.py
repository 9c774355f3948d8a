"""The three sensor connectors as plugins: registered, listed, and drafting
tickets only for the communes that enable them."""

from __future__ import annotations

import inspect
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from connectors import lighting, parking, water
from core.config import Category, Commune
from core.connectors import SensorConnector, collect_connectors
from core.plugin_manager import VigiePluginManager, get_plugin_manager
from core.signals import Alert, Report

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MODULES = {"water": water, "lighting": lighting, "parking": parking}
KINDS = {"water": "water_meter", "lighting": "streetlight", "parking": "parking_spot"}
CATEGORIES = (
    Category(code="eau-assainissement", name="Eau", group="Eau"),
    Category(code="eclairage", name="Éclairage", group="Voirie"),
    Category(code="stationnement", name="Stationnement", group="Voirie"),
)


@pytest.fixture
def pm() -> VigiePluginManager:
    pm = get_plugin_manager()
    for name, module in MODULES.items():
        assert pm.get_plugin(name) is module, f"{name} is a built-in plugin"
    return pm


def commune(*enabled: str) -> Commune:
    return Commune(
        slug="clermont-ferrand",
        name="Clermont-Ferrand",
        reference_prefix="CLF",
        categories=CATEGORIES,
        plugins={name: MODULES[name].Settings() for name in enabled},
    )


ALERTS = {
    "water": Alert("wm-1", "burst", NOW, device_kind="water_meter", connector="water"),
    "lighting": Alert("SL-1", "power_loss", NOW, device_kind="streetlight", connector="lighting"),
    "parking": Alert("PK-1", "overstay", NOW, device_kind="parking_spot", connector="parking"),
}


def test_collect_connectors_lists_the_three(pm: VigiePluginManager) -> None:
    connectors = collect_connectors(pm)
    for name, kind in KINDS.items():
        connector = connectors[name]
        assert isinstance(connector, SensorConnector)
        assert (connector.device_kind, connector.direction) == (kind, "in")
        assert connector.description


def test_each_plugin_declares_its_settings(pm: VigiePluginManager) -> None:
    for name, module in MODULES.items():
        assert pm.settings_model(name) is module.Settings
        assert set(module.Settings().conditions) == set(module.Settings.DEFAULT_CONDITIONS)


def test_interpret_takes_the_device_state(pm: VigiePluginManager) -> None:
    for connector in collect_connectors(pm).values():
        if isinstance(connector, SensorConnector):
            assert list(inspect.signature(connector.interpret).parameters) == [
                "uplink",
                "device",
                "commune",
                "state",
            ]
    base = inspect.signature(SensorConnector.interpret).parameters
    assert list(base) == ["self", "uplink", "device", "commune", "state"]


@pytest.mark.parametrize("enabled", sorted(MODULES))
def test_draft_only_from_the_enabled_connector(pm: VigiePluginManager, enabled: str) -> None:
    only = commune(enabled)
    for name, alert in ALERTS.items():
        signal = replace(alert, commune=only.slug)
        draft, plugin = pm.call_first("draft_ticket", signal=signal, commune=only, settings=None)
        if name == enabled:
            assert plugin == name
            assert draft.channel == "sensor"
            assert (
                draft.category
                == MODULES[name].Settings.DEFAULT_CONDITIONS[alert.condition]["category"]
            )
        else:
            assert (draft, plugin) == (None, None)


def test_each_alert_drafted_by_its_own_connector(pm: VigiePluginManager) -> None:
    everything = commune(*MODULES)
    expected = {
        "water": ("eau-assainissement", "urgent"),
        "lighting": ("eclairage", "high"),
        "parking": ("stationnement", "normal"),
    }
    for name, alert in ALERTS.items():
        draft, plugin = pm.call_first(
            "draft_ticket", signal=alert, commune=everything, settings=None
        )
        assert plugin == name
        assert (draft.category, draft.priority) == expected[name]


def test_commune_settings_reach_the_draft(pm: VigiePluginManager) -> None:
    override = commune("water").model_copy(
        update={"plugins": {"water": water.Settings(conditions={"burst": {"priority": "normal"}})}}
    )
    draft, _ = pm.call_first(
        "draft_ticket", signal=ALERTS["water"], commune=override, settings=None
    )
    assert draft.priority == "normal"


def test_reports_and_recoveries_are_left_to_others(pm: VigiePluginManager) -> None:
    everything = commune(*MODULES)
    report = Report(
        commune="clermont-ferrand",
        category="eclairage",
        description="Lampadaire éteint",
        channel="web",
    )
    draft, plugin = pm.call_first("draft_ticket", signal=report, commune=everything, settings=None)
    assert plugin == "defaults"  # core's fallback takes a report as it is
    recovered = Alert("wm-1", "burst", NOW, device_kind="water_meter", recovered=True)
    assert pm.call_first("draft_ticket", signal=recovered, commune=everything, settings=None) == (
        None,
        None,
    )


def test_check_commune_reports_missing_categories(pm: VigiePluginManager) -> None:
    bare = Commune(
        slug="beaumont",
        name="Beaumont",
        reference_prefix="BEA",
        plugins={"lighting": lighting.Settings()},
    )
    problems = dict(pm.call_each("check_commune", commune=bare))
    assert problems["lighting"] == [
        'category "eclairage" (conditions broken_lantern, burning_by_day, cabinet_door_open, '
        "column_damage, communication_lost, lamp_failure, power_loss) is not a category of "
        "beaumont; define it, or set conditions.<condition>.category"
    ]
    assert "water" not in problems
    assert dict(pm.call_each("check_commune", commune=commune(*MODULES))).get("water") == []
