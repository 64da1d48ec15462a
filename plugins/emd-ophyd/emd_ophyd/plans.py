"""Plan stubs that create and delete emd devices through a factory.

CREATE and DELETE are structure PVs (a request with several fields, answered when the device's
process serves or is gone), so these stubs call the factory through `FactoryClient` on a
worker thread while the RunEngine waits: a refusal raises in the plan
with the factory's own message (an unknown type, a prefix in use, a CONFIG out of range).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Generator, Mapping

import bluesky.plan_stubs as bps
from ophyd_async.plan_stubs import ensure_connected

import epics_meta_devices as emd

from ._device import EmdDevice, Factory


def create_device(factory: Factory, device_type: str, prefix: str, config: Mapping[str, Any] | None = None,
                  name: str = "", device_class: type[EmdDevice] = EmdDevice) -> Generator[Any, Any, EmdDevice]:
    """Create `device_type` under `prefix` with `config` through `factory`; returns the new
    device as a connected `device_class` (EmdDevice, or `Collector` for a collector to fly)
    named `name` (default: the prefix's last part)."""

    def create() -> None:
        with emd.FactoryClient(factory.prefix) as client:
            client.create(device_type, prefix, dict(config or {})).disconnect()

    yield from _run_in_thread(create)
    device = device_class(prefix, name=name or prefix.rsplit(":", 1)[-1])
    yield from ensure_connected(device)
    return device


def delete_device(factory: Factory, device: EmdDevice | str) -> Generator[Any, Any, None]:
    """Delete `device` (an EmdDevice or a prefix) through `factory`; returns once its process is gone."""
    prefix = device if isinstance(device, str) else device.prefix

    def delete() -> None:
        with emd.FactoryClient(factory.prefix) as client:
            client.delete(prefix)

    yield from _run_in_thread(delete)


def _run_in_thread(call: Callable[[], None]) -> Generator[Any, Any, None]:
    """Run `call` on a worker thread while the RunEngine waits; raise what it raised (bps.wait_for
    alone only waits)."""
    (task,) = yield from bps.wait_for([lambda: asyncio.to_thread(call)])
    task.result()


__all__ = ["create_device", "delete_device"]
