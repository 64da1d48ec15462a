"""The device side of the processing benchmark: ``bench.Relay``, a minimal ProcessingDevice
with one input ``x`` and one output ``Y = x``.

Device processes load it as a local plugin: ``EMD_PLUGINS=bench._relay_device`` with the
repository root on ``PYTHONPATH`` (bench.processing sets both for the process it starts).
"""

from __future__ import annotations

from dataclasses import dataclass

import epics_meta_devices as emd


@dataclass
class RelayConfig(emd.ProcessingConfig):
    x: str = ""
    """The input PV."""


@emd.register_device_type(name="bench.Relay")
class Relay(emd.ProcessingDevice):
    """Y = x: the processing machinery with nothing to compute."""

    Config = RelayConfig
    inputs = ("x",)
    outputs = {"Y": 0.0}

    def compute(self, x: float) -> float:
        return x


@emd.hookimpl
def emd_device_types() -> list[type[emd.MetaDevice]]:
    return [Relay]
