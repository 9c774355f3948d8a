"""Which communes Open311 serves, and how a ``jurisdiction_id`` names one.

A commune is served when its file enables ``[plugins.open311]``; its
jurisdiction_id is its slug (or one of its ``jurisdiction_aliases``). The
spec's rule: jurisdiction_id is required only when the endpoint serves more
than one jurisdiction; with a single one it may be left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import Area, Category, Commune

from .formats import Open311Error
from .settings import Settings

PLUGIN = "open311"


@dataclass(frozen=True)
class Jurisdiction:
    commune: Commune
    settings: Settings
    services: dict[str, Category]  # published categories by code, in the file's order

    @property
    def slug(self) -> str:
        return self.commune.slug


def published_services(commune: Commune, settings: Settings) -> dict[str, Category]:
    """The categories shown as Open311 services: ``public_categories``, else the public ones."""
    if settings.public_categories is not None:
        wanted = set(settings.public_categories)
        return {c.code: c for c in commune.categories if c.code in wanted}
    return {c.code: c for c in commune.categories if c.public}


class Jurisdictions:
    """The served communes of an area, found by jurisdiction_id."""

    def __init__(self, area: Area) -> None:
        self.area = area
        self.served: list[Jurisdiction] = []
        for commune in area.communes.values():
            if not commune.enables(PLUGIN):
                continue
            settings = commune.plugin_config(PLUGIN) or Settings()
            services = published_services(commune, settings)
            self.served.append(Jurisdiction(commune, settings, services))
        self._by_id: dict[str, Jurisdiction] = {}
        for jurisdiction in self.served:  # aliases first: a slug always wins over an alias
            for alias in jurisdiction.settings.jurisdiction_aliases:
                self._by_id.setdefault(alias.lower(), jurisdiction)
        for jurisdiction in self.served:
            self._by_id[jurisdiction.slug] = jurisdiction

    def find(self, jurisdiction_id: str | None) -> Jurisdiction | None:
        """The jurisdiction meant, or None (never raises: used before refusing)."""
        if jurisdiction_id:
            return self._by_id.get(jurisdiction_id.strip().lower())
        return self.served[0] if len(self.served) == 1 else None

    def resolve(self, jurisdiction_id: str | None) -> Jurisdiction:
        """The jurisdiction meant; Open311Error 400 when it must be given, 404 when unknown."""
        if not self.served:
            raise Open311Error(404, "this server serves no jurisdiction through Open311")
        if not (jurisdiction_id or "").strip():
            if len(self.served) == 1:
                return self.served[0]
            known = ", ".join(j.slug for j in self.served)
            raise Open311Error(
                400, f"jurisdiction_id was not provided; this endpoint serves several: {known}"
            )
        found = self.find(jurisdiction_id)
        if found is None:
            known = ", ".join(j.slug for j in self.served)
            raise Open311Error(
                404, f"jurisdiction_id {jurisdiction_id[:64]!r} not found; served: {known}"
            )
        return found
