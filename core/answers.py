"""Answers to a category's questions, checked against each question's type."""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any

from core.config import Category, Question
from core.errors import FieldProblem, InvalidInput

_TRUE = {"true", "1", "yes", "oui", "on"}
_FALSE = {"false", "0", "no", "non", "off"}
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")


def _coerce(question: Question, value: Any) -> Any:
    kind = question.type
    if kind in ("string", "text"):
        if not isinstance(value, str | int | float):
            raise ValueError("expected text")
        return str(value).strip()
    if kind == "integer":
        if isinstance(value, bool):
            raise ValueError("expected a whole number")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value.strip()):
            return int(value.strip())
        raise ValueError(f"expected a whole number, got {value!r}")
    if kind == "number":
        if isinstance(value, bool):
            raise ValueError("expected a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
        if not math.isfinite(number):  # NaN and infinities are not JSON (PostgreSQL refuses them)
            raise ValueError(f"expected a number, got {value!r}")
        return number
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"expected true or false, got {value!r}")
    if kind == "date":
        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise ValueError(f"expected a date like 2026-11-25, got {value!r}") from None
    keys = [choice.key for choice in question.choices]
    if kind == "choice":
        if value not in keys:
            raise ValueError(f"{value!r} is not one of: {', '.join(keys)}")
        return value
    values = value if isinstance(value, list | tuple) else [value]
    bad = [v for v in values if v not in keys]
    if bad:
        raise ValueError(f"{', '.join(map(repr, bad))} not among: {', '.join(keys)}")
    return list(values)


def validate_answers(category: Category, answers: dict[str, Any], prefix: str = "answers") -> dict:
    """Return the answers converted to their types; raise InvalidInput listing every problem."""
    problems: list[FieldProblem] = []
    cleaned: dict[str, Any] = {}
    for code in answers:
        if category.question(code) is None:
            known = ", ".join(q.code for q in category.questions) or "none"
            problems.append(
                FieldProblem(
                    f"{prefix}.{code}",
                    f"not a question of {category.code} (its questions: {known})",
                )
            )
    for question in category.questions:
        value = answers.get(question.code)
        if value is None or (isinstance(value, str) and not value.strip()) or value == []:
            if question.required:
                problems.append(
                    FieldProblem(f"{prefix}.{question.code}", f"required: {question.label}")
                )
            continue
        try:
            cleaned[question.code] = _coerce(question, value)
        except ValueError as exc:
            problems.append(FieldProblem(f"{prefix}.{question.code}", str(exc)))
    if problems:
        raise InvalidInput(problems)
    return cleaned
