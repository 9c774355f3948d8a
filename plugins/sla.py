"""Due dates: the category's resolution time, counted in the commune's business hours.

Enable with ``[plugins.sla]``. Settings::

    [plugins.sla]
    default_hours = 72                    # a category without resolution_hours
    [plugins.sla.priority_factor]         # urgent tickets get a quarter of the time
    urgent = 0.25
    high = 0.5
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from core.config import BusinessHours, Commune
from core.hookspecs import hookimpl
from core.snapshots import TicketSnapshot


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    default_hours: float | None = Field(default=None, gt=0)
    priority_factor: dict[str, float] = {"urgent": 0.25, "high": 0.5, "normal": 1.0, "low": 2.0}
    # Urgent tickets are worked around the clock (on-call crews).
    urgent_in_calendar_hours: bool = True


def add_business_hours(start: datetime, hours: float, calendar: BusinessHours) -> datetime:
    """The moment ``hours`` of opening time after ``start`` (time-zone aware)."""
    zone = ZoneInfo(calendar.timezone)
    moment = start.astimezone(zone)
    remaining = timedelta(hours=hours)
    for _ in range(3 * 366):  # days; a calendar with no opening hours gives up
        day = moment.date()
        if day not in calendar.holidays:
            for opens, closes in calendar.ranges(day.weekday()):
                range_start = datetime.combine(day, opens, zone)
                range_end = datetime.combine(day, closes, zone)
                if moment >= range_end:
                    continue
                begin = max(moment, range_start)
                available = range_end - begin
                if remaining <= available:
                    return begin + remaining
                remaining -= available
                moment = range_end
        moment = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
    raise ValueError("the commune's business hours have no opening time")


@hookimpl(trylast=True)
def compute_due_date(ticket: TicketSnapshot, commune: Commune) -> datetime | None:
    settings: Settings = commune.plugin_config("sla") or Settings()
    category = commune.category(ticket.category)
    hours = (category.resolution_hours if category else None) or settings.default_hours
    if hours is None:
        return None
    hours *= settings.priority_factor.get(ticket.priority, 1.0)
    calendar_time = (category.calendar_hours if category else False) or (
        ticket.priority == "urgent" and settings.urgent_in_calendar_hours
    )
    if calendar_time:
        return ticket.created_at + timedelta(hours=hours)
    return add_business_hours(ticket.created_at, hours, commune.business_hours)
