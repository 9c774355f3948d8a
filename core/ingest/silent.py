"""Silent devices: a meter that stopped talking is a problem too.

:func:`check_silent_meters` is run periodically by the ingest process. For
each sensor connector whose module offers ``silent_meter_alerts`` (the water
connector does) and each commune enabling it, it hands the function the
last-heard times the registry keeps for the commune's devices of that kind,
and feeds the alerts it returns through the same desk as MQTT alerts
(repeats, storms, tickets). Each alert's idempotency key names the device
and when it was last heard, so each silence is reported once however often
the check runs. A device never heard since it was registered is not silent.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import select

from core.config import Commune
from core.connectors import SensorConnector
from core.db.sensor_models import Device
from core.devices import as_registered
from core.envelopes import as_utc
from core.ingest.alerts import AlertDesk, IncomingAlert
from core.ingest.batch import BatchOutcome
from core.runtime import Runtime
from core.signals import Alert

log = logging.getLogger(__name__)

DEFAULT_SILENT_HOURS = 48.0
FINDER = "silent_meter_alerts"


def _finder(connector: SensorConnector) -> Callable[..., list[Alert]] | None:
    module = importlib.import_module(type(connector).__module__)
    finder = getattr(module, FINDER, None)
    return finder if callable(finder) else None


def silent_after_hours(connector: SensorConnector, commune: Commune) -> float:
    settings = None
    read_settings = getattr(connector, "settings", None)
    if callable(read_settings):
        try:
            settings = read_settings(commune)
        except Exception:
            log.exception('connector "%s": settings of %s unreadable', connector.name, commune.slug)
    settings = settings or commune.plugin_config(connector.name)
    return float(getattr(settings, "silent_after_hours", DEFAULT_SILENT_HOURS))


def check_silent_meters(runtime: Runtime, now: datetime) -> BatchOutcome:
    """Raise ``silent`` for the devices not heard for their commune's
    ``silent_after_hours``; committed before returning. Returns what was stored."""
    now = as_utc(now)
    outcome = BatchOutcome()
    jobs = []
    for connector in runtime.connectors.values():
        if not isinstance(connector, SensorConnector):
            continue
        finder = _finder(connector)
        if finder is None:
            continue
        for commune in runtime.area.communes.values():
            if commune.enables(connector.name):
                jobs.append((connector, finder, commune, silent_after_hours(connector, commune)))
    if not jobs:
        return outcome
    with runtime.sessions() as session:
        try:
            incoming: list[IncomingAlert] = []
            for connector, finder, commune, hours in jobs:
                rows = session.scalars(
                    select(Device).where(
                        Device.kind == connector.device_kind,
                        Device.commune == commune.slug,
                        Device.last_seen_at.is_not(None),
                        Device.last_seen_at <= now - timedelta(hours=hours),
                    )
                ).all()
                if not rows:
                    continue
                devices = {row.device_id: as_registered(row).info for row in rows}
                last_seen = {row.device_id: row.last_seen_at for row in rows}
                try:
                    alerts = finder(last_seen, now, hours, devices)
                except Exception:
                    log.exception('connector "%s" failed to list silent devices', connector.name)
                    continue
                for alert in alerts:
                    device = devices.get(alert.device_id)
                    if device is None:
                        continue
                    alert = replace(
                        alert,
                        commune=commune.slug,
                        asset=alert.asset or device.asset,
                        device_kind=alert.device_kind or device.kind,
                        connector=alert.connector or connector.name,
                    )
                    incoming.append(IncomingAlert(alert, commune, device, connector))
            # A few alerts an hour: each ticket in its own savepoint.
            desk = AlertDesk(runtime, session, outcome, _log_failure, careful=True)
            desk.handle(incoming)
            desk.finish()
            session.commit()
        except BaseException:
            session.rollback()
            raise
    return outcome


def _log_failure(item: IncomingAlert, reason: str) -> None:
    log.error("silent alert of %s not stored: %s", item.alert.device_id, reason)
