"""The influxdb plugin writes line protocol itself: each line must be the one
influxdb-client's ``Point`` would write for the same reading, whatever the
names and values hold (spaces, commas, equals signs, quotes, backslashes,
newlines, any unicode, NaN...)."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from influxdb_client import Point

from core.signals import Reading
from plugins import influxdb

T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)

# Characters line protocol escapes, and the ones around them.
TRICKY = " ,=\"'\\\n\r\t#é€\U0001f4a7\x00"
texts = st.text(alphabet=st.sampled_from(TRICKY) | st.characters(), max_size=12)
field_values = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.booleans()
    | texts
    | st.none()
)
moments = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.none()
    | st.just(UTC)
    | st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-23 * 60, 23 * 60)),
)


def point_line(reading: Reading, commune: str) -> str:
    """What influxdb-client writes: the plugin's reference (its former code)."""
    point = Point(reading.device_kind).tag("device_id", reading.device_id).tag("commune", commune)
    for key, value in sorted(reading.tags.items()):
        if value not in (None, "") and key not in ("device_id", "commune"):
            point.tag(key, value)
    for key, value in reading.fields.items():
        if isinstance(value, float) and value != value:
            continue
        point.field(key, value)
    point.time(reading.observed_at, "ms")
    return point.to_line_protocol()


def lines_and_warnings(write: Any, reading: Reading, commune: str) -> tuple[str, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = write(reading, commune)
    return line, [type(w.message).__name__ for w in caught]


@settings(max_examples=400, deadline=None)
@given(
    kind=texts,
    device_id=texts,
    commune=texts,
    tags=st.dictionaries(texts | st.sampled_from(["device_id", "commune"]), texts, max_size=4),
    fields=st.dictionaries(texts, field_values, max_size=5),
    observed_at=moments,
)
@example(
    kind="water meter,v2",
    device_id="WM 1,a=b",
    commune="saint-éloy",
    tags={"zone": "bleue\\", "a b": "c=d", "nl": "x\ny", "device_id": "other", "empty": ""},
    fields={
        "volume m3": 1.0,
        "count": 3,
        "big": 2**64,
        "ok": True,
        "note": 'say "hi"\\ \n then,=',
        "path": "C:\\temp",
        "quote": '"',
        "nan": float("nan"),
        "inf": float("-inf"),
        "small": 1e-7,
    },
    observed_at=datetime(2026, 11, 24, 6, 0, 0, 999_999, tzinfo=UTC),
)
@example(kind="#comment", device_id="d", commune="c", tags={}, fields={"v": 1}, observed_at=T0)
@example(kind="k", device_id="", commune="c", tags={}, fields={"v": None}, observed_at=T0)
def test_each_line_is_the_one_influxdb_client_writes(
    kind: str,
    device_id: str,
    commune: str,
    tags: dict[str, str],
    fields: dict[str, Any],
    observed_at: datetime,
) -> None:
    reading = Reading(
        device_id=device_id,
        device_kind=kind,
        observed_at=observed_at,
        fields=fields,
        commune=commune,
        tags=tags,
    )
    assert lines_and_warnings(influxdb.to_line, reading, commune) == lines_and_warnings(
        point_line, reading, commune
    )


def test_a_reading_with_awkward_names_and_values_reads_back_as_written() -> None:
    reading = Reading(
        device_id="WM 1",
        device_kind="water_meter",
        observed_at=T0,
        fields={"volume_m3": 12.0, "battery_years": 11, "state": 'a "b"\\', "on": False},
        commune="clermont",
        tags={"zone": "a,b=c", "end": "x\\"},
    )
    assert influxdb.to_line(reading, "clermont") == (
        "water_meter,commune=clermont,device_id=WM\\ 1,end=x\\ ,zone=a\\,b\\=c "
        'battery_years=11i,on=false,state="a \\"b\\"\\\\",volume_m3=12 1795500000000'
    )


def test_a_reading_without_a_storable_field_is_no_line() -> None:
    reading = Reading(
        device_id="WM-1",
        device_kind="water_meter",
        observed_at=T0,
        fields={"volume_m3": float("nan"), "battery_years": None},
        commune="clermont",
    )
    assert influxdb.to_line(reading, "clermont") == ""
