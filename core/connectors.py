"""What a connector is, and the registry of the installed ones.

Connectors bring signals in (sensor networks, citizen channels) or carry
messages out. They are contributed by plugins through ``register_connectors``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from core.signals import Alert, DeviceInfo, Reading, Uplink

if TYPE_CHECKING:
    from core.config import Commune


class Connector:
    """Describes a connector. Subclass it, or one of the kinds below."""

    name: ClassVar[str]
    direction: ClassVar[Literal["in", "out"]] = "in"
    description: ClassVar[str] = ""


class SensorConnector(Connector):
    """Reads decoded sensor payloads of one device kind.

    ``interpret`` receives the uplink (envelope already removed), the
    registered device, its commune and the device's ``state``; it returns
    alerts (conditions raised or cleared) and readings (telemetry). It raises
    ``ValueError`` with a reason when the payload does not make sense: the
    message then goes to the dead letters.

    ``state`` is the connector's memory of one device between its messages
    (which conditions are active, since when a parking bay is occupied...).
    The ingestion worker loads it before the call (``{}`` for a device never
    seen), lets ``interpret`` change it in place, and stores it with the
    signals of the same message, in the same transaction. ``interpret``
    changes it only when it returns (never when it raises). Only the
    connector reads its keys. It must stay a
    JSON-serialisable dict (strings, numbers, booleans, lists, dicts), and a
    connector must accept one it did not write (an older version's, or
    ``{}``) without failing.
    """

    device_kind: ClassVar[str]

    def interpret(
        self, uplink: Uplink, device: DeviceInfo, commune: Commune, state: dict[str, Any]
    ) -> Iterable[Alert | Reading]:
        raise NotImplementedError


class ChannelConnector(Connector):
    """A citizen channel (web form, SMS, Open311...): its own routes bring reports in."""

    channel: ClassVar[str]


def collect_connectors(pm) -> dict[str, Connector]:
    """Every connector registered by any plugin, by name; a duplicate name is an error."""
    found: dict[str, Connector] = {}
    for result in pm.call_all("register_connectors"):
        for connector in result:
            if connector.name in found:
                raise ValueError(f"two connectors are named {connector.name!r}")
            found[connector.name] = connector
    return found
