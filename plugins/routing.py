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


@hookimpl
def check_commune(commune: Commune) -> list[str]:
    settings: Settings = commune.plugin_config("routing") or Settings()
    teams = ", ".join(t.code for t in commune.teams) or "none"
    problems = []
    if settings.default_team and commune.team(settings.default_team) is None:
        problems.append(
            f'default_team "{settings.default_team}" is not a team of {commune.slug} '
            f"(teams: {teams})"
        )
    for code in settings.redirects:
        if commune.category(code) is None:
            problems.append(f'redirects.{code}: "{code}" is not a category of {commune.slug}')
    return problems


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
