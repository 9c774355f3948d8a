"""Read ``<config dir>/communes/*.toml`` into an :class:`Area`, listing every problem.

Each commune file is read and checked on its own (TOML syntax, the
:class:`Commune` model, its plugin sections against each plugin's
``Settings`` model, team and code references), then the files are checked
against each other (slugs, reference prefixes). Nothing stops at the first
problem: an administrator fixes the whole list in one go.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from core.config.models import Area, Category, Commune
from core.config.problems import (
    ConfigError,
    ConfigProblem,
    problems_from_validation,
    show,
    toml_syntax_reason,
    unknown_key_reason,
)

if TYPE_CHECKING:
    from core.plugin_manager import VigiePluginManager

__all__ = ["ConfigError", "ConfigProblem", "check_config", "load_area"]

log = logging.getLogger(__name__)

COMMUNES_DIR = "communes"
PLATFORM_FILE = "vigie.toml"
DEFAULT_AREA_NAME = "Vigie"


def load_area(config_dir: Path, pm: VigiePluginManager, area_name: str | None = None) -> Area:
    """The area described by ``config_dir``; raise :class:`ConfigError` listing every problem."""
    area, problems = check_config(config_dir, pm, area_name)
    if problems or area is None:
        raise ConfigError(problems)
    return area


def check_config(
    config_dir: Path, pm: VigiePluginManager, area_name: str | None = None
) -> tuple[Area | None, list[ConfigProblem]]:
    """Read and check the whole configuration directory.

    Returns the area and an empty list, or None and every problem found.
    """
    config_dir = Path(config_dir)
    if not config_dir.is_dir():
        return None, [ConfigProblem(str(config_dir), "", "configuration directory not found")]
    problems = _platform_file_problems(config_dir)
    communes_dir = config_dir / COMMUNES_DIR
    paths = sorted(communes_dir.glob("*.toml")) if communes_dir.is_dir() else []
    if not paths:
        problems.append(
            ConfigProblem(
                f"{COMMUNES_DIR}/", "", "no commune file; write one per commune, named <slug>.toml"
            )
        )
    communes: list[Commune] = []
    used_slugs: dict[str, str] = {}
    used_prefixes: dict[str, str] = {}
    for path in paths:
        file = path.relative_to(config_dir).as_posix()
        raw, commune, file_problems = _read_commune(path, file, pm)
        problems.extend(file_problems)
        problems.extend(_first_use(raw, "slug", file, used_slugs))
        problems.extend(_first_use(raw, "reference_prefix", file, used_prefixes))
        if commune is not None:
            communes.append(commune)
    if problems:
        return None, problems
    area = Area(
        name=area_name or DEFAULT_AREA_NAME,
        communes={commune.slug: commune for commune in communes},
    )
    return area, []


# --- One commune file --------------------------------------------------------


def _read_commune(
    path: Path, file: str, pm: VigiePluginManager
) -> tuple[dict[str, Any], Commune | None, list[ConfigProblem]]:
    """The file's raw table, its commune (None if it has problems) and its problems."""
    raw, problems = _read_toml(path, file)
    if raw is None:
        return {}, None, problems
    plugins, problems = _plugin_settings(raw.get("plugins", {}), file, pm)
    data = {key: value for key, value in raw.items() if key not in ("plugins", "source")}
    if "source" in raw:
        reason = "unknown key (Vigie sets it to the file name)"
        problems.append(ConfigProblem(file, "source", reason))
    commune: Commune | None = None
    try:
        commune = Commune.model_validate({**data, "source": file, "plugins": plugins})
    except ValidationError as exc:
        problems.extend(problems_from_validation(exc, file, Commune))
    problems.extend(_slug_matches_file_name(raw, path, file))
    problems.extend(_reference_problems(raw, file))
    if problems or commune is None:
        return raw, None, problems
    commune, added_problems = _with_plugin_categories(commune, file, pm)
    if added_problems:
        return raw, None, added_problems
    return raw, commune, []


def _read_toml(path: Path, file: str) -> tuple[dict[str, Any] | None, list[ConfigProblem]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, [ConfigProblem(file, "", "not UTF-8 text; save the file as UTF-8")]
    except OSError as exc:
        return None, [ConfigProblem(file, "", f"cannot be read: {exc.strerror or exc}")]
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        return None, [ConfigProblem(file, "", toml_syntax_reason(exc))]


def _installed(pm: VigiePluginManager) -> list[str]:
    return sorted(name for name, plugin in pm.list_name_plugin() if plugin is not None)


def _plugin_settings(
    sections: Any, file: str, pm: VigiePluginManager
) -> tuple[dict[str, Any], list[ConfigProblem]]:
    """Validate each ``[plugins.<name>]`` section against that plugin's ``Settings``."""
    if not isinstance(sections, dict):
        reason = f"must be a table of plugin sections like [plugins.routing] (got {show(sections)})"
        return {}, [ConfigProblem(file, "plugins", reason)]
    installed = _installed(pm)
    validated: dict[str, Any] = {}
    problems: list[ConfigProblem] = []
    for name, section in sections.items():
        key = f"plugins.{name}"
        if name not in installed:
            reason = f'unknown plugin "{name}"; installed: {", ".join(installed)}'
            problems.append(ConfigProblem(file, key, reason))
            continue
        if not isinstance(section, dict):
            reason = f"must be a table, [{key}] (empty for the defaults); got {show(section)}"
            problems.append(ConfigProblem(file, key, reason))
            continue
        model = pm.settings_model(name)
        if model is None:
            validated[name] = {}
            for setting in section:
                reason = f'unknown key (plugin "{name}" takes no settings)'
                problems.append(ConfigProblem(file, f"{key}.{setting}", reason))
            continue
        try:
            validated[name] = model.model_validate(section)
        except ValidationError as exc:
            problems.extend(problems_from_validation(exc, file, model, ("plugins", name)))
    return validated, problems


def _slug_matches_file_name(raw: dict[str, Any], path: Path, file: str) -> list[ConfigProblem]:
    slug = raw.get("slug")
    if isinstance(slug, str) and slug != path.stem:
        reason = f"{show(slug)} does not match the file name {path.name}"
        return [ConfigProblem(file, "slug", reason)]
    return []


def _codes(items: Any) -> list[tuple[int, str]]:
    """(index, code) of each table in a raw array of tables that has a string code."""
    if not isinstance(items, list):
        return []
    return [
        (index, item["code"])
        for index, item in enumerate(items)
        if isinstance(item, dict) and isinstance(item.get("code"), str)
    ]


def _reference_problems(raw: dict[str, Any], file: str) -> list[ConfigProblem]:
    """Duplicate category and team codes; categories naming a team the commune lacks.

    Checked on the raw TOML so that they are reported even when the file has
    other problems.
    """
    problems = []
    for array, label in (("categories", "category"), ("teams", "team")):
        first: dict[str, int] = {}
        for index, code in _codes(raw.get(array)):
            if code in first:
                reason = f'duplicate {label} code "{code}" (first at {array}[{first[code]}])'
                problems.append(ConfigProblem(file, f"{array}[{index}].code", reason))
            else:
                first[code] = index
    teams = sorted({code for _, code in _codes(raw.get("teams"))})
    categories = raw.get("categories")
    if isinstance(categories, list) and isinstance(raw.get("teams", []), list):
        for index, category in enumerate(categories):
            team = category.get("team") if isinstance(category, dict) else None
            if isinstance(team, str) and team not in teams:
                problems.append(
                    ConfigProblem(file, f"categories[{index}].team", _no_such_team(team, teams))
                )
    return problems


def _no_such_team(team: str, teams: list[str]) -> str:
    if not teams:
        return f'team "{team}" is not defined: this commune has no [[teams]]'
    return f'team "{team}" is not defined in this commune (teams: {", ".join(teams)})'


def _with_plugin_categories(
    commune: Commune, file: str, pm: VigiePluginManager
) -> tuple[Commune, list[ConfigProblem]]:
    """Add the categories the commune's plugins register; the file's own win."""
    codes = {category.code for category in commune.categories}
    teams = sorted(team.code for team in commune.teams)
    added: list[Category] = []
    problems = []
    for plugin, result in pm.call_each("register_categories", commune=commune):
        for category in [result] if isinstance(result, Category) else result:
            if not isinstance(category, Category):
                log.warning(
                    'plugin "%s": register_categories for commune %s returned %r, not a Category; ignored',
                    plugin,
                    commune.slug,
                    category,
                )
                continue
            if category.code in codes:
                continue
            if category.team is not None and category.team not in teams:
                reason = (
                    f'category "{category.code}" added by a plugin: '
                    f"{_no_such_team(category.team, teams)}; "
                    "add the team, or define the category in this file"
                )
                problems.append(ConfigProblem(file, f"plugins.{plugin}", reason))
            codes.add(category.code)
            added.append(category)
    if added:
        commune = commune.model_copy(update={"categories": (*commune.categories, *added)})
    for plugin, reasons in pm.call_each("check_commune", commune=commune):
        for reason in [reasons] if isinstance(reasons, str) else reasons:
            problems.append(ConfigProblem(file, f"plugins.{plugin}", str(reason)))
    return commune, problems


# --- Across files -------------------------------------------------------------


def _first_use(
    raw: dict[str, Any], key: str, file: str, used: dict[str, str]
) -> list[ConfigProblem]:
    """A problem if another file already uses this file's ``key`` value (slug, prefix)."""
    value = raw.get(key)
    if not isinstance(value, str):
        return []
    if value in used:
        return [ConfigProblem(file, key, f"{show(value)} is already used by {used[value]}")]
    used[value] = file
    return []


def _platform_file_problems(config_dir: Path) -> list[ConfigProblem]:
    """Syntax, unknown keys and value types of ``vigie.toml`` (if there is one).

    Only the file is checked: environment variables may complete or override
    it, so rules across settings are left to :class:`core.settings.Settings`.
    """
    from core.settings import Settings

    path = config_dir / PLATFORM_FILE
    if not path.is_file():
        return []
    raw, problems = _read_toml(path, PLATFORM_FILE)
    if raw is None:
        return problems
    for key, value in raw.items():
        field = Settings.model_fields.get(key)
        if field is None:
            reason = unknown_key_reason(key, Settings.model_fields)
            problems.append(ConfigProblem(PLATFORM_FILE, key, reason))
            continue
        try:
            TypeAdapter(field.annotation).validate_python(value)
        except ValidationError as exc:
            model = field.annotation if _is_model(field.annotation) else Settings
            problems.extend(problems_from_validation(exc, PLATFORM_FILE, model, (key,)))
    return problems


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
