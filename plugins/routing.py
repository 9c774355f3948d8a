"""Routing: send each ticket to the team its category names, or outside.

Enable with ``[plugins.routing]`` in a commune's file. Settings::

    [plugins.routing]
    default_team = "proxim-cite"          # when the category names no team
    [plugins.routing.redirects.signalisation-ferroviaire]
    outside_body = "SNCF Réseau"
    reason = "Level crossings are maintained by SNCF Réseau."
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from core.config import Commune
from core.hookspecs import hookimpl
from core.signals import RoutingDecision
from core.snapshots import TicketSnapshot


class Redirect(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    outside_body: str
    reason: str


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    default_team: str | None = None
    # Category code -> outside body handling it instead of the city.
    redirects: dict[str, Redirect] = {}


@hookimpl(trylast=True)
def route_ticket(ticket: TicketSnapshot, commune: Commune) -> RoutingDecision | None:
    settings: Settings = commune.plugin_config("routing") or Settings()
    redirect = settings.redirects.get(ticket.category)
    if redirect is not None:
        return RoutingDecision(outside_body=redirect.outside_body, reason=redirect.reason)
    category = commune.category(ticket.category)
    team = (category.team if category else None) or settings.default_team
    if team is None:
        return None
    return RoutingDecision(team=team, reason=f"category {ticket.category}")
