"""Open311 GeoReport v2: residents' apps report and follow problems (plugin ``open311``).

Enable it in a commune's file with ``[plugins.open311]`` (settings in
:class:`connectors.open311.settings.Settings`); the endpoints are served at
``/open311/v2`` and the discovery document at ``/open311/discovery.xml``.
See ``docs/open311.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from fastapi import APIRouter

from core.config import Commune
from core.connectors import ChannelConnector, Connector
from core.hookspecs import hookimpl
from core.settings import Settings as PlatformSettings

from .jurisdictions import published_services
from .settings import RateLimit, Settings
from .submissions import CHANNEL

__all__ = ["Open311Channel", "RateLimit", "Settings"]


class Open311Channel(ChannelConnector):
    name: ClassVar[str] = "open311"
    channel: ClassVar[str] = CHANNEL
    description: ClassVar[str] = (
        "Open311 GeoReport v2 at /open311/v2: residents' apps (tickets' channel: app)"
    )


@hookimpl
def register_connectors() -> Iterable[Connector]:
    return [Open311Channel()]


@hookimpl
def register_routes(settings: PlatformSettings) -> Iterable[APIRouter]:
    from .routes import build_router

    return [build_router()]


@hookimpl
def check_commune(commune: Commune) -> list[str]:
    settings: Settings = commune.plugin_config("open311") or Settings()
    problems = []
    codes = ", ".join(c.code for c in commune.categories) or "none"
    for code in settings.public_categories or ():
        if commune.category(code) is None:
            problems.append(
                f'public_categories: "{code}" is not a category of {commune.slug} ({codes})'
            )
    for code in settings.service_notices:
        if commune.category(code) is None:
            problems.append(f'service_notices.{code}: "{code}" is not a category of {commune.slug}')
    if not published_services(commune, settings):
        problems.append("no category is published as an Open311 service")
    return problems
