"""``emd.devices.<group>.<Class>``: attribute access to registered device types, so that
``emd.devices.ping.Ping('p1')`` works once the plugin providing ``ping.Ping`` is installed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._plugins import plugin_manager
from ._registry import registry

if TYPE_CHECKING:
    from ._device import MetaDevice


class DeviceGroup:
    """The device types of one group, e.g. ``emd.devices.collect``."""

    def __init__(self, group: str) -> None:
        self._group = group

    def __getattr__(self, name: str) -> type[MetaDevice]:
        if name.startswith("__"):
            raise AttributeError(name)
        full = f"{self._group}.{name}"
        if full not in registry:
            raise AttributeError(f"no device type {full!r} (installed: {', '.join(registry.names())})")
        return registry.get(full).cls

    def __dir__(self) -> list[str]:
        return [n.split(".", 1)[1] for n in registry.names() if n.split(".", 1)[0] == self._group]


class DeviceNamespace:
    """Groups of installed device types; plugins are loaded on first access."""

    def __getattr__(self, group: str) -> DeviceGroup:
        if group.startswith("__"):
            raise AttributeError(group)
        plugin_manager()
        if not any(name.split(".", 1)[0] == group for name in registry.names()):
            raise AttributeError(f"no device group {group!r} (installed: {', '.join(registry.names())})")
        return DeviceGroup(group)

    def __dir__(self) -> list[str]:
        plugin_manager()
        return sorted({name.split(".", 1)[0] for name in registry.names()})
