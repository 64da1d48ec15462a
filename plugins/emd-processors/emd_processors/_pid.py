"""feedback.PID: a closed loop that reads a process variable and writes an output PV."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import epics_meta_devices as emd

from ._control import PidState, pid_step
from ._values import scalar

WRITE_TIMEOUT = 1.0
"""Seconds a write to output_pv may take; a measurement waits for it, so keep it short."""
RATE_INTERVAL = 1.0
"""Seconds since the last write the rate limit counts at most (or the period, if longer)."""


class OutputWriteError(RuntimeError):
    """Too many writes to output_pv failed in a row: the loop gives up (device error)."""


@dataclass
class PIDConfig(emd.ProcessingConfig):
    process_variable: str = ""
    """The measured PV (a scalar)."""
    output_pv: str = ""
    """The PV the loop writes (e.g. a power supply's setpoint)."""
    setpoint: float = 0.0
    """The setpoint SETPOINT is set to by every accepted CONFIG put."""
    kp: float = 1.0
    ki: float = 0.0
    """Integral gain, per second."""
    kd: float = 0.0
    """Derivative gain, in seconds."""
    output_min: float = 0.0
    output_max: float = 0.0
    """Limits of the output; must be set (output_min < output_max) before the loop runs."""
    rate_limit: float = 0.0
    """Largest change of the output per second (0: none)."""
    max_write_failures: int = 10
    """Writes to output_pv that may fail in a row before the device moves to error (0: never)."""

    def __post_init__(self) -> None:
        for name in ("setpoint", "kp", "ki", "kd", "output_min", "output_max", "rate_limit"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if self.rate_limit < 0:
            raise ValueError(f"rate_limit must be >= 0 (0: none), got {self.rate_limit}")
        if self.max_write_failures < 0:
            raise ValueError(f"max_write_failures must be >= 0 (0: never give up), got {self.max_write_failures}")


@emd.register_device_type(name="feedback.PID")
class PID(emd.ProcessingDevice):
    """PID loop: reads process_variable, writes output_pv; SETPOINT adjustable while running."""

    Config = PIDConfig
    inputs = ("process_variable",)
    outputs = {"OUTPUT": 0.0, "ERROR": 0.0}
    output_units = {"OUTPUT": ""}  # the actuator's, which the loop does not read; ERROR: the measurement's
    output_descriptions = {"OUTPUT": "what the loop writes to output_pv", "ERROR": "setpoint minus measurement"}

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self.setpoint_pv = self.add_pv("SETPOINT", 0.0, on_put=self._on_setpoint)
        self.loop = PidState()
        self.write_failures = 0
        """Failed writes (or actuator reads) in a row."""

    def configure(self, config: PIDConfig) -> None:
        super().configure(config)
        if not config.output_pv.strip():
            raise emd.DeviceError("set output_pv, the PV the loop writes")
        try:
            output, measured = emd.parse_input(config.output_pv), emd.parse_input(config.process_variable)
        except emd.InputNameError as exc:
            raise emd.DeviceError(f"output_pv: {exc}") from None
        if output.name == measured.name:
            raise emd.DeviceError("output_pv must not be the process_variable")
        if output.name.startswith(f"{self.prefix}:"):
            raise emd.DeviceError("output_pv must not be a PV of this device")
        if not config.output_min < config.output_max:
            raise emd.DeviceError(f"set output limits with output_min < output_max "
                                  f"(got {config.output_min} and {config.output_max})")
        self.setpoint_pv.post(config.setpoint)

    def start(self) -> None:
        super().start()
        self.loop = PidState()  # a new run starts without integral or history
        self.write_failures = 0

    def _on_setpoint(self, value: float) -> None:
        # Runs on the device's queue, like compute(): the next computation uses the new value.
        self.require_state(emd.DeviceState.ready, emd.DeviceState.running, emd.DeviceState.error)
        if not math.isfinite(value):
            raise emd.DeviceError(f"SETPOINT must be a finite number, got {value}")
        self.log.info("setpoint %g -> %g", self.setpoint_pv.value, value)
        self.setpoint_pv.post(value)

    def compute(self, process_variable: Any) -> dict[str, float]:
        measured = scalar(process_variable, f"input process_variable ({self.config.process_variable})")
        # The measurement's own time for I and D (period trigger: now), real time for the rate.
        taken = self.latest["process_variable"].timestamp if self.triggered_by else time.time()
        try:
            if self.config.rate_limit > 0 and self.loop.output is None:
                # Rate-limit the very first write too: start from where the actuator is.
                self.loop = PidState(output=self._read_output(), written_at=time.monotonic())
            step = pid_step(self.config, self.loop, setpoint=self.setpoint_pv.value, measured=measured,
                            time=taken, now=time.monotonic(), max_rate_interval=self._step_interval())
            self._write(step.output)
        except emd.ProcessingError as exc:
            self.write_failures += 1
            limit = self.config.max_write_failures
            if limit and self.write_failures >= limit:
                raise OutputWriteError(f"gave up after {self.write_failures} failed writes in a row: {exc}") from None
            raise
        self.write_failures = 0
        self.loop = step.state  # kept only once the actuator has the output
        return {"OUTPUT": step.output, "ERROR": step.error}

    def _step_interval(self) -> float:
        """The longest usual time between steps, over which the rate limit may act at once."""
        return max(RATE_INTERVAL, self.config.period) if self.config.trigger == "period" else RATE_INTERVAL

    def _write(self, value: float) -> None:
        self.put_pv(self.config.output_pv, value, timeout=WRITE_TIMEOUT)

    def _read_output(self) -> float:
        name = self.config.output_pv
        return scalar(self.get_pv(name, timeout=WRITE_TIMEOUT)["value"], f"output_pv ({name})")
