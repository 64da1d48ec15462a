"""Shell completion of ``emd`` arguments (typer ``autocompletion=`` callbacks): device types from
the plugin registry, and what a factory serves when it answers quickly."""

from __future__ import annotations

from typing import Callable

import typer

from .._plugins import plugin_manager
from .._registry import registry

FACTORY_TIMEOUT = 1.0
"""Seconds completion waits for a factory: a TAB must not hang on an unreachable one."""


def complete_device_types(incomplete: str) -> list[str]:
    """Installed device types starting with `incomplete` (no network)."""
    plugin_manager()
    return [name for name in registry.names() if name.startswith(incomplete)]


def _from_factory(ctx: typer.Context, incomplete: str, read: Callable[..., list[str]]) -> list[str] | None:
    """`read(client)` of the factory named by the command's ``factory`` argument, filtered by
    `incomplete`; None when there is no factory yet or it does not answer in time."""
    from ..factory import FactoryClient  # imports the device machinery: only when completing

    factory = ctx.params.get("factory")
    if not factory:
        return None
    try:
        with FactoryClient(factory, timeout=FACTORY_TIMEOUT) as client:
            names = read(client)
    except Exception:  # completion offers nothing rather than an error in the middle of a line
        return None
    return [name for name in names if name.startswith(incomplete)]


def complete_factory_types(ctx: typer.Context, incomplete: str) -> list[str]:
    """The factory's DEVICETYPES, or the types installed here if it does not answer."""
    found = _from_factory(ctx, incomplete, lambda client: client.types())
    return complete_device_types(incomplete) if found is None else found


def complete_factory_devices(ctx: typer.Context, incomplete: str) -> list[str]:
    """Prefixes of the factory's DEVICES; nothing if it does not answer within a second."""
    found = _from_factory(ctx, incomplete, lambda client: [d["prefix"] for d in client.devices()])
    return found or []
