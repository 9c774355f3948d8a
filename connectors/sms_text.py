"""Reading a resident's SMS: which category, which address, which answer.

Plain heuristics, no language model: a category is found by its keywords
(accents and case ignored, the longest keyword wins), an address by a street
word ("rue", "avenue", "bd", "place"...) with its number and name, an answer by
the question's type. What cannot be read is asked for again.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, timedelta
from typing import Any

from core.config import Category, Commune, Question

# Street words (normalised: no accents, lower case), abbreviations included.
STREET_WORDS: tuple[str, ...] = (
    "rue", "ruelle", "avenue", "av", "ave", "boulevard", "bd", "bld", "blvd", "place", "pl",
    "chemin", "allee", "allees", "impasse", "imp", "route", "rte", "cours", "quai", "square",
    "passage", "rond-point", "rond point", "esplanade", "promenade", "sentier", "voie",
    "faubourg", "fbg", "parvis", "montee", "lotissement", "residence", "carrefour", "rampe",
    "traverse", "villa", "cite", "hameau", "parc",
)
# Words that end a street name: what the resident says next is not the address.
_STOP_WORDS = frozenset(
    """est sont a il ils elle elles y depuis qui que devant pres derriere face en sur sous
    avec et mais car donc merci svp stp ca cela ce cet cette c au aux dans pour par un une
    the is are near there please thanks at since it""".split()
)
_CONNECTORS = frozenset(
    {"de", "du", "des", "la", "le", "l", "d", "les", "of", "the", "saint", "st"}
)
_NUMBER = r"(?P<number>\d{1,4})(?:\s*(?P<suffix>bis|ter|quater|[abt])\b)?"
_TOKEN = re.compile(r"[\w'’\-]+", re.UNICODE)


def normalise(text: str) -> str:
    """Lower case, no accents, punctuation as spaces, single spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    bare = re.sub(r"[’'`]", " ", bare)
    bare = re.sub(r"[^a-z0-9\-]+", " ", bare)
    return " ".join(bare.replace("-", " ").split())


# --- Category ---------------------------------------------------------------------


def find_category(text: str, commune: Commune) -> Category | None:
    """The category whose keywords best match ``text``, if any.

    Each matching keyword counts for its number of words ("nid de poule" is
    three), divided by the number of categories sharing it ("trottoir" says
    less than "matelas"); ties go to the longest keyword, then to the order of
    the commune's file.
    """
    words = f" {normalise(text)} "
    categories = [c for c in commune.categories if c.public]
    keywords = {c.code: _keywords(c) for c in categories}
    sharing: dict[str, int] = {}
    for found in keywords.values():
        for keyword in found:
            sharing[keyword] = sharing.get(keyword, 0) + 1
    best: tuple[float, int, int] | None = None
    chosen = None
    for order, category in enumerate(categories):
        matched = [
            keyword
            for keyword in keywords[category.code]
            if any(f" {form} " in words for form in _forms(keyword))
        ]
        if not matched:
            continue
        weight = sum(len(k.split()) / sharing[k] for k in matched)
        score = (weight, max(len(k) for k in matched), -order)
        if best is None or score > best:
            best, chosen = score, category
    return chosen


def _keywords(category: Category) -> set[str]:
    keywords = {normalise(k) for k in category.keywords}
    keywords.add(normalise(category.code.replace("-", " ")))
    return {k for k in keywords if k}


def _forms(keyword: str) -> tuple[str, ...]:
    """The keyword and its plural ("lampadaire" / "lampadaires", "canal" / "canaux")."""
    forms = [keyword, f"{keyword}s", f"{keyword}x"]
    if keyword.endswith("al"):
        forms.append(f"{keyword[:-2]}aux")
    return tuple(forms)


# --- Address ----------------------------------------------------------------------


def find_address(text: str, commune: Commune | None = None) -> str | None:
    """"12 rue Blatin", "au 3 bis avenue des Paulines", "place de Jaude": the
    address in ``text``, as the resident wrote it, or None."""
    keywords = _all_keywords(commune) if commune is not None else set()
    patterns = (re.escape(word).replace(r"\ ", r"[\s-]+") for word in STREET_WORDS)
    words = "|".join(sorted(patterns, key=len, reverse=True))
    street = re.compile(
        rf"(?:(?<!\w){_NUMBER}\s*,?\s+)?(?<!\w)(?P<word>{words})\.?(?!\w)"
        r"(?P<rest>[^.,;:!?\n()]*)",
        re.IGNORECASE,
    )
    bare = _strip_accents(text)  # same length as text: offsets carry over
    for match in street.finditer(bare):
        name = _street_name(text[match.start("rest"): match.end("rest")], keywords)
        if not name:
            continue
        word = text[match.start("word"): match.end("word")]
        number = ""
        if match.group("number"):
            end = match.end("suffix") if match.group("suffix") else match.end("number")
            number = " ".join(text[match.start("number"): end].split()) + " "
        return f"{number}{word} {name}".strip()
    return None


def _street_name(rest: str, keywords: set[str]) -> str:
    """The name after the street word: stops at a stop word or a category keyword."""
    taken: list[str] = []
    for token in _TOKEN.findall(rest):
        plain = normalise(token)
        named = any(normalise(t) not in _CONNECTORS for t in taken)
        if not plain or plain in _STOP_WORDS or (plain.isdigit() and taken):
            break
        # "avenue du Parc": a keyword may be the name itself, not what follows it.
        if plain in keywords and named:
            break
        taken.append(token)
        if len(taken) >= 6:
            break
    while taken and normalise(taken[-1]) in _CONNECTORS:
        taken.pop()
    if not any(normalise(t) not in _CONNECTORS for t in taken):
        return ""
    return " ".join(taken)


def _all_keywords(commune: Commune) -> set[str]:
    words = {k for category in commune.categories for k in _keywords(category) if " " not in k}
    return {w for w in words if len(w) > 2} - _CONNECTORS


def _strip_accents(text: str) -> str:
    """One character for one: "é" becomes "e", so match offsets fit the original."""
    out = []
    for char in text:
        decomposed = unicodedata.normalize("NFKD", char)
        base = "".join(c for c in decomposed if not unicodedata.combining(c))
        out.append(base if len(base) == 1 else char)
    return "".join(out)


def plausible_address(reply: str) -> str | None:
    """A reply to "where is it?" that the street heuristic could not read
    ("devant la mairie", "parking du stade"): kept as written if it is short."""
    cleaned = " ".join(reply.split()).strip(" .,;!")
    if len(cleaned) < 3 or len(cleaned) > 200 or not re.search(r"[^\W\d_]", cleaned):
        return None
    return cleaned


# --- Answers to a category's questions ---------------------------------------------

_YES = {"oui", "o", "yes", "y", "ouais", "si", "vrai", "true", "1"}
_NO = {"non", "n", "no", "faux", "false", "0", "pas"}


def read_answer(question: Question, reply: str, today: date) -> Any:
    """The reply as the question's type; ValueError when it cannot be read."""
    plain = normalise(reply)
    kind = question.type
    if kind in ("string", "text"):
        cleaned = " ".join(reply.split())
        if not cleaned:
            raise ValueError("empty")
        return cleaned
    if kind == "boolean":
        first = plain.split(" ", 1)[0] if plain else ""
        if first in _YES:
            return True
        if first in _NO:
            return False
        raise ValueError("not yes or no")
    if kind == "integer":
        found = re.search(r"-?\d+", reply)
        if not found:
            raise ValueError("no number")
        return int(found.group())
    if kind == "number":
        found = re.search(r"-?\d+(?:[.,]\d+)?", reply)
        if not found:
            raise ValueError("no number")
        return float(found.group().replace(",", "."))
    if kind == "date":
        return _read_date(plain, reply, today).isoformat()
    keys = [choice.key for choice in question.choices]
    picked = _choices(question, reply, plain)
    if not picked:
        raise ValueError("no choice")
    if kind == "choice":
        if len(picked) != 1:
            raise ValueError("one choice only")
        return picked[0]
    return [key for key in keys if key in picked]


def _choices(question: Question, reply: str, plain: str) -> list[str]:
    numbers = [int(n) for n in re.findall(r"\d+", reply)]
    if numbers:
        if all(1 <= n <= len(question.choices) for n in numbers):
            return list(dict.fromkeys(question.choices[n - 1].key for n in numbers))
        return []
    words = f" {plain} "
    found = [
        choice.key
        for choice in question.choices
        if f" {normalise(choice.key.replace('_', ' '))} " in words
        or normalise(choice.name) == plain
    ]
    return found


def choice_in_text(question: Question, text: str) -> str | None:
    """The one choice whose key the resident's words name ("lampadaire éteint" →
    ``eteint``); None when none or several do (then the question is asked)."""
    words = f" {normalise(text)} "
    named = [
        choice.key
        for choice in question.choices
        if any(f" {form} " in words for form in _forms(normalise(choice.key.replace("_", " "))))
    ]
    return named[0] if len(named) == 1 else None


def _read_date(plain: str, reply: str, today: date) -> date:
    if plain in ("aujourd hui", "today", "ce jour"):
        return today
    if plain in ("hier", "yesterday"):
        return today - timedelta(days=1)
    if plain in ("avant hier",):
        return today - timedelta(days=2)
    iso = re.search(r"(\d{4})-(\d{1,2})-(\d{1,2})", reply)
    if iso:
        return date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
    french = re.search(r"(\d{1,2})[/.\-](\d{1,2})(?:[/.\-](\d{2,4}))?", reply)
    if not french:
        raise ValueError("no date")
    day, month = int(french.group(1)), int(french.group(2))
    year = int(french.group(3)) if french.group(3) else today.year
    if year < 100:
        year += 2000
    found = date(year, month, day)
    if not french.group(3) and found > today:  # "12/12" in January: last year's
        found = date(year - 1, month, day)
    return found
