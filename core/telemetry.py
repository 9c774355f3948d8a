"""Readings go to the time-series plugins of their commune, never to the ticket database."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from core.runtime import Runtime
from core.signals import Reading


def store_readings(runtime: Runtime, readings: Iterable[Reading]) -> int:
    """Hand readings to ``store_telemetry``, one batch per commune; return how many were handed."""
    by_commune: dict[str, list[Reading]] = defaultdict(list)
    for reading in readings:
        if reading.commune:
            by_commune[reading.commune].append(reading)
    handed = 0
    for slug, batch in by_commune.items():
        commune = runtime.area.commune(slug)
        if commune is None:
            continue
        runtime.pm.call_all(
            "store_telemetry", readings=batch, commune=commune, settings=runtime.settings
        )
        handed += len(batch)
    return handed
