"""Core's fallbacks, registered as plugin ``defaults`` and run for every commune.

They are ``trylast`` so that any other plugin decides first.
"""

from __future__ import annotations

from core.config import Commune
from core.hookspecs import hookimpl
from core.signals import Report, Signal, TicketDraft


@hookimpl(trylast=True)
def draft_ticket(signal: Signal, commune: Commune) -> TicketDraft | None:
    """A resident's report becomes a draft as it is; alerts need a connector."""
    if not isinstance(signal, Report):
        return None
    category = commune.category(signal.category)
    return TicketDraft(
        commune=commune.slug,
        category=signal.category,
        description=signal.description,
        channel=signal.channel,
        priority=signal.priority or (category.priority if category else "normal"),
        location=signal.location,
        answers=dict(signal.answers),
    )
