"""Due dates counted in the commune's business hours."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from core.config import BusinessHours, Category, Commune
from core.signals import Location
from core.snapshots import TicketSnapshot
from plugins import sla

PARIS = ZoneInfo("Europe/Paris")
HOURS = BusinessHours(holidays=(date(2026, 12, 25),))  # 08:30-12:00, 13:30-17:00 Mon-Fri


@pytest.mark.parametrize(
    ("start", "hours", "expected"),
    [
        (
            datetime(2026, 11, 23, 9, 0, tzinfo=PARIS),
            2,
            datetime(2026, 11, 23, 11, 0, tzinfo=PARIS),
        ),
        # The lunch break does not count.
        (
            datetime(2026, 11, 23, 11, 0, tzinfo=PARIS),
            2,
            datetime(2026, 11, 23, 14, 30, tzinfo=PARIS),
        ),
        # Friday evening: the clock restarts on Monday morning.
        (
            datetime(2026, 11, 27, 18, 0, tzinfo=PARIS),
            1,
            datetime(2026, 11, 30, 9, 30, tzinfo=PARIS),
        ),
        # A night report starts counting when the desk opens.
        (
            datetime(2026, 11, 24, 2, 0, tzinfo=PARIS),
            7,
            datetime(2026, 11, 24, 17, 0, tzinfo=PARIS),
        ),
        # Christmas is skipped.
        (
            datetime(2026, 12, 24, 16, 0, tzinfo=PARIS),
            2,
            datetime(2026, 12, 28, 9, 30, tzinfo=PARIS),
        ),
    ],
)
def test_add_business_hours(start, hours, expected):
    assert sla.add_business_hours(start.astimezone(UTC), hours, HOURS) == expected


def _commune(**settings) -> Commune:
    return Commune(
        slug="t",
        name="T",
        reference_prefix="TST",
        business_hours=HOURS,
        categories=(
            Category(code="voirie", name="Voirie", group="Voirie", resolution_hours=7),
            Category(code="eau", name="Eau", group="Eau", resolution_hours=4, calendar_hours=True),
            Category(code="autre", name="Autre", group="Autre"),
        ),
        plugins={"sla": sla.Settings(**settings)},
    )


def _ticket(category: str, priority: str = "normal") -> TicketSnapshot:
    created = datetime(2026, 11, 23, 8, 30, tzinfo=PARIS).astimezone(UTC)  # a Monday, opening time
    return TicketSnapshot(
        id=1,
        reference="TST-2026-000001",
        commune="t",
        category=category,
        description="d",
        channel="phone",
        status="new",
        priority=priority,
        location=Location(),
        created_at=created,
        updated_at=created,
    )


def test_due_date_from_the_category_in_business_hours():
    assert sla.compute_due_date(_ticket("voirie"), _commune()) == datetime(
        2026, 11, 23, 17, 0, tzinfo=PARIS
    )


def test_priority_shortens_the_time_and_urgent_runs_around_the_clock():
    high = sla.compute_due_date(_ticket("voirie", "high"), _commune())
    assert high == datetime(2026, 11, 23, 12, 0, tzinfo=PARIS)  # 3.5 business hours
    urgent = sla.compute_due_date(_ticket("voirie", "urgent"), _commune())
    assert urgent == datetime(2026, 11, 23, 10, 15, tzinfo=PARIS)  # 1.75 calendar hours


def test_calendar_hours_category_and_default_hours():
    assert sla.compute_due_date(_ticket("eau"), _commune()) == datetime(
        2026, 11, 23, 12, 30, tzinfo=PARIS
    )
    assert sla.compute_due_date(_ticket("autre"), _commune()) is None
    assert sla.compute_due_date(_ticket("autre"), _commune(default_hours=3.5)) == datetime(
        2026, 11, 23, 12, 0, tzinfo=PARIS
    )


def test_a_calendar_with_no_opening_hours_is_refused():
    closed = BusinessHours(monday=(), tuesday=(), wednesday=(), thursday=(), friday=())
    with pytest.raises(ValueError, match="no opening time"):
        sla.add_business_hours(datetime(2026, 11, 23, tzinfo=UTC), 1, closed)
