"""Messages to residents: what they hear back, in the channel and language they chose.

Enable with ``[plugins.resident_messages]`` in a commune's file. It composes
(the outbox sends, through the ``email`` and ``sms`` plugins):

- ``receipt``: the ticket was opened; its reference and a tracking link;
- ``assigned``: a team took it in hand;
- ``redirected``: it belongs to an outside body (named), with the reason;
- ``resolved``: it is fixed, with what was done (the public comment);
- ``attached``: their report joined a ticket already open for the same
  problem; its reference and tracking link (to that resident only).

One message per resident who reported the problem and asked to be told
(``notify_by`` email or sms), in their language when the commune speaks it.
Settings::

    [plugins.resident_messages]
    public_url = "https://signalement.clermont-ferrand.example"  # tracking links
    templates_dir = "templates/clermont-ferrand"  # optional, relative to the config dir
    signature = "Ville de Clermont-Ferrand"       # default: the commune's name
    [plugins.resident_messages.templates]         # optional inline templates
    "fr/resolved.sms" = "{{ reference }} : c'est réparé. Merci !"

Templates are Jinja2 text, looked up inline, then in ``templates_dir``, then
in the ones shipped in ``plugins/resident_messages_templates``, by the name
``<language>/<message>.<email|sms>.txt``. An email template's first line is
the subject, the rest its body. See ``docs/notifications.md``.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    DictLoader,
    FileSystemLoader,
    TemplateError,
    TemplateNotFound,
)
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.config import Commune
from core.hookspecs import hookimpl
from core.settings import Settings as PlatformSettings
from core.signals import Notification
from core.snapshots import HistoryEvent, ReporterContact, TicketSnapshot

log = logging.getLogger(__name__)

PLUGIN = "resident_messages"
SHIPPED = Path(__file__).resolve().parent / "resident_messages_templates"
MessageKind = Literal["receipt", "attached", "assigned", "redirected", "resolved"]
KINDS: tuple[str, ...] = ("receipt", "attached", "assigned", "redirected", "resolved")
CHANNELS: tuple[str, ...] = ("email", "sms")
_TEMPLATE_KEY = re.compile(
    r"^([a-z]{2})/(receipt|attached|assigned|redirected|resolved)\.(email|sms)$"
)


class Settings(BaseModel):
    """What one commune's residents are told, and how it reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # The public site residents follow their report on; no link without it.
    public_url: str | None = None
    tracking_path: str = "/track/{reference}"
    # A directory of <language>/<message>.<channel>.txt files that replace the
    # shipped ones (relative paths start at the configuration directory).
    templates_dir: str | None = None
    # Inline templates by "<language>/<message>.<channel>"; they win over files.
    templates: dict[str, str] = {}
    # Which messages are sent at all.
    messages: tuple[MessageKind, ...] = KINDS  # type: ignore[assignment]
    signature: str | None = Field(default=None, max_length=200)

    @field_validator("public_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not a web address like https://signalement.example.fr")
        return value.rstrip("/")

    @field_validator("tracking_path")
    @classmethod
    def _has_reference(cls, value: str) -> str:
        if "{reference}" not in value or not value.startswith("/"):
            raise ValueError('a path starting with "/" that contains {reference}')
        return value

    @field_validator("templates")
    @classmethod
    def _template_names(cls, value: dict[str, str]) -> dict[str, str]:
        cleaned = {}
        for key, text in value.items():
            name = key.removesuffix(".txt")
            if not _TEMPLATE_KEY.match(name):
                raise ValueError(
                    f'template "{key}": name it <language>/<message>.<channel>, like '
                    f'"fr/receipt.sms" (messages: {", ".join(KINDS)}; channels: email, sms)'
                )
            cleaned[name] = text
        return cleaned


# --- Hooks -------------------------------------------------------------------


@hookimpl
def check_commune(commune: Commune) -> list[str]:
    settings: Settings = commune.plugin_config(PLUGIN) or Settings()
    problems = []
    environment = _environment(None, tuple(sorted(settings.templates.items())))
    for name, text in settings.templates.items():
        try:
            environment.parse(text)
        except TemplateError as exc:
            problems.append(f'templates."{name}": {exc}')
        language = name.split("/", 1)[0]
        if language not in commune.languages:
            problems.append(
                f'templates."{name}": {commune.slug} does not speak "{language}" '
                f"(languages: {', '.join(commune.languages)})"
            )
        if name.endswith(".email") and not _first_line(text):
            problems.append(f'templates."{name}": the first line (the subject) is empty')
    return problems


@hookimpl
def compose_notifications(
    ticket: TicketSnapshot, event: HistoryEvent, commune: Commune, settings: PlatformSettings
) -> list[Notification]:
    plugin_settings: Settings = commune.plugin_config(PLUGIN) or Settings()
    kind = message_kind(event)
    if kind is None or kind not in plugin_settings.messages:
        return []
    templates = Templates(plugin_settings, settings.config_dir)
    facts = _facts(ticket, event, commune, plugin_settings)
    contacts = ticket.reporters
    if kind == "attached":
        contacts = _newcomer(ticket, event)
    messages = []
    for channel, recipient, contact in _recipients(contacts):
        language = _language(contact.language, commune)
        words = {**facts, "name": contact.name}
        category = commune.category(ticket.category)
        if category is not None:  # its name in the resident's language, where the config has it
            words["category"] = category.in_language(language).name
        subject, body = templates.render(kind, channel, language, words)
        messages.append(
            Notification(
                channel=channel, recipient=recipient, subject=subject, body=body,
                commune=commune.slug, ticket_reference=ticket.reference, language=language,
            )
        )
    return messages


# --- What happened, and to whom ------------------------------------------------


def message_kind(event: HistoryEvent) -> str | None:
    """Which message (if any) a history event calls for."""
    if event.action == "created":
        return "receipt"
    if event.action == "redirected":  # routed outside when the ticket was opened
        return "redirected"
    if event.action == "report_attached":
        return "attached"
    if event.action != "status_changed":
        return None  # "assigned" is followed by a status change when it matters
    status = event.changes.get("status")
    new_status = status[1] if isinstance(status, list | tuple) and len(status) == 2 else None
    return new_status if new_status in ("assigned", "redirected", "resolved") else None


def _newcomer(ticket: TicketSnapshot, event: HistoryEvent) -> tuple[ReporterContact, ...]:
    """The resident whose report just joined ``ticket``.

    Contacts are in the order reports came in, but reports without any contact
    are left out of them: the newest contact is the newcomer only when every
    report has one. Otherwise nobody is told rather than the wrong person.
    """
    counts = event.changes.get("reports")
    total = counts[-1] if isinstance(counts, list | tuple) and counts else None
    if ticket.reporters and total == len(ticket.reporters):
        return ticket.reporters[-1:]
    return ()


def _recipients(
    contacts: Iterable[ReporterContact],
) -> Iterable[tuple[str, str, ReporterContact]]:
    """(channel, address, contact) for each resident who asked to be told, once each."""
    seen: set[tuple[str, str]] = set()
    for contact in contacts:
        address = {"email": contact.email, "sms": contact.phone}.get(contact.notify_by or "")
        if not address:
            continue
        key = (contact.notify_by, address.strip().lower())
        if key in seen:
            continue
        seen.add(key)
        yield contact.notify_by, address.strip(), contact


def _language(wanted: str | None, commune: Commune) -> str:
    if wanted in commune.languages:
        return wanted
    return commune.languages[0] if commune.languages else "fr"


def _facts(
    ticket: TicketSnapshot, event: HistoryEvent, commune: Commune, settings: Settings
) -> dict[str, Any]:
    category = commune.category(ticket.category)
    team = commune.team(ticket.team) if ticket.team else None
    outside_body = ticket.outside_body
    if isinstance(event.changes.get("outside_body"), list | tuple):
        outside_body = event.changes["outside_body"][-1] or outside_body
    tracking_url = None
    if settings.public_url:
        path = settings.tracking_path.replace("{reference}", ticket.reference)
        tracking_url = settings.public_url + path
    # An internal status change may carry a note meant for staff only.
    comment = (event.comment or "").strip() if event.public else ""
    return {
        "reference": ticket.reference,
        "tracking_url": tracking_url,
        "commune": commune.name,
        "signature": settings.signature or commune.name,
        "category": category.name if category else ticket.category,
        "address": ticket.location.address,
        "description": ticket.description,
        "status": ticket.status,
        "team": team.name if team else ticket.team,
        "outside_body": outside_body,
        "reason": comment,
        "comment": comment,
        "received_at": _local(ticket.created_at, commune),
    }


def _local(moment: datetime, commune: Commune) -> datetime:
    return moment.astimezone(ZoneInfo(commune.business_hours.timezone))


# --- Templates ----------------------------------------------------------------


class Templates:
    """One commune's templates: inline ones, then its directory, then the shipped ones."""

    def __init__(self, settings: Settings, config_dir: Path | None) -> None:
        directory = None
        if settings.templates_dir:
            directory = Path(settings.templates_dir)
            if not directory.is_absolute() and config_dir is not None:
                directory = Path(config_dir) / directory
            if not directory.is_dir():
                log.warning("resident_messages: templates_dir %s is not a directory", directory)
                directory = None
        self.environment = _environment(
            str(directory) if directory else None, tuple(sorted(settings.templates.items()))
        )

    def render(
        self, kind: str, channel: str, language: str, context: dict[str, Any]
    ) -> tuple[str, str]:
        """(subject, body) of one message; the subject comes from the email template."""
        email = self._render(f"{kind}.email", language, context)
        subject, _, email_body = email.partition("\n")
        subject = " ".join(subject.split())
        if channel == "email":
            return subject, _tidy(email_body)
        return subject, _tidy(self._render(f"{kind}.{channel}", language, context))

    def _render(self, name: str, language: str, context: dict[str, Any]) -> str:
        for candidate in dict.fromkeys((language, "fr", "en")):
            try:
                template = self.environment.get_template(f"{candidate}/{name}")
            except TemplateNotFound:
                continue
            return template.render(**context)
        raise TemplateNotFound(f"{language}/{name}")


class _TxtLoader(BaseLoader):
    """Files are ``<name>.txt``; templates are asked for by ``<name>``."""

    def __init__(self, directory: str) -> None:
        self.files = FileSystemLoader(directory, encoding="utf-8")

    def get_source(self, environment, template):  # type: ignore[no-untyped-def]
        return self.files.get_source(environment, f"{template}.txt")


@functools.lru_cache(maxsize=64)
def _environment(
    directory: str | None, inline: tuple[tuple[str, str], ...]
) -> SandboxedEnvironment:
    loaders: list[BaseLoader] = [DictLoader(dict(inline))]
    if directory:
        loaders.append(_TxtLoader(directory))
    loaders.append(_TxtLoader(str(SHIPPED)))
    environment = SandboxedEnvironment(
        loader=ChoiceLoader(loaders), autoescape=False, trim_blocks=True, lstrip_blocks=True
    )
    environment.filters["date"] = _format_date
    environment.filters["sentence"] = _sentence
    return environment


def _format_date(moment: datetime, language: str = "fr") -> str:
    if language == "fr":
        return moment.strftime("%d/%m/%Y à %H:%M")
    return moment.strftime("%d %b %Y at %H:%M")


def _sentence(text: str | None) -> str:
    """Staff's note as a sentence: "Trou rebouché" reads "Trou rebouché." in a message."""
    text = (text or "").strip()
    return text if not text or text[-1] in ".!?…)»\"" else f"{text}."


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip()


def _tidy(text: str) -> str:
    """No trailing spaces, at most one empty line in a row, none at either end."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    tidy: list[str] = []
    for line in lines:
        if not line and tidy and not tidy[-1]:
            continue
        tidy.append(line)
    return "\n".join(tidy)
