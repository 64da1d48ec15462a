"""The device type registry: every device type this process knows, by ``<group>.<Class>`` name.
It is filled by `register_device_type` and by plugins' ``emd_device_types`` hook, and is what a
factory serves as DEVICETYPES."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, TypeVar, overload

from ._state import DeviceError

if TYPE_CHECKING:
    from ._device import MetaDevice

DeviceClass = TypeVar("DeviceClass", bound="type[MetaDevice]")


@dataclass(frozen=True)
class DeviceTypeInfo:
    """One registered device type and the plugin it came from ("" for a local module)."""

    name: str
    cls: type[MetaDevice]
    plugin: str = ""


class DeviceTypeRegistry:
    """Device types by name. Registering the same class twice is harmless; two different classes
    under one name is an error, so a plugin can never silently replace another's type."""

    def __init__(self) -> None:
        self._types: dict[str, DeviceTypeInfo] = {}

    def add(self, cls: type[MetaDevice], plugin: str = "") -> DeviceTypeInfo:
        # A type name is the class's own (never inherited from a registered parent class).
        name = cls.__dict__.get("device_type") or default_type_name(cls)
        existing = self._types.get(name)
        if existing is not None and existing.cls is not cls:
            raise DeviceError(
                f"device type {name!r} is already registered by "
                f"{existing.cls.__module__}.{existing.cls.__qualname__}"
            )
        cls.device_type = name
        info = DeviceTypeInfo(name, cls, plugin or (existing.plugin if existing else ""))
        self._types[name] = info
        return info

    def get(self, name: str) -> DeviceTypeInfo:
        """The type called `name`; DeviceError listing the known types, and the plugins that
        failed to load (one of them may be the one that provides it)."""
        try:
            return self._types[name]
        except KeyError:
            known = ", ".join(sorted(self._types)) or "none installed"
            message = f"unknown device type {name!r} (known: {known})"
            failed = _failed_plugins()
            if failed:
                message += f"; plugins that failed to load: {'; '.join(failed)} (see `emd plugins`)"
            raise DeviceError(message) from None

    def names(self) -> list[str]:
        return sorted(self._types)

    def infos(self) -> list[DeviceTypeInfo]:
        return [self._types[name] for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._types


registry = DeviceTypeRegistry()
"""The registry of this process."""


def _failed_plugins() -> list[str]:
    """``name (error)`` of each plugin that failed to load in this process so far. Reads the
    reports without loading plugins: a plugin may look a type up while it is being loaded."""
    from ._plugins import _reports  # at call time: _plugins imports this module

    return [f"{report.name} ({report.error})" for report in list(_reports) if report.error]


def default_type_name(cls: type) -> str:
    """``<group>.<Class>``: the group is the class's top-level module without an ``emd_``
    prefix (``emd_ping.device.Ping`` -> ``ping.Ping``); a script's classes are ``local.*``."""
    top = cls.__module__.split(".")[0]
    group = "local" if top == "__main__" else top.removeprefix("emd_")
    return f"{group}.{cls.__name__}"


@overload
def register_device_type(cls: DeviceClass) -> DeviceClass: ...
@overload
def register_device_type(*, name: str) -> Callable[[DeviceClass], DeviceClass]: ...


def register_device_type(cls=None, *, name=None):  # type: ignore[no-untyped-def]
    """Class decorator: make a MetaDevice subclass a device type, named `name` or
    ``<group>.<Class>`` (see `default_type_name`)."""

    def decorate(device_cls):  # type: ignore[no-untyped-def]
        if name:
            device_cls.device_type = name
        registry.add(device_cls)
        return device_cls

    return decorate(cls) if cls is not None else decorate
