"""Per-commune configuration: one TOML file per commune under ``config/communes/``."""

from core.config.models import (
    Area,
    BusinessHours,
    Category,
    Commune,
    Question,
    Team,
)

__all__ = ["Area", "BusinessHours", "Category", "Commune", "Question", "Team"]
