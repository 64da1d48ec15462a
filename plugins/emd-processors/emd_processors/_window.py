"""SampleWindow: the samples statistics are computed over, kept by count or by age."""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np

MAX_SAMPLES = 100_000
"""Most samples a window holds, also when it is limited by time (bounds the memory)."""


class Statistics(NamedTuple):
    count: int
    mean: float
    std: float
    """Population standard deviation (numpy.std, ddof=0): 0 for a single sample."""
    minimum: float
    maximum: float


class SampleWindow:
    """The newest `max_count` samples, or with `max_age` > 0 the samples at most `max_age`
    seconds older than the newest one (by their own timestamps, not by arrival)."""

    def __init__(self, max_count: int = 100, max_age: float = 0.0) -> None:
        self.max_age = max_age
        self._samples: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES if max_age else max_count)
        self._newest = -np.inf

    def add(self, timestamp: float, value: float) -> None:
        """Add one sample; with a time window, drop those that have become too old."""
        if self.max_age:
            if timestamp < self._newest - self.max_age:
                return  # arrived already too old to count
            self._newest = max(self._newest, timestamp)
            cutoff = self._newest - self.max_age
            while self._samples and self._samples[0][0] < cutoff:
                self._samples.popleft()
        self._samples.append((timestamp, value))

    def clear(self) -> None:
        self._samples.clear()
        self._newest = -np.inf

    def __len__(self) -> int:
        return len(self._samples)

    def statistics(self) -> Statistics:
        """Count, mean, standard deviation, minimum and maximum (NaN for an empty window)."""
        times = np.fromiter((t for t, _ in self._samples), float, len(self._samples))
        values = np.fromiter((v for _, v in self._samples), float, len(self._samples))
        if self.max_age:
            # Inputs pooled from several PVs may arrive slightly out of time order: an older
            # sample behind a newer one is left in the deque, so select by time here.
            values = values[times >= self._newest - self.max_age]
        if not values.size:
            return Statistics(0, np.nan, np.nan, np.nan, np.nan)
        return Statistics(int(values.size), float(values.mean()), float(values.std()),
                          float(values.min()), float(values.max()))


__all__ = ["MAX_SAMPLES", "SampleWindow", "Statistics"]
