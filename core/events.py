"""Hooks that must run only after the change they describe is committed.

Domain code calls :func:`after_commit` inside a transaction; the calls are
held on the session and made by :func:`install`'s listener once the commit
succeeds, or dropped on rollback. Plugins never see an uncommitted ticket.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

_KEY = "vigie_after_commit"
# What other modules keep on the session for one transaction only: core.history's
# events recorded, core.db.ids's ids taken.
_PER_TRANSACTION = ("vigie_recorded_events", "vigie_last_taken_ids")


def after_commit(session: Session, hook_name: str, **kwargs: Any) -> None:
    session.info.setdefault(_KEY, []).append((hook_name, kwargs))


def install(factory: sessionmaker[Session], pm) -> None:
    """Make sessions from ``factory`` call the held hooks on ``pm`` after each commit."""

    def _forget(session: Session) -> None:
        for key in _PER_TRANSACTION:
            session.info.pop(key, None)

    def _fire(session: Session) -> None:
        _forget(session)
        pending = session.info.pop(_KEY, [])
        for hook_name, kwargs in pending:
            pm.call_all(hook_name, **kwargs)

    def _drop(session: Session) -> None:
        _forget(session)
        dropped = session.info.pop(_KEY, [])
        if dropped:
            log.debug("rollback: %d after-commit hook calls dropped", len(dropped))

    event.listen(factory, "after_commit", _fire)
    event.listen(factory, "after_rollback", _drop)
