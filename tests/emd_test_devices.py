"""Device types used only by the tests, loaded in device processes through EMD_PLUGINS."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import epics_meta_devices as emd


@dataclass
class ProbeConfig:
    name: str = "probe"
    gain: float = 1.0
    count: int = 10
    enabled_channels: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    strict: bool = False
    watch: str = ""
    """An external PV to monitor while running; its value times gain goes to OUTPUT."""
    fail_configure: bool = False
    fail_start: bool = False

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")


@emd.register_device_type(name="test.Probe")
class Probe(emd.MetaDevice):
    """Test device with a config of every field type, input/command/output PVs and a monitor."""

    Config = ProbeConfig

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self.input = self.add_pv("INPUT", 0.0, writable=True)
        self.command = self.add_pv("CMD", "", on_put=self.on_command)
        self.output = self.add_pv("OUTPUT", 0.0)
        self.mode = self.add_pv("MODE", 0, choices=["off", "slow", "fast"], writable=True)

    def configure(self, config: ProbeConfig) -> None:
        if config.fail_configure:
            raise RuntimeError("configure refused on purpose")

    def start(self) -> None:
        if self.config.fail_start:
            raise RuntimeError("start refused on purpose")
        if self.config.watch:
            self.watching = self.monitor(self.config.watch, self.on_watched)

    def stop(self) -> None:
        if getattr(self, "watching", None) is not None:
            self.close_monitor(self.watching)
            self.watching = None

    def on_watched(self, value: Any) -> None:
        if value["value"] < 0:
            raise ValueError(f"negative input {value['value']}")
        self.output.post(value["value"] * self.config.gain)

    def on_command(self, command: str) -> None:
        if command == "compute":
            self.require_state(emd.DeviceState.running)
            self.output.post(self.input.value * self.config.gain)
        elif command == "crash":  # a failure in a worker thread while running
            threading.Thread(target=self.report_error, args=(RuntimeError("worker crashed"),)).start()
        else:
            raise emd.DeviceError(f"unknown command {command!r} (known: compute, crash)")
        self.command.post(command)


@emd.register_device_type(name="test.CrashOnStart")
class CrashOnStart(emd.MetaDevice):
    """A device whose process dies while it is being built."""

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        os._exit(3)


@emd.hookimpl
def emd_device_types() -> list[type[emd.MetaDevice]]:
    return [Probe, CrashOnStart]


@dataclass
class ScaleConfig(emd.ProcessingConfig):
    x: str = ""
    factor: float = 2.0
    strict: bool = False
    """Raise a non-data error (a bug) from compute when x is negative: the device goes to error."""


@emd.register_device_type(name="test.Scale")
class Scale(emd.ProcessingDevice):
    """Y = factor * x; Y over zero raises a data error (division by zero)."""

    Config = ScaleConfig
    inputs = ("x",)
    outputs = {"Y": 0.0, "INVERSE": 0.0}

    def compute(self, x: float) -> dict[str, float]:
        if x < 0 and self.config.strict:
            raise RuntimeError("negative input in strict mode")
        return {"Y": x * self.config.factor, "INVERSE": 1 / x}


@dataclass
class SumConfig(emd.ProcessingConfig):
    terms: list[str] = field(default_factory=list)


@emd.register_device_type(name="test.Sum")
class Sum(emd.ProcessingDevice):
    """SUM = the sum of the inputs (a list[str] field: a group of inputs)."""

    Config = SumConfig
    inputs = ("terms",)
    outputs = {"SUM": 0.0}

    def compute(self, terms: list[float]) -> float:
        return float(sum(terms))
