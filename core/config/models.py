"""The shape of a commune's configuration, validated at start-up.

These are the objects plugins receive as ``commune``; they are read-only
during the life of the process.
"""

from __future__ import annotations

from datetime import date, time
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

QuestionType = Literal["string", "text", "number", "integer", "boolean", "date", "choice", "multichoice"]
Priority = Literal["low", "normal", "high", "urgent"]
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Choice(BaseModel):
    model_config = _STRICT
    key: str
    name: str


class Question(BaseModel):
    """A question asked when this category is reported (an Open311 attribute)."""

    model_config = _STRICT
    code: str = Field(pattern=r"^[a-z0-9_]+$")
    label: str
    type: QuestionType = "string"
    required: bool = False
    choices: tuple[Choice, ...] = ()
    help: str | None = None

    @model_validator(mode="after")
    def _choices_match_type(self) -> Question:
        if self.type in ("choice", "multichoice") and not self.choices:
            raise ValueError(f"question {self.code!r} of type {self.type} needs choices")
        if self.type not in ("choice", "multichoice") and self.choices:
            raise ValueError(f"question {self.code!r} has choices but type {self.type}")
        return self


class QuestionText(BaseModel):
    """A question's words in another language; what is left out stays as written."""

    model_config = _STRICT
    label: str | None = None
    help: str | None = None
    choices: dict[str, str] = {}  # choice key -> name


class CategoryText(BaseModel):
    """A category's words in another language (``[categories.translations.en]``);
    what is left out stays as written in the category itself."""

    model_config = _STRICT
    name: str | None = None
    group: str | None = None
    description: str | None = None
    questions: dict[str, QuestionText] = {}  # question code -> its words


class Category(BaseModel):
    """A kind of problem the commune handles: an Open311 service."""

    model_config = _STRICT
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str
    group: str
    description: str | None = None
    keywords: tuple[str, ...] = ()
    team: str | None = None
    priority: Priority = "normal"
    # Hours to resolve, counted in business hours unless ``calendar_hours``.
    resolution_hours: float | None = Field(default=None, gt=0)
    calendar_hours: bool = False
    questions: tuple[Question, ...] = ()
    public: bool = True
    # Metres within which a new report is offered an open ticket of this
    # category ("already reported"); None: the commune's ``matching_radius_m``.
    matching_radius_m: float | None = Field(default=None, ge=0, le=5000)
    # The words residents read, in other languages than the commune's own
    # (the web form in English): language code -> what changes.
    translations: dict[str, CategoryText] = {}

    @model_validator(mode="after")
    def _translations_match(self) -> Category:
        problems = []
        for language, text in self.translations.items():
            if not (len(language) == 2 and language.isascii() and language.islower()):
                problems.append(f"translations.{language}: not a two-letter language code")
            for code, words in text.questions.items():
                question = self.question(code)
                if question is None:
                    problems.append(f"translations.{language}.questions.{code}: no such question")
                    continue
                keys = {choice.key for choice in question.choices}
                for key in words.choices.keys() - keys:
                    problems.append(
                        f"translations.{language}.questions.{code}.choices.{key}: "
                        f"no such choice (choices: {', '.join(sorted(keys)) or 'none'})"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def question(self, code: str) -> Question | None:
        return next((q for q in self.questions if q.code == code), None)

    def in_language(self, language: str) -> Category:
        """This category with the words of ``language`` where it has them."""
        text = self.translations.get(language)
        if text is None:
            return self
        questions = []
        for question in self.questions:
            words = text.questions.get(question.code)
            if words is None:
                questions.append(question)
                continue
            choices = tuple(
                choice.model_copy(update={"name": words.choices.get(choice.key, choice.name)})
                for choice in question.choices
            )
            questions.append(
                question.model_copy(
                    update={
                        "label": words.label or question.label,
                        "help": words.help or question.help,
                        "choices": choices,
                    }
                )
            )
        return self.model_copy(
            update={
                "name": text.name or self.name,
                "group": text.group or self.group,
                "description": text.description or self.description,
                "questions": tuple(questions),
            }
        )


class Team(BaseModel):
    """A team that works tickets (a depot, an area hub's crew, the call centre)."""

    model_config = _STRICT
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str
    hub: str | None = None
    email: str | None = None
    on_call_phone: str | None = None


class BusinessHours(BaseModel):
    """Opening hours used for due dates, in the commune's timezone."""

    model_config = _STRICT
    timezone: str = "Europe/Paris"
    monday: tuple[str, ...] = ("08:30-12:00", "13:30-17:00")
    tuesday: tuple[str, ...] = ("08:30-12:00", "13:30-17:00")
    wednesday: tuple[str, ...] = ("08:30-12:00", "13:30-17:00")
    thursday: tuple[str, ...] = ("08:30-12:00", "13:30-17:00")
    friday: tuple[str, ...] = ("08:30-12:00", "13:30-17:00")
    saturday: tuple[str, ...] = ()
    sunday: tuple[str, ...] = ()
    holidays: tuple[date, ...] = ()

    @field_validator("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    @classmethod
    def _valid_ranges(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            parse_range(item)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    def ranges(self, weekday: int) -> list[tuple[time, time]]:
        """Opening ranges for a weekday (0 = Monday)."""
        names = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        return [parse_range(item) for item in getattr(self, names[weekday])]


@lru_cache(maxsize=512)  # a due date asks for the ranges of each day it counts
def parse_range(text: str) -> tuple[time, time]:
    """Parse ``"08:30-12:00"``; raise ValueError naming the bad range."""
    try:
        start_text, end_text = text.split("-")
        start, end = time.fromisoformat(start_text.strip()), time.fromisoformat(end_text.strip())
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a range like 08:30-12:00") from exc
    if end <= start:
        raise ValueError(f"{text!r} ends before it starts")
    return start, end


class Commune(BaseModel):
    """One commune: what it handles, who works it, which plugins it enables."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    reference_prefix: str = Field(pattern=r"^[A-Z]{2,5}$")
    insee_code: str | None = None
    hub: str | None = None
    center: tuple[float, float] | None = None  # (latitude, longitude)
    bbox: tuple[float, float, float, float] | None = None  # min_lon, min_lat, max_lon, max_lat
    languages: tuple[str, ...] = ("fr", "en")
    categories: tuple[Category, ...] = ()
    teams: tuple[Team, ...] = ()
    business_hours: BusinessHours = BusinessHours()
    # Validated settings of each enabled plugin, by plugin name. A plugin
    # without a settings model gets an empty dict.
    plugins: dict[str, Any] = Field(default_factory=dict)
    # MQTT topic filters this commune's sensor networks publish to; the
    # ingestion transport subscribes to the union of all communes' filters.
    mqtt_topics: tuple[str, ...] = ()
    # Metres within which a new report is offered an open ticket of the same
    # category (a category may set its own); 0 turns the offer off.
    matching_radius_m: float = Field(default=50, ge=0, le=5000)
    source: str | None = None  # the file it came from, for messages

    def category(self, code: str) -> Category | None:
        return next((c for c in self.categories if c.code == code), None)

    def team(self, code: str) -> Team | None:
        return next((t for t in self.teams if t.code == code), None)

    def matching_radius(self, category_code: str) -> float:
        """Metres within which reports of this category count as the same problem."""
        category = self.category(category_code)
        if category is not None and category.matching_radius_m is not None:
            return category.matching_radius_m
        return self.matching_radius_m

    def enables(self, plugin_name: str) -> bool:
        return plugin_name in self.plugins

    def plugin_config(self, plugin_name: str) -> Any:
        """The validated settings of a plugin for this commune (None if not enabled)."""
        return self.plugins.get(plugin_name)


class Area(BaseModel):
    """A metropolitan area (or a single town): the communes Vigie serves."""

    model_config = ConfigDict(frozen=True)
    name: str
    communes: dict[str, Commune]

    def commune(self, slug: str) -> Commune | None:
        return self.communes.get(slug)

    def by_prefix(self, prefix: str) -> Commune | None:
        return next((c for c in self.communes.values() if c.reference_prefix == prefix), None)
