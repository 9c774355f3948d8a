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
_PER_TRANSACTION: set[str] = set()


def per_transaction(key: str) -> str:
    """Declare ``key`` of ``session.info`` as kept for one transaction only:
    sessions made by :func:`install`'s factory drop it at each commit and
    rollback. Returns ``key``, for the declaring module's constant."""
    _PER_TRANSACTION.add(key)
    return key


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
