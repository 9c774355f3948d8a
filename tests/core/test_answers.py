"""Answers to a category's questions: converted to each question's type, or refused
with a message naming the question and what was expected."""

from __future__ import annotations

import pytest

from core.answers import validate_answers
from core.config import Category
from core.errors import InvalidInput

CHOICES = [{"key": "eteint", "name": "Éteint"}, {"key": "clignote", "name": "Clignote"}]

CATEGORY = Category.model_validate(
    {
        "code": "eclairage",
        "name": "Éclairage public",
        "group": "Éclairage",
        "questions": [
            {"code": "numero", "label": "Numéro du mât", "type": "string"},
            {"code": "precision", "label": "Décrivez", "type": "text"},
            {"code": "nombre_points", "label": "Nombre de lampadaires", "type": "integer"},
            {"code": "hauteur", "label": "Hauteur (m)", "type": "number"},
            {"code": "danger", "label": "Danger ?", "type": "boolean"},
            {"code": "depuis", "label": "Depuis le", "type": "date"},
            {"code": "etat", "label": "État", "type": "choice", "choices": CHOICES},
            {"code": "etats", "label": "États", "type": "multichoice", "choices": CHOICES},
        ],
    }
)

REQUIRED = Category.model_validate(
    {
        "code": "autre",
        "name": "Autre demande",
        "group": "Autre",
        "questions": [
            {
                "code": "precision",
                "label": "Décrivez le problème",
                "type": "text",
                "required": True,
            },
            {"code": "danger", "label": "Danger immédiat ?", "type": "boolean", "required": True},
            {
                "code": "etats",
                "label": "États",
                "type": "multichoice",
                "choices": CHOICES,
                "required": True,
            },
        ],
    }
)


def problems(category: Category, answers: dict) -> dict[str, str]:
    with pytest.raises(InvalidInput) as caught:
        validate_answers(category, answers)
    return {p.field: p.reason for p in caught.value.problems}


@pytest.mark.parametrize(
    ("code", "given", "kept"),
    [
        ("numero", "  A-12 ", "A-12"),
        ("numero", 12, "12"),
        ("precision", "Trois lampadaires éteints", "Trois lampadaires éteints"),
        ("nombre_points", 3, 3),
        ("nombre_points", " 3 ", 3),
        ("nombre_points", "-2", -2),
        ("hauteur", "4.5", 4.5),
        ("hauteur", 4, 4.0),
        ("danger", True, True),
        ("danger", False, False),
        ("danger", "oui", True),
        ("danger", "Non", False),
        ("danger", "false", False),
        ("depuis", "2026-11-25", "2026-11-25"),
        ("etat", "clignote", "clignote"),
        ("etats", ["eteint", "clignote"], ["eteint", "clignote"]),
        ("etats", "eteint", ["eteint"]),
    ],
)
def test_an_answer_is_converted_to_its_question_type(code, given, kept):
    assert validate_answers(CATEGORY, {code: given}) == {code: kept}


@pytest.mark.parametrize(
    ("code", "given", "reason"),
    [
        ("numero", ["a"], "expected text"),
        ("nombre_points", "trois", "expected a whole number, got 'trois'"),
        ("nombre_points", 2.5, "expected a whole number"),
        ("nombre_points", "2.5", "expected a whole number"),
        ("nombre_points", True, "expected a whole number"),
        ("nombre_points", "--5", "expected a whole number"),
        ("nombre_points", "²", "expected a whole number"),
        ("hauteur", "haut", "expected a number, got 'haut'"),
        ("hauteur", True, "expected a number"),
        ("hauteur", "nan", "expected a number"),
        ("hauteur", "inf", "expected a number"),
        ("hauteur", float("-inf"), "expected a number"),
        ("danger", "peut-être", "expected true or false, got 'peut-être'"),
        ("danger", 1, "expected true or false"),
        ("depuis", "25/11/2026", "expected a date like 2026-11-25, got '25/11/2026'"),
        ("etat", "casse", "'casse' is not one of: eteint, clignote"),
        ("etats", ["eteint", "casse"], "'casse' not among: eteint, clignote"),
    ],
)
def test_an_answer_of_the_wrong_type_is_refused_naming_question_and_reason(code, given, reason):
    found = problems(CATEGORY, {code: given})
    assert list(found) == [f"answers.{code}"]
    assert reason in found[f"answers.{code}"]


@pytest.mark.parametrize("missing", [None, "", "   ", []])
def test_a_required_question_must_be_answered(missing):
    found = problems(REQUIRED, {"precision": missing, "danger": False, "etats": ["eteint"]})
    assert found == {"answers.precision": "required: Décrivez le problème"}


def test_false_answers_a_required_yes_no_question():
    answers = {"precision": "Un arbre", "danger": False, "etats": ["eteint"]}
    assert validate_answers(REQUIRED, answers)["danger"] is False


def test_an_unknown_question_is_refused_listing_the_questions():
    found = problems(
        REQUIRED, {"precision": "x", "danger": "oui", "etats": "eteint", "couleur": "rouge"}
    )
    assert list(found) == ["answers.couleur"]
    assert "not a question of autre" in found["answers.couleur"]
    assert "precision, danger, etats" in found["answers.couleur"]


def test_every_problem_is_reported_at_once():
    found = problems(REQUIRED, {"danger": "peut-être", "couleur": "rouge"})
    assert set(found) == {"answers.couleur", "answers.precision", "answers.danger", "answers.etats"}


def test_unanswered_optional_questions_are_left_out():
    assert validate_answers(CATEGORY, {}) == {}
    assert validate_answers(CATEGORY, {"numero": "", "etats": []}) == {}


def test_the_field_prefix_is_the_callers():
    with pytest.raises(InvalidInput) as caught:
        validate_answers(REQUIRED, {}, prefix="attributes")
    assert {p.field for p in caught.value.problems} == {
        "attributes.precision",
        "attributes.danger",
        "attributes.etats",
    }
