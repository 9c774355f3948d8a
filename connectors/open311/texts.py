"""The few words Open311 answers carry, in French and English."""

from __future__ import annotations

from core.config import Commune

TEXTS: dict[str, dict[str, str]] = {
    "fr": {
        "new": "Nouvelle demande",
        "acknowledged": "Demande prise en compte",
        "assigned": "Confiée à une équipe",
        "in_progress": "Intervention en cours",
        "resolved": "Résolue",
        "closed": "Clôturée",
        "rejected": "Rejetée",
        "duplicate": "Doublon d'une demande déjà signalée",
        "redirected": "Transmise à l'organisme compétent",
        "reopened": "Rouverte",
        "true": "Oui",
        "false": "Non",
        "integer": "Nombre entier, par exemple 3",
        "number": "Nombre, par exemple 2.5",
        "date": "Date au format AAAA-MM-JJ, par exemple 2026-11-25",
        "received": "Demande enregistrée",
        "assigned_to": "Confiée à : {team}",
        "redirected_to": "Transmise à : {body}",
        "status_now": "Statut : {label}",
    },
    "en": {
        "new": "New request",
        "acknowledged": "Request acknowledged",
        "assigned": "Assigned to a team",
        "in_progress": "Work in progress",
        "resolved": "Resolved",
        "closed": "Closed",
        "rejected": "Rejected",
        "duplicate": "Duplicate of a request already reported",
        "redirected": "Passed on to the body in charge",
        "reopened": "Reopened",
        "true": "Yes",
        "false": "No",
        "integer": "A whole number, e.g. 3",
        "number": "A number, e.g. 2.5",
        "date": "A date as YYYY-MM-DD, e.g. 2026-11-25",
        "received": "Request received",
        "assigned_to": "Assigned to: {team}",
        "redirected_to": "Passed on to: {body}",
        "status_now": "Status: {label}",
    },
}


def text(language: str, key: str, **values: str) -> str:
    table = TEXTS.get(language, TEXTS["fr"])
    return table.get(key, key).format(**values)


def language_for(accept_language: str | None, commune: Commune) -> str:
    """The first language of ``Accept-Language`` the commune offers, else its first one."""
    offered = [lang for lang in commune.languages if lang in TEXTS] or ["fr"]
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        primary = tag.split("-")[0]
        if primary in offered:
            return primary
    return offered[0]
