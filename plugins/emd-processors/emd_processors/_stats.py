"""stats.Stats: count, mean, standard deviation, minimum and maximum of one or more scalar
input PVs, pooled into one window of the newest samples (by count or by time)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import epics_meta_devices as emd
from epics_meta_devices import InputSample

from ._values import scalar
from ._window import MAX_SAMPLES, SampleWindow

INVALID = 3  # EPICS alarm severity


@dataclass
class StatsConfig(emd.ProcessingConfig):
    inputs: list[str] = field(default_factory=list)
    """Scalar PVs whose samples are pooled into one window."""
    window: int = 100
    """Samples in the window (when window_seconds is 0)."""
    window_seconds: float = 0.0
    """> 0: the window holds the samples at most this many seconds older than the newest
    sample (by the samples' timestamps), instead of a count."""

    def __post_init__(self) -> None:
        if not 1 <= self.window <= MAX_SAMPLES:
            raise ValueError(f"window must be 1 to {MAX_SAMPLES} samples, got {self.window}")
        if not (math.isfinite(self.window_seconds) and self.window_seconds >= 0):
            raise ValueError(f"window_seconds must be >= 0 (0: use window), got {self.window_seconds}")


@emd.register_device_type(name="stats.Stats")
class Stats(emd.ProcessingDevice):
    """Windowed statistics (COUNT, MEAN, STD, MIN, MAX) of scalar input PVs."""

    Config = StatsConfig
    inputs = ("inputs",)
    outputs = {"COUNT": 0, "MEAN": 0.0, "STD": 0.0, "MIN": 0.0, "MAX": 0.0}
    output_units = {"COUNT": ""}  # MEAN, STD, MIN and MAX: the input's units
    output_descriptions = {"COUNT": "samples in the window", "MEAN": "mean of the window",
                           "STD": "standard deviation of the window", "MIN": "smallest in the window",
                           "MAX": "largest in the window"}
    requires_all_inputs = False  # pooled: one input away must not hold up the others' samples

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self.window = SampleWindow()
        self._added: dict[str, InputSample] = {}  # the last sample of each input in the window

    def configure(self, config: StatsConfig) -> None:
        super().configure(config)
        self.window = SampleWindow(config.window, config.window_seconds)

    def start(self) -> None:
        super().start()
        self.window.clear()  # every run starts with an empty window
        self._added.clear()

    def compute(self, inputs: list[Any]) -> dict[str, Any]:
        new = self._new_samples()
        # Convert everything first, so a refused value leaves the window untouched.
        values = [scalar(sample.value, f"input {name} ({self._pv(name)})") for name, sample in new]
        for (name, sample), value in zip(new, values):
            self.window.add(sample.timestamp, value)
            self._added[name] = sample
        stats = self.window.statistics()
        return {"COUNT": stats.count, "MEAN": stats.mean, "STD": stats.std,
                "MIN": stats.minimum, "MAX": stats.maximum}

    def _new_samples(self) -> list[tuple[str, InputSample]]:
        """The samples this computation adds, oldest first.

        With trigger ``any`` or ``all``: every valid input's latest update not yet in the
        window: the update that triggered this computation (``any``), or one per input
        (``all``). With trigger ``period``: the latest valid value of every input, stamped now
        (sampling). INVALID, disconnected and missing inputs add nothing.
        """
        valid = [(name, sample) for name, sample in self.latest.items() if sample.severity < INVALID]
        if not self.triggered_by:
            now = time.time()
            return [(name, replace(sample, timestamp=now)) for name, sample in valid]
        new = [(name, sample) for name, sample in valid if self._added.get(name) is not sample]
        return sorted(new, key=lambda item: item[1].timestamp)

    def _pv(self, name: str) -> str:
        """The PV of input ``inputs[i]``."""
        return self.config.inputs[int(name[len("inputs["):-1])]
