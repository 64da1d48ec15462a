"""emd-processors: processing devices for epics-meta-devices.

- ``calc.Calc``: VAL = an expression over input PVs A to L, like the EPICS calc record;
- ``stats.Stats``: windowed COUNT, MEAN, STD, MIN and MAX of scalar input PVs;
- ``spectrum.Spectrum``: the amplitude spectrum (FFT magnitude) of a waveform PV;
- ``feedback.PID``: a PID loop that reads one PV and writes another.

Each is an `epics_meta_devices.ProcessingDevice`: the core monitors the inputs, calls
``compute`` and serves the outputs; these modules hold only what is specific to each device.
See docs/processors.md.
"""

from __future__ import annotations

import epics_meta_devices as emd

from ._calc import Calc, CalcConfig
from ._control import PidSettings, PidState, PidStep, pid_step
from ._expression import EvaluationError, Expression, ExpressionError
from ._pid import PID, OutputWriteError, PIDConfig
from ._spectrum import Spectrum, SpectrumConfig, amplitude_spectrum
from ._stats import Stats, StatsConfig
from ._window import SampleWindow, Statistics

__all__ = [
    "PID",
    "Calc",
    "CalcConfig",
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "OutputWriteError",
    "PIDConfig",
    "PidSettings",
    "PidState",
    "PidStep",
    "SampleWindow",
    "Spectrum",
    "SpectrumConfig",
    "Statistics",
    "Stats",
    "StatsConfig",
    "amplitude_spectrum",
    "pid_step",
]


@emd.hookimpl
def emd_device_types() -> list[type[emd.MetaDevice]]:
    return [Calc, Stats, Spectrum, PID]
