"""What a commune sets in ``[plugins.open311]``; every field has a default."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.ratelimit import RateLimit

__all__ = ["RateLimit", "Settings"]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Settings(BaseModel):
    """Open311 GeoReport v2 for one commune (its ``jurisdiction_id`` is its slug)."""

    model_config = _STRICT
    # Accepted as jurisdiction_id besides the slug, e.g. the city's web domain
    # that the spec suggests ("clermont-ferrand.fr").
    jurisdiction_aliases: tuple[str, ...] = ()
    # Category codes published as services; None: every category with public = true.
    public_categories: tuple[str, ...] | None = None
    # "realtime": POST answers the service_request_id; "batch": a token to
    # exchange for it with GET tokens/{token}.
    service_type: Literal["realtime", "batch"] = "realtime"
    # expected_datetime when no plugin gave the ticket a due date.
    expected_response_hours: float | None = Field(default=None, gt=0)
    # service_notice for every service, and per category code.
    service_notice: str | None = Field(default=None, max_length=1000)
    service_notices: dict[str, str] = {}
    # Tickets from these channels show no description: staff typed it while
    # talking to the resident, and it may name them.
    private_description_channels: tuple[str, ...] = ("phone", "counter", "email", "mail")
    # Discovery document: how to reach the maintainers, how to get an api_key.
    contact: str | None = None
    key_service: str | None = None
    # Abuse limits, per process (each API process keeps its own buckets).
    read_per_address: RateLimit = RateLimit(per_minute=600, burst=120)
    write_per_address: RateLimit = RateLimit(per_minute=30, burst=10)
    write_per_api_key: RateLimit = RateLimit(per_minute=600, burst=100)
    # Client addresses with no per-address limit (the city's own front end).
    exempt_addresses: tuple[str, ...] = ()

    @field_validator("jurisdiction_aliases")
    @classmethod
    def _plain_aliases(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for alias in value:
            if not alias or alias != alias.strip() or "/" in alias:
                raise ValueError(f"{alias!r} is not usable as a jurisdiction_id")
        return value
