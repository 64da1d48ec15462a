"""Input values as numbers: the check the scalar processors share."""

from __future__ import annotations

from typing import Any

import numpy as np

from epics_meta_devices import ProcessingError


def scalar(value: Any, what: str) -> float:
    """`value` (an input's latest value) as a float; ProcessingError naming `what` (e.g.
    ``"input B (lab:temp)"``) for a waveform or a string, which have no single number."""
    if isinstance(value, np.ndarray):
        raise ProcessingError(f"{what} is a waveform ({value.size} elements); only scalars are accepted")
    if isinstance(value, (str, bytes)):
        raise ProcessingError(f"{what} is a string ({value[:40]!r}), not a number")
    try:
        return float(value)  # bool, int, enum index, float
    except (TypeError, ValueError):
        raise ProcessingError(f"{what} is not a number ({type(value).__name__})") from None


__all__ = ["scalar"]
