"""spectrum.Spectrum: the amplitude spectrum (FFT magnitude) of a waveform PV."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

import epics_meta_devices as emd

WINDOWS = ("none", "hann")


def amplitude_spectrum(samples: np.ndarray, sample_rate: float, window: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """(magnitude, frequency) of real `samples` taken at `sample_rate` Hz: the single-sided
    amplitude spectrum, scaled so that a sine of amplitude a on a frequency bin shows a (with
    the Hann window, up to its leakage) and the DC bin shows the mean."""
    n = len(samples)
    weights = np.hanning(n) if window == "hann" else np.ones(n)
    magnitude = np.abs(np.fft.rfft(samples * weights)) / weights.sum()
    # Every bin but DC (and Nyquist, for an even n) stands for a positive and a negative
    # frequency: double it to show the sine's amplitude.
    magnitude[1:n // 2 + n % 2] *= 2
    return magnitude, np.fft.rfftfreq(n, 1.0 / sample_rate)


@dataclass
class SpectrumConfig(emd.ProcessingConfig):
    waveform: str = ""
    """The waveform PV (an NTScalarArray of numbers)."""
    sample_rate: float = 1.0
    """Samples per second of the waveform (Hz): sets FREQUENCY."""
    window: str = "none"
    """Window applied before the FFT: none or hann."""
    length: int = 0
    """> 0: only waveforms of exactly this many samples are accepted."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sample_rate) and self.sample_rate > 0):
            raise ValueError(f"sample_rate must be a positive number of Hz, got {self.sample_rate}")
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {', '.join(WINDOWS)}, not {self.window!r}")
        if self.length < 0:
            raise ValueError(f"length must be >= 0 (0: any), got {self.length}")


@emd.register_device_type(name="spectrum.Spectrum")
class Spectrum(emd.ProcessingDevice):
    """MAGNITUDE and FREQUENCY: the amplitude spectrum of a waveform PV."""

    Config = SpectrumConfig
    inputs = ("waveform",)
    outputs = {"MAGNITUDE": np.zeros(0), "FREQUENCY": np.zeros(0)}
    output_units = {"FREQUENCY": "Hz"}  # MAGNITUDE: the input's units
    output_descriptions = {"MAGNITUDE": "amplitude spectrum of the waveform", "FREQUENCY": "frequency of each bin"}

    def compute(self, waveform: Any) -> dict[str, np.ndarray]:
        what = f"input waveform ({self.config.waveform})"
        if not isinstance(waveform, np.ndarray) or waveform.ndim != 1:
            raise emd.ProcessingError(f"{what} is a scalar; spectrum.Spectrum needs a waveform")
        if waveform.dtype.kind not in "biuf":
            raise emd.ProcessingError(f"{what} holds {waveform.dtype} values, not numbers")
        if waveform.size < 2:
            raise emd.ProcessingError(f"{what} has {waveform.size} sample(s); at least 2 are needed")
        if self.config.length and waveform.size != self.config.length:
            raise emd.ProcessingError(f"{what} has {waveform.size} samples; length is set to {self.config.length}")
        magnitude, frequency = amplitude_spectrum(waveform.astype(float), self.config.sample_rate,
                                                  self.config.window)
        return {"MAGNITUDE": magnitude, "FREQUENCY": frequency}
