"""EmdDevice: any emd device as an ophyd-async Device, built from the PVI it serves.

ophyd-async's `PviDeviceConnector` reads ``PREFIX:PVI`` and makes a typed signal for every PV
(``device.state``, ``device.enable``, ``device.config.<field>``, a processor's ``device.val``),
so nothing here is specific to a device type. What this class adds is what a plan needs:
staging (configure from the fields given, then enable; unstage disables) and reading the
device's outputs (its read-only PVs other than the ones every device has).
"""

from __future__ import annotations

from typing import Any, Mapping

from bluesky.protocols import Readable, Stageable
from ophyd_async.core import AsyncStatus, Device, SignalR, SignalRW
from ophyd_async.epics.core import PviDeviceConnector

CORE_ENTRIES = frozenset({"state", "type", "uuid", "heartbeat", "inputs", "pvi", "annotations"})
"""PVI entries every device (or every processor, collector) has that are not outputs."""


class EmdDevice(Device, Stageable, Readable):
    """An emd device under `prefix`. `config`: CONFIG fields that `stage` puts (each through
    ``CONFIG:<field>``, so a refusal raises with the device's own message; the device is
    disabled first, as CONFIG needs) before it enables the device; `unstage` disables it. `read` and `describe` cover its outputs: every read-only
    scalar or array PV of its PVI besides `CORE_ENTRIES` (a Calc's ``val``, a Stats' ``mean``).
    Connect it as any ophyd-async device (``ensure_connected`` in a plan)."""

    def __init__(self, prefix: str, name: str = "", config: Mapping[str, Any] | None = None) -> None:
        self.prefix = prefix
        self.stage_config = dict(config or {})
        super().__init__(name=name, connector=PviDeviceConnector(f"{prefix}:"))

    @AsyncStatus.wrap
    async def stage(self) -> None:
        if self.stage_config:  # a device configures only while not running (a factory enables what it creates)
            await self.enable.set(False)
        await self.put_config(self.stage_config)
        await self.enable.set(True)

    async def put_config(self, fields: Mapping[str, Any]) -> None:
        """Put each of `fields` through ``CONFIG:<field>`` (the device must be disabled): a
        refusal raises with the device's own message, the fields before it stay applied."""
        for field, value in fields.items():
            signal = getattr(getattr(self, "config", None), field, None)
            if signal is None:
                raise ValueError(f"{self.prefix} has no CONFIG field {field!r}")
            await signal.set(value)

    @AsyncStatus.wrap
    async def unstage(self) -> None:
        await self.enable.set(False)

    def outputs(self) -> dict[str, SignalR]:
        """The signals `read` reads, by PVI entry."""
        return {name: child for name, child in self.children()
                if isinstance(child, SignalR) and not isinstance(child, SignalRW) and name not in CORE_ENTRIES}

    async def read(self) -> dict[str, Any]:
        readings: dict[str, Any] = {}
        for signal in self.outputs().values():
            readings.update(await signal.read())
        return readings

    async def describe(self) -> dict[str, Any]:
        keys: dict[str, Any] = {}
        for signal in self.outputs().values():
            keys.update(await signal.describe())
        return keys


class Factory(EmdDevice):
    """A DeviceFactory as an ophyd-async device (``devices``, ``state``, its CONFIG fields);
    create and delete devices with the plan stubs of `emd_ophyd.plans`."""
