"""Plugin discovery: load each ``emd`` entry point (and each module in ``EMD_PLUGINS``) on its
own, so one broken plugin is reported and never takes the host process down."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

import pluggy

from . import hookspecs
from ._registry import registry

ENTRY_POINT_GROUP = "emd"
PLUGINS_ENV = "EMD_PLUGINS"


@dataclass
class PluginReport:
    """What loading one plugin gave: its distribution, device types, and any error."""

    name: str
    distribution: str = ""
    version: str = ""
    device_types: list[str] = field(default_factory=list)
    error: str = ""


_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None
_reports: list[PluginReport] = []


def plugin_manager() -> pluggy.PluginManager:
    """The process's plugin manager, with every installed plugin loaded (once)."""
    global _manager
    with _lock:
        if _manager is None:
            manager = pluggy.PluginManager("emd")
            manager.add_hookspecs(hookspecs)
            for report, load in _plugin_sources():
                _load(manager, report, load)
                _reports.append(report)
            _manager = manager
        return _manager


def plugin_reports() -> list[PluginReport]:
    """One report per plugin found, in load order (loads plugins if not done yet)."""
    plugin_manager()
    return list(_reports)


def call_isolated(hook_name: str, report_errors: list[str] | None = None, **kwargs: Any) -> list[Any]:
    """Call one hook of each plugin separately; a plugin whose hook raises is skipped (and its
    error appended to `report_errors`) instead of failing the whole call as pluggy would."""
    results = []
    for impl in getattr(plugin_manager().hook, hook_name).get_hookimpls():
        try:
            results.append(impl.function(**kwargs))
        except Exception as exc:
            if report_errors is not None:
                report_errors.append(f"plugin {impl.plugin_name!r}: {type(exc).__name__}: {exc}")
    return results


def exporters() -> dict[str, Any]:
    """Installed exporters by name (from every plugin's ``emd_exporters`` hook)."""
    return {e.name: e for found in call_isolated("emd_exporters") for e in found or []}


def uploaders() -> dict[str, Any]:
    """Installed uploaders by name (from every plugin's ``emd_uploaders`` hook)."""
    return {u.name: u for found in call_isolated("emd_uploaders") for u in found or []}


def _plugin_sources() -> list[tuple[PluginReport, Callable[[], ModuleType]]]:
    sources: list[tuple[PluginReport, Callable[[], ModuleType]]] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        report = PluginReport(
            ep.name, dist.metadata["Name"] if dist else "", dist.version if dist else ""
        )
        sources.append((report, ep.load))
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        sources.append((PluginReport(module), lambda module=module: importlib.import_module(module)))
    return sources


def _load(manager: pluggy.PluginManager, report: PluginReport, load: Callable[[], ModuleType]) -> None:
    try:
        plugin = load()
    except Exception as exc:  # a plugin that fails to import is reported, not raised
        report.error = f"{type(exc).__name__}: {exc}"
        return
    if manager.is_registered(plugin):
        return
    try:
        manager.register(plugin, name=report.name)
        for impl in manager.hook.emd_device_types.get_hookimpls():
            if impl.plugin is plugin:
                for cls in impl.function() or []:
                    report.device_types.append(registry.add(cls, plugin=report.distribution).name)
    except Exception as exc:  # a bad hook, or a type clashing with another plugin's
        report.error = f"{type(exc).__name__}: {exc}"
        if manager.is_registered(plugin):
            manager.unregister(plugin)
