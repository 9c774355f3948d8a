"""What comes in: signals (sensor alerts and residents' reports) and readings.

A *signal* is anything that may open or join a ticket. Connectors and channels
build these plain objects; core matches them to tickets. Nothing here names a
vendor, a channel or a sensor type: those are strings chosen by plugins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Location:
    """Where a problem is: WGS84 coordinates and/or a postal address."""

    latitude: float | None = None
    longitude: float | None = None
    address: str | None = None

    @property
    def has_point(self) -> bool:
        return self.latitude is not None and self.longitude is not None


@dataclass(frozen=True)
class Reporter:
    """A resident who reported something. Personal data: never public."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    notify_by: str | None = None  # "email", "sms" or None: how they want to hear back
    language: str = "fr"


@dataclass(frozen=True)
class Report:
    """A resident's report, from any citizen channel or typed in by staff."""

    commune: str
    category: str
    description: str
    channel: str
    location: Location = field(default_factory=Location)
    reporter: Reporter = field(default_factory=Reporter)
    answers: dict[str, Any] = field(default_factory=dict)
    priority: str | None = None
    received_at: datetime | None = None
    # Same key twice (a retried POST, a redelivered message) is one signal.
    idempotency_key: str | None = None
    # Channel-specific extras kept with the signal (never shown publicly).
    extra: dict[str, Any] = field(default_factory=dict)
    # The key was drawn at random for this report (a channel that must name
    # the signal when its sender gave no key): no signal can hold it yet, so
    # intake does not look for one.
    key_drawn: bool = False

    kind = "report"


@dataclass(frozen=True)
class Alert:
    """A condition raised (or cleared) by a device, as read by a connector.

    ``condition`` is the connector's own word (``leak``, ``lamp_failure``...);
    ``recovered`` is True when the device says the condition is over.
    """

    device_id: str
    condition: str
    observed_at: datetime
    severity: str = "normal"
    recovered: bool = False
    commune: str | None = None
    location: Location = field(default_factory=Location)
    asset: str | None = None
    device_kind: str | None = None
    connector: str | None = None
    idempotency_key: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    kind = "alert"
    channel = "sensor"


Signal = Report | Alert


@dataclass(frozen=True)
class Reading:
    """A measurement for the time-series store (never for the ticket database)."""

    device_id: str
    device_kind: str
    observed_at: datetime
    fields: dict[str, float | int | bool | str]
    commune: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class TicketDraft:
    """What a ticket will look like before it is stored.

    Produced by the ``draft_ticket`` hook from a signal; routing and due dates
    are added after.
    """

    commune: str
    category: str
    description: str
    channel: str
    priority: str = "normal"
    location: Location = field(default_factory=Location)
    answers: dict[str, Any] = field(default_factory=dict)
    asset: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class RoutingDecision:
    """Who handles a ticket: one of the commune's teams, or an outside body.

    ``outside_body`` (e.g. "Enedis", "SNCF Réseau") means the city redirects
    the ticket; ``reason`` is shown in the history.
    """

    team: str | None = None
    outside_body: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Notification:
    """A message to a resident or to staff, queued in the outbox.

    ``channel`` is the delivery channel ("email", "sms", ...); a plugin that
    implements ``send_notification`` for it delivers the message.
    """

    channel: str
    recipient: str
    subject: str
    body: str
    commune: str
    ticket_reference: str | None = None
    language: str = "fr"


@dataclass(frozen=True)
class Uplink:
    """A sensor message with its network envelope removed.

    Built by the shared envelope code (The Things Stack, ChirpStack, plain
    JSON); connectors read only ``payload``, the decoded application data.
    """

    topic: str
    payload: dict[str, Any]
    received_at: datetime
    device_id: str | None = None
    dev_eui: str | None = None  # lowercase hex
    network: str = "plain"  # "ttn-v3", "chirpstack-v4", "chirpstack-v3", "plain"
    message_id: str | None = None  # the network's own id, for deduplication
    tags: dict[str, str] = field(default_factory=dict)
    location: Location = field(default_factory=Location)


@dataclass(frozen=True)
class DeviceInfo:
    """A registered device, as connectors see it."""

    device_id: str
    kind: str
    commune: str
    dev_eui: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    address: str | None = None
    asset: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def location(self) -> Location:
        return Location(self.latitude, self.longitude, self.address)
