"""Configuration problems as a city's administrator reads them: ``file: key: reason``.

Pydantic's validation errors and tomllib's syntax errors are turned into
:class:`ConfigProblem` objects that name the file, the dotted key (the way
it is written in TOML) and a reason in plain English.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in one file of the configuration directory."""

    file: str  # relative to the configuration directory: "communes/aubiere.toml"
    key: str  # dotted key, "categories[3].team"; "" when about the whole file
    reason: str

    def __str__(self) -> str:
        if self.key:
            return f"{self.file}: {self.key}: {self.reason}"
        return f"{self.file}: {self.reason}"


class ConfigError(Exception):
    """The configuration cannot be loaded; ``problems`` lists every problem found."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


# The identifier patterns of core.config.models, in words.
_PATTERN_WORDS = {
    r"^[A-Z]{2,5}$": 'be 2 to 5 capital letters, like "CLF"',
    r"^[a-z0-9][a-z0-9-]*$": 'be lowercase letters, digits and "-", like "clermont-ferrand"',
    r"^[a-z0-9][a-z0-9_-]*$": 'be lowercase letters, digits, "-" and "_", like "voirie-sud"',
    r"^[a-z0-9_]+$": 'be lowercase letters, digits and "_", like "nombre_points"',
}

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_TOML_POSITION = re.compile(
    r"^(?P<what>.*) \(at (?P<where>line \d+, column \d+|end of document)\)$"
)


def dotted_key(parts: Sequence[str | int]) -> str:
    """``("categories", 3, "team")`` -> ``"categories[3].team"``, TOML-quoting odd keys."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        name = part if _BARE_KEY.match(part) else f'"{part}"'
        text += f".{name}" if text else name
    return text


def show(value: Any) -> str:
    """A value the way it would be written in TOML, or what kind of thing it is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float | date | datetime | time):
        return value.isoformat() if isinstance(value, date | time) else str(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def toml_syntax_reason(exc: Exception) -> str:
    """tomllib's ``Invalid value (at line 2, column 5)`` -> ``TOML syntax error at line 2, ...``."""
    message = str(exc)
    match = _TOML_POSITION.match(message)
    if match is None:
        return f"TOML syntax error: {message}"
    what = match["what"]
    return f"TOML syntax error at {match['where']}: {what[:1].lower()}{what[1:]}"


def problems_from_validation(
    exc: ValidationError,
    file: str,
    model: type[BaseModel],
    prefix: Sequence[str | int] = (),
) -> list[ConfigProblem]:
    """One problem per pydantic error, keyed ``prefix`` + the error's location."""
    problems = []
    for error in exc.errors(include_url=False):
        location = tuple(part for part in error["loc"] if isinstance(part, str | int))
        problems.append(
            ConfigProblem(file, dotted_key((*prefix, *location)), _reason(error, model, location))
        )
    return problems


def unknown_key_reason(key: str, known: Iterable[str]) -> str:
    guesses = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f'unknown key (did you mean "{guesses[0]}"?)' if guesses else "unknown key"


def _reason(error: Any, model: type[BaseModel], location: tuple[str | int, ...]) -> str:
    kind = error["type"]
    value = error.get("input")
    context = error.get("ctx") or {}
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        parent = _model_at(model, location[:-1])
        known = parent.model_fields if parent is not None else ()
        return unknown_key_reason(str(location[-1]), known)
    if kind in ("value_error", "assertion_error") and "error" in context:
        return str(context["error"])
    if kind == "string_pattern_mismatch":
        pattern = str(context.get("pattern"))
        wanted = _PATTERN_WORDS.get(pattern, f"match the pattern {pattern}")
        return f"must {wanted} (got {show(value)})"
    if kind == "literal_error":
        expected = str(context.get("expected", "")).replace("'", '"')
        return f"must be one of {expected} (got {show(value)})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a table (got {show(value)})"
    if kind in ("too_long", "too_short") and "actual_length" in context:
        bound = "at most" if kind == "too_long" else "at least"
        limit = context.get("max_length" if kind == "too_long" else "min_length")
        return f"must have {bound} {limit} items (got {context['actual_length']})"
    if kind in ("tuple_type", "list_type"):
        return f"must be an array (got {show(value)})"
    message = error["msg"]
    if message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ")
    if not isinstance(value, dict | list | tuple):
        message += f" (got {show(value)})"
    return message


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _model_at(model: type[BaseModel], path: Sequence[str | int]) -> type[BaseModel] | None:
    """The pydantic model found by following ``path`` from ``model``, if any."""
    annotation: Any = model
    for part in path:
        annotation = _unwrap_optional(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            annotation = field.annotation
            continue
        origin, args = get_origin(annotation), get_args(annotation)
        if origin in (tuple, list) and args and isinstance(part, int):
            variadic = origin is list or (len(args) == 2 and args[1] is Ellipsis)
            if not variadic and part >= len(args):
                return None
            annotation = args[0] if variadic else args[part]
        elif origin is dict and len(args) == 2:
            annotation = args[1]
        else:
            return None
    annotation = _unwrap_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None
