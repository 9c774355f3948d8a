"""The device registry: CSV and GeoJSON imports (all or nothing, every problem
named), upserts, and lookups by device id or DevEUI through the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.db.sensor_models import Device
from core.devices import (
    DeviceImportError,
    DeviceRegistry,
    import_devices,
    parse_devices,
    parse_tags,
)

REPO = Path(__file__).resolve().parents[2]
COMMUNES = ("clermont-ferrand", "chamalieres", "aubiere")
KINDS = ("water_meter", "streetlight", "parking_spot")
HEADER = "device_id,dev_eui,kind,commune,latitude,longitude,address,asset,tags\n"


def imported(runtime, name: str, data: str | bytes):
    with runtime.sessions() as session:
        result = import_devices(runtime, session, name, data)
        session.commit()
    return result


def device_count(runtime) -> int:
    with runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(Device))


def test_the_demo_registry_imports(vigie_runtime):
    total = 0
    for path in sorted((REPO / "config" / "devices").iterdir()):
        if path.suffix in (".csv", ".geojson"):
            result = imported(vigie_runtime, path.name, path.read_bytes())
            assert result.updated == 0
            total += result.created
    assert device_count(vigie_runtime) == total >= 60
    with vigie_runtime.sessions() as session:
        lamp = session.scalar(select(Device).where(Device.device_id == "SL-CLF-04412"))
        assert (lamp.dev_eui, lamp.asset, lamp.kind) == (
            "0004a30b00e8f112", "ARM-CLF-112/C2", "streetlight",
        )  # fmt: skip
        bay = session.scalar(select(Device).where(Device.device_id == "PK-CHAM-0031"))
        assert (bay.latitude, bay.longitude) == (45.77428, 3.06698)  # from the GeoJSON Point
        assert bay.tags["zone"] == "blue"
        kinds = set(
            session.scalars(select(Device.kind).where(Device.commune == "clermont-ferrand"))
        )
        assert kinds == set(KINDS)


def test_csv_rows_are_checked_and_normalised():
    csv = HEADER + (
        "lamp-1,00-04-A3-0B-00-E8-F1-12,streetlight,clermont-ferrand,45.77,3.08,"
        '"1 rue Blatin, Clermont",ARM-1/C2,cabinet=ARM-1; circuit = C2\n'
        'meter-1,,water_meter,aubiere,"45,75","3,11",,,"{""sector"": ""nord"", ""dn"": 15}"\n'
    )
    lamp, meter = parse_devices("d.csv", csv, COMMUNES, KINDS)
    assert lamp.dev_eui == "0004a30b00e8f112"
    assert lamp.tags == {"cabinet": "ARM-1", "circuit": "C2"}
    assert lamp.address == "1 rue Blatin, Clermont"
    assert (meter.latitude, meter.longitude) == (45.75, 3.11)
    assert meter.tags == {"sector": "nord", "dn": "15"}
    assert meter.dev_eui is None and meter.asset is None


def test_every_bad_row_is_reported_and_nothing_is_imported(vigie_runtime):
    imported(vigie_runtime, "first.csv", HEADER + "keep-1,,streetlight,aubiere,,,,,\n")
    bad = HEADER + (
        "ok-1,,streetlight,aubiere,,,,,\n"
        "x-2,12345,lamp,paris,95,3.1,,,a\n"
        ",,water_meter,aubiere,45.7,,,,\n"
        "ok-1,,streetlight,aubiere,,,,,\n"
    )
    with pytest.raises(DeviceImportError) as caught:
        imported(vigie_runtime, "bad.csv", bad)
    assert caught.value.problems == [
        "bad.csv:line 3: kind: unknown kind 'lamp'; kinds: water_meter, streetlight, parking_spot",
        "bad.csv:line 3: commune: unknown commune 'paris'; communes: aubiere, beaumont, "
        "chamalieres, clermont-ferrand, cournon-d-auvergne, royat",
        "bad.csv:line 3: dev_eui: '12345' is not 16 hex digits",
        "bad.csv:line 3: latitude: '95' is outside -90..90",
        "bad.csv:line 3: tags: 'a' is not key=value (write k=v;k=v)",
        "bad.csv:line 4: device_id: required",
        "bad.csv:line 4: longitude: required with the other coordinate",
        "bad.csv:line 5: device_id: 'ok-1' is also at bad.csv:line 2",
    ]
    assert device_count(vigie_runtime) == 1


def test_unknown_columns_and_bad_geojson_are_named():
    with pytest.raises(DeviceImportError) as caught:
        parse_devices("d.csv", "device_id,kind,comune\nx,streetlight,aubiere\n", COMMUNES, KINDS)
    assert caught.value.problems[0].startswith("d.csv:line 1: comune: unknown column")
    assert "d.csv:line 1: commune: missing column" in caught.value.problems
    geojson = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "LineString"}, "properties": {}},
            {"type": "Feature", "geometry": None, "properties": {"device_id": "a", "kind": "x"}},
        ],
    }
    with pytest.raises(DeviceImportError) as caught:
        parse_devices("d.geojson", json.dumps(geojson), COMMUNES, KINDS)
    assert caught.value.problems == [
        "d.geojson:feature 1: geometry: expected a Point with [longitude, latitude]",
        "d.geojson:feature 2: commune: required",
        "d.geojson:feature 2: kind: unknown kind 'x'; "
        "kinds: water_meter, streetlight, parking_spot",
    ]
    with pytest.raises(DeviceImportError) as caught:
        parse_devices("d.geojson", '{"type": "FeatureCollection", ', COMMUNES, KINDS)
    assert caught.value.problems[0].startswith("d.geojson:line 1: not valid JSON")


def test_tags_read_both_ways():
    assert parse_tags("a=1;b = x y;") == {"a": "1", "b": "x y"}
    assert parse_tags('{"a": 1, "b": true}') == {"a": "1", "b": "true"}
    assert parse_tags({"zone": "blue"}) == {"zone": "blue"}
    assert parse_tags("") == {}
    with pytest.raises(ValueError):
        parse_tags('{"a": [1]}')


def test_a_reimport_updates_and_keeps_what_ingestion_learnt(vigie_runtime):
    imported(vigie_runtime, "a.csv", HEADER + "m-1,70b3d5e75e000001,water_meter,aubiere,,,,,\n")
    with vigie_runtime.sessions() as session:
        meter = session.scalar(select(Device).where(Device.device_id == "m-1"))
        meter.state = {"active": {"leak": "2026-11-24T10:00:00+00:00"}}
        session.commit()
    result = imported(
        vigie_runtime,
        "b.csv",
        HEADER + "m-1,70B3D5E75E000001,water_meter,aubiere,,,2 rue A,PDL-9,\n",
    )
    assert (result.created, result.updated) == (0, 1)
    with vigie_runtime.sessions() as session:
        meter = session.scalar(select(Device).where(Device.device_id == "m-1"))
        assert (meter.address, meter.asset) == ("2 rue A", "PDL-9")
        assert meter.state == {"active": {"leak": "2026-11-24T10:00:00+00:00"}}


def test_a_dev_eui_belongs_to_one_device(vigie_runtime):
    imported(vigie_runtime, "a.csv", HEADER + "m-1,70b3d5e75e000001,water_meter,aubiere,,,,,\n")
    with pytest.raises(DeviceImportError) as caught:
        imported(vigie_runtime, "b.csv", HEADER + "m-2,70b3d5e75e000001,water_meter,aubiere,,,,,\n")
    assert caught.value.problems == [
        "b.csv:line 2: dev_eui: 70b3d5e75e000001 is registered to device 'm-1'"
    ]
    # Moving it is fine when its holder gets another in the same file.
    imported(
        vigie_runtime,
        "c.csv",
        HEADER
        + "m-1,70b3d5e75e000009,water_meter,aubiere,,,,,\n"
        + "m-2,70b3d5e75e000001,water_meter,aubiere,,,,,\n",
    )


def test_lookups_by_id_or_dev_eui_and_the_cache(vigie_runtime):
    registry = DeviceRegistry(vigie_runtime)
    with vigie_runtime.sessions() as session:
        assert registry.find(session, "lamp-9", "0004A30B00E8F199") is None
    imported(vigie_runtime, "a.csv", HEADER + "lamp-9,0004a30b00e8f199,streetlight,aubiere,,,,,\n")
    with vigie_runtime.sessions() as session:
        # The import cleared this process's cache: no stale "unknown".
        by_id = registry.find(session, "lamp-9", None)
        by_eui = registry.find(session, "eui-0004a30b00e8f199", "0004A30B00E8F199")
        assert by_id is not None and by_eui == by_id
        assert by_id.info.kind == "streetlight" and by_id.info.commune == "aubiere"
        assert registry.find(session, "other", None) is None


def test_the_cli_imports_and_lists_devices(tmp_path):
    env = {
        **os.environ,
        "VIGIE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "VIGIE_CONFIG_DIR": str(REPO / "config"),
        "VIGIE_DATA_DIR": str(tmp_path / "data"),
        "VIGIE_LOG_LEVEL": "WARNING",
    }

    def vigie(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "core.cli", *args],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "x,,lamp,aubiere,,,,,\n")
    result = vigie("devices", "import", str(bad))
    assert result.returncode == 1
    assert "bad.csv:line 2: kind: unknown kind 'lamp'" in result.stderr
    assert "nothing imported" in result.stderr
    result = vigie("devices", "import", str(REPO / "config" / "devices" / "chamalieres.geojson"))
    assert result.returncode == 0, result.stderr
    assert "13 device(s) added, 0 updated" in result.stdout
    result = vigie("devices", "list", "--kind", "parking_spot")
    assert result.returncode == 0, result.stderr
    assert "PK-CHAM-0031" in result.stdout and "SL-CHA-00201" not in result.stdout
    result = vigie("deadletters", "--limit", "5")
    assert result.returncode == 0 and "no dead letters" in result.stderr
