"""The ticket workflow: statuses and the transitions allowed between them.

new → acknowledged → assigned → in_progress → resolved → closed, with
rejected, duplicate and redirected as ends, and reopening from resolved.
"""

from __future__ import annotations

from enum import StrEnum

from core.errors import InvalidInput


class Status(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    REDIRECTED = "redirected"
    REOPENED = "reopened"


_ENDINGS = (Status.REJECTED, Status.DUPLICATE, Status.REDIRECTED)

TRANSITIONS: dict[Status, tuple[Status, ...]] = {
    Status.NEW: (
        Status.ACKNOWLEDGED,
        Status.ASSIGNED,
        Status.IN_PROGRESS,
        Status.RESOLVED,
        *_ENDINGS,
    ),
    Status.ACKNOWLEDGED: (Status.ASSIGNED, Status.IN_PROGRESS, Status.RESOLVED, *_ENDINGS),
    Status.ASSIGNED: (Status.IN_PROGRESS, Status.RESOLVED, Status.ACKNOWLEDGED, *_ENDINGS),
    Status.IN_PROGRESS: (Status.RESOLVED, Status.ASSIGNED, *_ENDINGS),
    Status.RESOLVED: (Status.CLOSED, Status.REOPENED),
    Status.REOPENED: (Status.ASSIGNED, Status.IN_PROGRESS, Status.RESOLVED, *_ENDINGS),
    Status.CLOSED: (),
    Status.REJECTED: (),
    Status.DUPLICATE: (),
    Status.REDIRECTED: (),
}

# Statuses in which a ticket still needs work: new signals may join it.
OPEN_STATUSES: frozenset[Status] = frozenset(
    {Status.NEW, Status.ACKNOWLEDGED, Status.ASSIGNED, Status.IN_PROGRESS, Status.REOPENED}
)
FINAL_STATUSES: frozenset[Status] = frozenset(
    {Status.CLOSED, Status.REJECTED, Status.DUPLICATE, Status.REDIRECTED}
)
# A reason must accompany these.
NEEDS_COMMENT: frozenset[Status] = frozenset({Status.REJECTED, Status.REDIRECTED, Status.REOPENED})


class IllegalTransition(ValueError):
    """A status change the workflow does not allow; the message names the allowed ones."""

    def __init__(self, current: str, requested: str, allowed: tuple[Status, ...]) -> None:
        self.current, self.requested, self.allowed = current, requested, allowed
        if allowed:
            options = ", ".join(status.value for status in allowed)
            message = f"cannot go from {current} to {requested}; allowed from {current}: {options}"
        else:
            message = f"cannot go from {current} to {requested}: {current} is final"
        super().__init__(message)


def parse_status(value: str) -> Status:
    """The status named ``value``; InvalidInput (a ValueError) listing the known ones if none."""
    try:
        return Status(value)
    except ValueError:
        known = ", ".join(status.value for status in Status)
        reason = f"unknown status {value!r}; known statuses: {known}"
        raise InvalidInput.one("status", reason) from None


def check_transition(current: str, requested: str) -> Status:
    """Return the requested status if the workflow allows it, else raise IllegalTransition."""
    target = parse_status(requested)
    allowed = TRANSITIONS[Status(current)]
    if target not in allowed:
        raise IllegalTransition(current, target.value, allowed)
    return target
