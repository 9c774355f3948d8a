"""What the resident typed, checked field by field, becomes a :class:`Report`.

Plain functions of the submitted values: no HTTP, no database. Every problem
is reported at once, keyed by the form field it belongs to, in the resident's
language.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email

from connectors.webform.i18n import Translate
from connectors.webform.photos import Photo
from core.answers import validate_answers
from core.config import Category, Commune, Question
from core.errors import InvalidInput
from core.signals import Location, Report, Reporter

CHANNEL = "web"
NOTIFY_CHOICES = ("email", "sms", "none")
DESCRIPTION_MAX = 5000
ADDRESS_MAX = 300
NAME_MAX = 200
ANSWER_MAX = {"string": 300, "text": 2000}
_PHONE = re.compile(r"^\+?[0-9 .()-]{6,40}$")
_TRUE = "true"

# Submitted values by field name; a field sent several times (checkboxes) has several.
FormValues = dict[str, list[str]]


def answer_field(question: Question) -> str:
    return f"answers.{question.code}"


@dataclass
class Checked:
    """The outcome of checking a submission: a report, or problems by field."""

    report: Report | None = None
    problems: dict[str, str] = field(default_factory=dict)


def first(values: FormValues, name: str) -> str:
    found = values.get(name) or [""]
    return found[0].strip()


def commune_at(communes: Iterable[Commune], latitude: float, longitude: float) -> Commune | None:
    """The commune whose bounding box holds the point; the smallest box if several do.

    Boxes of neighbouring communes overlap (a city's box covers parts of its
    suburbs), and the smaller box is the better guess.
    """
    holding = [
        c
        for c in communes
        if c.bbox and c.bbox[0] <= longitude <= c.bbox[2] and c.bbox[1] <= latitude <= c.bbox[3]
    ]
    if not holding:
        return None
    return min(holding, key=lambda c: (c.bbox[2] - c.bbox[0]) * (c.bbox[3] - c.bbox[1]))  # type: ignore[index]


def in_commune(commune: Commune, latitude: float, longitude: float) -> bool:
    if not commune.bbox:
        return True
    min_lon, min_lat, max_lon, max_lat = commune.bbox
    return min_lon <= longitude <= max_lon and min_lat <= latitude <= max_lat


def read_coordinates(
    values: FormValues, _: Translate, problems: dict[str, str]
) -> tuple[float | None, float | None]:
    """Latitude and longitude if both are given and valid; problems added otherwise."""
    texts = {name: first(values, name) for name in ("latitude", "longitude")}
    numbers: dict[str, float] = {}
    for name, example, bound in (("latitude", "45.7772", 90), ("longitude", "3.0870", 180)):
        text = texts[name]
        if not text:
            continue
        try:
            number = float(text.replace(",", ".").replace(" ", ""))
        except ValueError:
            problems[name] = _("error.coordinate", example=example)
            continue
        if not -bound <= number <= bound:  # also refuses NaN
            problems[name] = _(f"error.{name}_range")
            continue
        numbers[name] = number
    if bool(texts["latitude"]) != bool(texts["longitude"]):
        missing = "longitude" if texts["latitude"] else "latitude"
        problems.setdefault(missing, _("error.both_coordinates"))
    if len(numbers) == 2:
        return numbers["latitude"], numbers["longitude"]
    return None, None


def read_answers(category: Category, values: FormValues) -> dict[str, Any]:
    """The answers as the form sent them (strings), leaving out unanswered questions."""
    answers: dict[str, Any] = {}
    for question in category.questions:
        sent = [v.strip() for v in values.get(answer_field(question), []) if v.strip()]
        if not sent:
            continue
        if question.type == "multichoice":
            answers[question.code] = list(dict.fromkeys(sent))
        elif question.type == "boolean":
            answers[question.code] = sent[-1]
        else:
            answers[question.code] = sent[0]
    return answers


def check_answers(
    category: Category, answers: dict[str, Any], _: Translate, problems: dict[str, str]
) -> dict[str, Any]:
    """Answers converted to their types by core's rules; each problem in the resident's words."""
    for question in category.questions:
        limit = ANSWER_MAX.get(question.type)
        value = answers.get(question.code)
        if limit and isinstance(value, str) and len(value) > limit:
            problems[answer_field(question)] = _("error.too_long", max=limit)
    try:
        return validate_answers(category, answers)
    except InvalidInput as exc:
        for problem in exc.problems:
            code = problem.field.removeprefix("answers.")
            question = category.question(code)
            if question is None:  # not a field of this form: nothing to show
                continue
            problems.setdefault(answer_field(question), _answer_message(question, answers, _))
        return {}


def _answer_message(question: Question, answers: dict[str, Any], _: Translate) -> str:
    if question.code not in answers:
        return (
            _("error.choose")
            if question.type in ("choice", "multichoice", "boolean")
            else _("error.required")
        )
    return _(
        {
            "integer": "error.integer",
            "number": "error.number",
            "date": "error.date",
            "boolean": "error.boolean",
            "choice": "error.choice",
            "multichoice": "error.choice",
        }.get(question.type, "error.text")
    )


def read_reporter(
    values: FormValues, language: str, _: Translate, problems: dict[str, str]
) -> Reporter:
    name = first(values, "name")
    email = first(values, "email")
    phone = first(values, "phone")
    notify = first(values, "notify_by") or "none"
    if len(name) > NAME_MAX:
        problems["name"] = _("error.too_long", max=NAME_MAX)
    if email:
        try:
            email = validate_email(email, check_deliverability=False).normalized
        except EmailNotValidError:
            problems["email"] = _("error.email")
    if phone and not _PHONE.fullmatch(phone):
        problems["phone"] = _("error.phone")
    if notify not in NOTIFY_CHOICES:
        problems["notify_by"] = _("error.notify")
    elif notify == "email" and not email:
        problems.setdefault("email", _("error.notify_email"))
    elif notify == "sms" and not phone:
        problems.setdefault("phone", _("error.notify_sms"))
    return Reporter(
        name=name or None,
        email=email or None,
        phone=phone or None,
        notify_by=None if notify == "none" else notify,
        language=language,
    )


def check_submission(
    commune: Commune,
    category: Category,
    values: FormValues,
    photo: Photo | None,
    language: str,
    form_nonce: str,
    _: Translate,
    problems: dict[str, str] | None = None,
) -> Checked:
    """The report the resident sent, or every problem with it (added to ``problems``)."""
    problems = problems if problems is not None else {}
    answers = check_answers(category, read_answers(category, values), _, problems)
    description = first(values, "description")
    if len(description) < 3:
        problems["description"] = _("error.description_short")
    elif len(description) > DESCRIPTION_MAX:
        problems["description"] = _("error.too_long", max=DESCRIPTION_MAX)
    address = first(values, "address")
    if len(address) > ADDRESS_MAX:
        problems["address"] = _("error.too_long", max=ADDRESS_MAX)
    latitude, longitude = read_coordinates(values, _, problems)
    if (
        latitude is not None
        and longitude is not None
        and not in_commune(commune, latitude, longitude)
    ):
        problems["latitude"] = _("error.outside_commune", commune=commune.name)
    located_by = "form"
    if (
        latitude is None
        and photo is not None
        and photo.has_position
        and not ({"latitude", "longitude"} & problems.keys())
    ):
        # A photo taken elsewhere (at home, later) says nothing about this problem.
        if in_commune(commune, photo.latitude, photo.longitude):  # type: ignore[arg-type]
            latitude, longitude, located_by = photo.latitude, photo.longitude, "photo"
    if latitude is None and not address and not ({"latitude", "longitude"} & problems.keys()):
        problems["address"] = _("error.no_location")
    reporter = read_reporter(values, language, _, problems)
    if problems:
        return Checked(problems=problems)
    report = Report(
        commune=commune.slug,
        category=category.code,
        description=description,
        channel=CHANNEL,
        location=Location(latitude, longitude, address or None),
        reporter=reporter,
        answers=answers,
        idempotency_key=idempotency_key(form_nonce),
        extra={"located_by": located_by} if latitude is not None else {},
    )
    return Checked(report=report)


def idempotency_key(form_nonce: str) -> str:
    """One filled-in form, however often it is sent, is one report."""
    return "web:" + hashlib.sha256(form_nonce.encode()).hexdigest()
