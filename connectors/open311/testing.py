"""Test helpers for the Open311 plugin and for apps tested against it.

``write_spec_city(config_dir)`` writes a configuration whose one commune is the
example city of the GeoReport v2 spec (jurisdiction ``city.gov``, services
001, 002, 003, 006 and 033), so that the spec's own example requests can be
replayed unchanged. ``add_api_key`` stores an integration token with a chosen
plaintext (the spec's examples use ``api_key=xyz``). ``spark`` reads an XML
answer into the structure its JSON twin has.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from core.db.models import ApiToken
from core.db.types import utcnow

from .formats import CHILD_TAGS

SPEC_CITY_TOML = """\
# The example city of wiki.open311.org/GeoReport_v2, as a Vigie commune.
slug = "city"
name = "City"
reference_prefix = "CTY"
languages = ["en"]

[business_hours]
timezone = "America/Los_Angeles"

[plugins.routing]
default_team = "dpw"

[plugins.open311]
jurisdiction_aliases = ["city.gov"]
service_notices = { "001" = "The City will inspect and require the responsible party to correct \
within 24 hours and/or issue a Correction Notice or Notice of Violation of the Public Works Code" }

[[teams]]
code = "dpw"
name = "Department of Public Works"

[[teams]]
code = "dmv"
name = "Department of Motor Vehicles"

[[categories]]
code = "001"
name = "Cans left out 24x7"
group = "sanitation"
description = "Garbage or recycling cans that have been left out for more than 24 hours after \
collection. Violators will be cited."
keywords = ["lorem", "ipsum", "dolor"]

[[categories.questions]]
code = "whispawn"
label = "What is the permit number?"
required = true

[[categories.questions]]
code = "whisdorn"
label = "What is the code on the can?"

[[categories]]
code = "002"
name = "Construction plate shifted"
group = "street"
description = "Metal construction plate covering the street or sidewalk has been moved."
keywords = ["lorem", "ipsum", "dolor"]

[[categories.questions]]
code = "hazards"
label = "What is in danger?"
type = "multichoice"
required = true
choices = [
    { key = "cars", name = "Cars" },
    { key = "bikes", name = "Bikes" },
    { key = "walkers", name = "People walking" },
]

[[categories.questions]]
code = "plate_size"
label = "Size of the plate (m)"
type = "number"

[[categories]]
code = "003"
name = "Curb or curb ramp defect"
group = "street"
description = "Sidewalk curb or ramp has problems such as cracking, missing pieces, holes, and/or \
chipped curb."
keywords = ["lorem", "ipsum", "dolor"]

[[categories.questions]]
code = "pieces"
label = "How many pieces are missing?"
type = "integer"
required = true

[[categories.questions]]
code = "since"
label = "Since when?"
type = "date"

[[categories.questions]]
code = "blocking"
label = "Does it block a wheelchair?"
type = "boolean"
required = true
help = "A ramp that cannot be used is fixed first."

[[categories.questions]]
code = "details"
label = "Anything else?"
type = "text"

[[categories]]
code = "006"
name = "Sidewalk and Curb Issues"
group = "street"
keywords = ["sidewalk", "curb"]

[[categories]]
code = "033"
name = "Abandoned vehicle"
group = "dmv"
keywords = ["car", "vehicle"]
team = "dmv"

[[categories.questions]]
code = "whishetn"
label = "What is the ticket/tag/DL number?"
type = "choice"
required = true
choices = [{ key = "123", name = "Ford" }, { key = "124", name = "Chrysler" }]

[[categories]]
code = "internal"
name = "Internal inspection"
group = "staff"
keywords = ["staff"]
public = false
"""


def write_spec_city(config_dir: Path, extra_settings: str = "") -> Path:
    """A configuration directory serving only the spec's example city.

    ``extra_settings`` is appended to its ``[plugins.open311]`` table.
    """
    communes = config_dir / "communes"
    communes.mkdir(parents=True, exist_ok=True)
    (config_dir / "vigie.toml").write_text('area_name = "City"\n', encoding="utf-8")
    text = SPEC_CITY_TOML.replace(
        '[plugins.open311]\n', "[plugins.open311]\n" + extra_settings.strip() + "\n", 1
    )
    (communes / "city.toml").write_text(text, encoding="utf-8")
    return config_dir


def add_api_key(
    runtime: Any, plaintext: str, communes: tuple[str, ...] = ("*",), role: str = "integration"
) -> str:
    """Store a token whose plaintext is ``plaintext`` (tokens are looked up by hash)."""
    with runtime.sessions() as session:
        session.add(
            ApiToken(
                name=f"open311-{plaintext[:8]}",
                token_hash=hashlib.sha256(plaintext.encode()).hexdigest(),
                prefix=plaintext[:10],
                role=role,
                communes=list(communes),
                created_at=utcnow(),
            )
        )
        session.commit()
    return plaintext


def spark(element: ET.Element) -> Any:
    """An XML element read by the Spark convention: containers of repeated
    children become lists, other elements with children dicts, leaves text."""
    if element.tag in CHILD_TAGS:
        return [spark(child) for child in element]
    if len(element):
        return {child.tag: spark(child) for child in element}
    return element.text


def as_text(value: Any) -> Any:
    """A JSON value written as XML would carry it, for comparing the two formats."""
    if isinstance(value, dict):
        return {key: as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_text(item) for item in value]
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
