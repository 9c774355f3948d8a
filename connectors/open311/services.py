"""Categories as Open311 services; their questions as service definition attributes.

Vigie question types become the spec's datatypes: ``string``, ``text`` and
``number`` keep their name; ``integer`` is a ``number`` (said in
``datatype_description``); ``date`` is a ``datetime``; ``choice`` and
``boolean`` are a ``singlevaluelist`` (true/false for a boolean);
``multichoice`` is a ``multivaluelist``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from core.config import Category, Question

from .jurisdictions import Jurisdiction
from .texts import text

DATATYPES: dict[str, str] = {
    "string": "string",
    "text": "text",
    "number": "number",
    "integer": "number",
    "boolean": "singlevaluelist",
    "date": "datetime",
    "choice": "singlevaluelist",
    "multichoice": "multivaluelist",
}


_HINTED = ("integer", "number", "date")


def service_entry(category: Category, jurisdiction: Jurisdiction) -> dict[str, Any]:
    """One ``services/service``: the fields in the spec's order."""
    return {
        "service_code": category.code,
        "service_name": category.name,
        "description": category.description,
        "metadata": bool(category.questions),
        "type": jurisdiction.settings.service_type,
        "keywords": ", ".join(category.keywords),
        "group": category.group,
    }


def _values(question: Question, language: str) -> list[dict[str, str]] | None:
    if question.type == "boolean":
        return [
            {"key": "true", "name": text(language, "true")},
            {"key": "false", "name": text(language, "false")},
        ]
    if question.type in ("choice", "multichoice"):
        return [{"key": choice.key, "name": choice.name} for choice in question.choices]
    return None


def attribute_entry(question: Question, order: int, language: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "variable": True,
        "code": question.code,
        "datatype": DATATYPES[question.type],
        "required": question.required,
        "datatype_description": (
            text(language, question.type) if question.type in _HINTED else None
        ),
        "order": order,
        "description": f"{question.label} — {question.help}" if question.help else question.label,
    }
    values = _values(question, language)
    if values is not None:
        entry["values"] = values
    return entry


def service_definition(category: Category, language: str) -> dict[str, Any]:
    """The ``service_definition`` document of one service."""
    return {
        "service_code": category.code,
        "attributes": [
            attribute_entry(question, order, language)
            for order, question in enumerate(category.questions, start=1)
        ],
    }


def answers_from_attributes(
    category: Category, attributes: dict[str, list[str]]
) -> dict[str, Any]:
    """``attribute[code]`` / ``attribute[code][]`` form values as answers for core's checks.

    Codes are matched exactly, else regardless of case (Vigie's codes are lower
    case; some apps upper-case theirs). A code the category does not know is
    kept as sent, so that the answer check names it.
    """
    by_lower = {q.code.lower(): q for q in category.questions}
    answers: dict[str, Any] = {}
    for sent_code, values in attributes.items():
        question = category.question(sent_code) or by_lower.get(sent_code.lower())
        if question is None:
            answers[sent_code] = values[0] if len(values) == 1 else values
            continue
        if question.type == "multichoice":
            answers[question.code] = [v for v in values if v != ""]
        elif len(values) == 1:
            answers[question.code] = _single(question, values[0])
        else:
            answers[question.code] = values  # several values for one: the check refuses it
    return answers


def _single(question: Question, value: str) -> Any:
    if question.type == "date":
        # A datetime attribute: the spec's clients send an ISO 8601 date-time.
        stripped = value.strip()
        try:
            return date.fromisoformat(stripped).isoformat()
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(stripped.replace("Z", "+00:00")).date().isoformat()
        except ValueError:
            return value
    return value
