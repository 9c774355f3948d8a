"""The one place plugins are found, registered and called.

``get_plugin_manager`` registers the built-ins listed in ``DEFAULT_PLUGINS``
by dotted name, then third-party plugins from the ``vigie`` entry-point group.
Hooks are called through :meth:`VigiePluginManager.call_all` and
:meth:`VigiePluginManager.call_first`, which keep one plugin's exception from
reaching the others or the caller.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from core import hookspecs

if TYPE_CHECKING:
    from core.config import Commune
    from core.settings import Settings

log = logging.getLogger(__name__)

# Built-in plugins, registered under the name after the last dot.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "core.defaults",
    "plugins.routing",
    "plugins.sla",
    "plugins.influxdb",
    "plugins.resident_messages",
    "connectors.water",
    "connectors.lighting",
    "connectors.parking",
    "connectors.webform",
    "connectors.open311",
    "connectors.email",
    "connectors.sms",
)

# Plugins that run for every commune whether or not its file names them.
ALWAYS_ENABLED: frozenset[str] = frozenset({"defaults"})


class PluginLoadError(Exception):
    """A plugin could not be imported or registered; the message names it."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str | None
    hooks: tuple[str, ...]
    builtin: bool
    settings_model: type | None


class VigiePluginManager(pluggy.PluginManager):
    """pluggy's manager, plus isolated calls restricted to a commune's plugins."""

    def __init__(self) -> None:
        super().__init__("vigie")
        self.add_hookspecs(hookspecs)
        self.builtin_names: set[str] = set()
        self.versions: dict[str, str | None] = {}

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        self.__dict__.pop("_implemented_cache", None)
        return super().register(plugin, name)

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        self.__dict__.pop("_implemented_cache", None)
        return super().unregister(plugin, name)

    def settings_model(self, name: str) -> type | None:
        """The pydantic model a plugin declares as its ``Settings`` attribute."""
        plugin = self.get_plugin(name)
        return getattr(plugin, "Settings", None) if plugin is not None else None

    def is_enabled(self, name: str, commune: Commune | None) -> bool:
        if commune is None or name in ALWAYS_ENABLED:
            return True
        return commune.enables(name)

    def _impls(self, hook_name: str, commune: Commune | None) -> Iterator[Any]:
        caller = getattr(self.hook, hook_name)
        # pluggy calls the most recently registered first, trylast ones last:
        # get_hookimpls() lists them in the reverse of that order.
        for impl in reversed(caller.get_hookimpls()):
            if impl.hookwrapper or getattr(impl, "wrapper", False):
                continue
            if hook_name in hookspecs.PER_COMMUNE_HOOKS and not self.is_enabled(
                impl.plugin_name, commune
            ):
                continue
            yield impl

    def implemented_for(self, hook_name: str, commune: Commune | None) -> bool:
        """Whether any plugin ``commune`` enables implements ``hook_name``: callers
        skip building costly arguments (snapshots) for hooks nobody listens to."""
        key = (hook_name, commune.slug if commune is not None else None)
        cache = self.__dict__.setdefault("_implemented_cache", {})
        if key not in cache:
            cache[key] = next(self._impls(hook_name, commune), None) is not None
        return cache[key]

    def _call_one(self, impl: Any, hook_name: str, kwargs: dict[str, Any]) -> tuple[bool, Any]:
        args = {name: kwargs[name] for name in impl.argnames if name in kwargs}
        try:
            return True, impl.function(**args)
        except Exception:
            log.exception(
                'plugin "%s" failed in %s%s',
                impl.plugin_name,
                hook_name,
                f" for commune {kwargs['commune'].slug}" if kwargs.get("commune") else "",
            )
            return False, None

    def call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every (enabled) implementation; give (plugin name, result) for non-None results."""
        results = []
        for impl in self._impls(hook_name, kwargs.get("commune")):
            ok, result = self._call_one(impl, hook_name, kwargs)
            if ok and result is not None:
                results.append((impl.plugin_name, result))
        return results

    def call_all(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call every (enabled) implementation; collect the non-None results."""
        return [result for _name, result in self.call_each(hook_name, **kwargs)]

    def call_first(self, hook_name: str, **kwargs: Any) -> tuple[Any, str | None]:
        """Call implementations until one returns non-None; give (result, plugin name)."""
        for impl in self._impls(hook_name, kwargs.get("commune")):
            ok, result = self._call_one(impl, hook_name, kwargs)
            if ok and result is not None:
                return result, impl.plugin_name
        return None, None

    def describe(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in sorted(self.list_name_plugin(), key=lambda item: item[0]):
            if plugin is None:
                continue
            hooks = tuple(sorted(caller.name for caller in self.get_hookcallers(plugin) or []))
            infos.append(
                PluginInfo(
                    name=name,
                    version=self.versions.get(name),
                    hooks=hooks,
                    builtin=name in self.builtin_names,
                    settings_model=getattr(plugin, "Settings", None),
                )
            )
        return infos


def _vigie_version() -> str | None:
    try:
        return metadata.version("vigie")
    except metadata.PackageNotFoundError:
        return None


def get_plugin_manager(
    settings: Settings | None = None, extra_plugins: tuple[Any, ...] = ()
) -> VigiePluginManager:
    """Build a plugin manager: specs, built-ins, entry points, then ``check_pending``.

    ``extra_plugins`` are registered last (tests and embedding applications).
    Raises :class:`PluginLoadError` naming the plugin that could not load, or
    pluggy's error naming an implementation that matches no spec.
    """
    disabled = set(settings.disabled_plugins) if settings else set()
    pm = VigiePluginManager()
    version = _vigie_version()
    for dotted in DEFAULT_PLUGINS:
        name = dotted.rsplit(".", 1)[-1]
        if name in disabled:
            continue
        try:
            module = importlib.import_module(dotted)
        except Exception as exc:
            raise PluginLoadError(f'Error loading plugin "{name}" ({dotted}): {exc}') from exc
        pm.register(module, name=name)
        pm.builtin_names.add(name)
        pm.versions[name] = version
    for entry_point in metadata.entry_points(group="vigie"):
        if entry_point.name in disabled or pm.get_plugin(entry_point.name) is not None:
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:
            raise PluginLoadError(f'Error loading plugin "{entry_point.name}": {exc}') from exc
        try:
            pm.register(plugin, name=entry_point.name)
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(f'Error loading plugin "{entry_point.name}": {exc}') from exc
        dist = getattr(entry_point, "dist", None)
        pm.versions[entry_point.name] = dist.version if dist is not None else None
    for plugin in extra_plugins:
        # A module registers under the name after its last dot, as built-ins do.
        name = (
            getattr(plugin, "name", None)
            or getattr(plugin, "__name__", "").rsplit(".", 1)[-1]
            or None
        )
        try:
            pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(f'Error loading plugin "{name}": {exc}') from exc
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        raise PluginLoadError(f'Error loading plugin "{name}": {exc}') from exc
    return pm
