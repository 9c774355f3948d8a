"""Errors the domain raises for bad input; the API and CLI turn them into messages."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class InvalidInput(ValueError):
    """One or more fields are wrong; each problem names its field and why."""

    def __init__(self, problems: list[FieldProblem] | FieldProblem) -> None:
        self.problems = [problems] if isinstance(problems, FieldProblem) else list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    @classmethod
    def one(cls, field: str, reason: str) -> InvalidInput:
        return cls(FieldProblem(field, reason))


class NotFound(LookupError):
    """No such thing, or not one the caller may see (we do not tell the two apart)."""


class Conflict(ValueError):
    """The request is well formed but the ticket's state does not allow it."""
