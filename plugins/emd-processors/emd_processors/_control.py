"""The PID control law as a pure function: a measurement and the loop's state in, an output
and the next state out. Kept apart from the device so it can be tested without EPICS and so a
failed write can simply drop the new state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol


class PidSettings(Protocol):
    """What the law needs from a configuration (PIDConfig has these fields)."""

    kp: float
    ki: float
    kd: float
    output_min: float
    output_max: float
    rate_limit: float


@dataclass(frozen=True)
class PidState:
    """What the loop remembers between steps; a new loop starts with ``PidState()``."""

    integral: float = 0.0
    """The integral term (ki times the integrated error), in output units."""
    measured: float | None = None
    """The previous measurement and its timestamp (for the derivative and dt)."""
    time: float | None = None
    output: float | None = None
    """The output last written (or read from the actuator), and the time (monotonic seconds)
    it was, for the rate limit."""
    written_at: float | None = None


class PidStep(NamedTuple):
    output: float
    error: float
    state: PidState
    """The state to keep if `output` is written successfully."""


def pid_step(settings: PidSettings, state: PidState, *, setpoint: float, measured: float,
             time: float, now: float, max_rate_interval: float = 1.0) -> PidStep:
    """One step of the loop for a measurement taken at `time` (seconds since the epoch),
    computed at `now` (monotonic seconds).

    - P acts on the error ``setpoint - measured``; D on the measurement's rate of change
      (not the error's), so a setpoint change gives no derivative kick.
    - Anti-windup: the integral grows only until the output reaches its limit, not beyond,
      and never leaves [output_min, output_max] itself; so the loop recovers at once when the
      error changes sign instead of first unwinding a huge integral.
    - The output is limited to [output_min, output_max] and, with a rate_limit > 0, to
      rate_limit per second of change since the last output; the limits win over the rate.
      The time since the last output counts at most `max_rate_interval` seconds: after a pause
      (no valid measurement, failed writes) the actuator has not moved, so the output must not
      jump by rate_limit times the whole pause.
    """
    error = setpoint - measured
    dt = max(0.0, time - state.time) if state.time is not None else 0.0  # no time: no I, no D
    proportional = settings.kp * error
    derivative = 0.0
    if dt > 0 and state.measured is not None:
        derivative = -settings.kd * (measured - state.measured) / dt
    integral = state.integral + settings.ki * error * dt
    # Anti-windup: integrate only as far as the output can follow, never pushing it deeper
    # into a limit (but also never undoing integral because P or D alone exceed the limit).
    if integral > state.integral:
        integral = max(state.integral, min(integral, settings.output_max - proportional - derivative))
    elif integral < state.integral:
        integral = min(state.integral, max(integral, settings.output_min - proportional - derivative))
    integral = _clamp(integral, settings.output_min, settings.output_max)
    output = proportional + integral + derivative
    if settings.rate_limit > 0 and state.output is not None and state.written_at is not None:
        interval = min(max(0.0, now - state.written_at), max_rate_interval)
        largest_change = settings.rate_limit * interval
        output = _clamp(output, state.output - largest_change, state.output + largest_change)
    output = _clamp(output, settings.output_min, settings.output_max)
    return PidStep(output, error, PidState(integral, measured, time, output, now))


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


__all__ = ["PidSettings", "PidState", "PidStep", "pid_step"]
