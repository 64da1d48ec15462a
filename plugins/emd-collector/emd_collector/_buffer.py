"""RingBuffer: the columnar storage of one recorded PV (value, timestamp in nanoseconds since
the epoch, alarm severity and status), NumPy arrays that grow on demand up to a fixed number of
samples and then drop the oldest."""

from __future__ import annotations

from typing import Any

import numpy as np

COLUMNS = ("value", "time_ns", "severity", "status")
# one int64 of ns since 1970-01-01 UTC (exact until 2262): 8 bytes where the source's seconds and
# nanoseconds take 12, and what clients and NeXus want anyway
TIME_DTYPE = np.dtype(np.int64)
ALARM_DTYPE = np.dtype(np.int16)  # severity and status each
LENGTH_DTYPE = np.dtype(np.int32)  # waveforms: valid elements of a row
INITIAL_CAPACITY = 64
GROWTH = 1.5  # a buffer never holds much more room than samples (memory per sample stays low)


def sample_bytes(dtype: Any, width: int | None = None) -> int:
    """Bytes one sample takes in a RingBuffer of values of `dtype` (`width` of them per row
    for waveforms): the value, its time, severity and status, and a waveform row's length."""
    row = (width or 1) * np.dtype(dtype).itemsize
    return row + TIME_DTYPE.itemsize + 2 * ALARM_DTYPE.itemsize + (LENGTH_DTYPE.itemsize if width is not None else 0)


class RingBuffer:
    """At most `max_samples` samples; `width` makes ``value`` 2-D (fixed-length waveforms, with a
    ``length`` column for shorter updates). Not thread-safe: the recorder locks around it."""

    def __init__(self, dtype: np.dtype, max_samples: int, width: int | None = None) -> None:
        self.dtype = np.dtype(dtype)
        self.width = width
        self.max_samples = max_samples
        self.start = 0  # index of the oldest sample
        self.count = 0
        self.appended = 0  # every sample ever appended, dropped ones too: a cursor for spooling
        self._allocate(min(INITIAL_CAPACITY, max_samples))

    @property
    def _padding(self) -> Any:
        return "" if self.dtype == object else 0  # strings are padded with strings

    def _allocate(self, capacity: int) -> None:
        shape = (capacity,) if self.width is None else (capacity, self.width)
        self.value = np.full(shape, self._padding, dtype=self.dtype)
        self.time_ns = np.zeros(capacity, dtype=TIME_DTYPE)
        self.severity = np.zeros(capacity, dtype=ALARM_DTYPE)
        self.status = np.zeros(capacity, dtype=ALARM_DTYPE)
        self.length = np.zeros(capacity, dtype=LENGTH_DTYPE) if self.width is not None else None

    @property
    def capacity(self) -> int:
        return len(self.time_ns)

    def append(self, value: Any, time_ns: int, severity: int, status: int) -> bool:
        """Store one sample; False if the buffer was full and the oldest sample was dropped."""
        if self.count == self.capacity and self.capacity < self.max_samples:
            self._grow()
        kept = self.count < self.capacity
        i = (self.start + self.count) % self.capacity if kept else self.start  # full: the oldest
        if self.width is None:
            self.value[i] = value  # first, so a value that does not fit changes nothing
        else:  # a longer row than `width` raises here: the recorder widens the buffer first
            n = len(value)
            self.value[i, :n] = value
            self.value[i, n:] = self._padding
            self.length[i] = n  # type: ignore[index]
        self.appended += 1
        if kept:
            self.count += 1
        else:
            self.start = (self.start + 1) % self.capacity
        self.time_ns[i] = time_ns
        self.severity[i] = severity
        self.status[i] = status
        return kept

    def widen(self, width: int, max_samples: int) -> int:
        """Make room for longer waveforms: rows keep their values and lengths. `max_samples`
        (at most the current limit) is the limit for the wider rows: the oldest rows beyond it
        are dropped. Returns how many were dropped."""
        self.max_samples = min(self.max_samples, max_samples)
        dropped = max(0, self.count - self.max_samples)
        self.width = width
        self._reallocate(min(self.capacity, self.max_samples), first=dropped)
        return dropped

    def _grow(self) -> None:
        self._reallocate(min(max(self.capacity + 1, int(self.capacity * GROWTH)), self.max_samples))

    def _reallocate(self, capacity: int, first: int = 0) -> None:
        """New arrays of `capacity` rows (of the current width) holding the samples from the
        `first` oldest on, the oldest in row 0."""
        old = self.columns(first)
        self._allocate(capacity)
        self.start, self.count = 0, len(old["time_ns"])
        n, value = self.count, old.pop("value")
        if value.ndim == 2:  # rows narrower than a widened buffer are padded
            self.value[:n, : value.shape[1]] = value
        else:
            self.value[:n] = value
        new = {"time_ns": self.time_ns, "severity": self.severity, "status": self.status,
               "length": self.length}
        for name, column in old.items():
            new[name][:n] = column  # type: ignore[index]

    def columns(self, first: int = 0) -> dict[str, np.ndarray]:
        """Copies of the columns, oldest sample first (from the `first` oldest on)."""
        # At most two slices, not an index array: the copy runs at memcpy speed (a publish of
        # a 300k-sample OUT took ~3.5 ms here with fancy indexing, holding the recorder's lock)
        begin = (self.start + first) % self.capacity  # capacity >= 1: max_samples >= 1
        end = begin + max(self.count - first, 0)
        wrapped = end - self.capacity  # samples that continue at row 0
        arrays = {"value": self.value, "time_ns": self.time_ns, "severity": self.severity,
                  "status": self.status}
        if self.length is not None:
            arrays["length"] = self.length
        if wrapped <= 0:
            return {name: array[begin:end].copy() for name, array in arrays.items()}
        return {name: np.concatenate((array[begin:], array[:wrapped])) for name, array in arrays.items()}

    def since(self, cursor: int) -> tuple[dict[str, np.ndarray], int]:
        """Copies of the samples appended after the first `cursor` ones (an earlier
        ``appended``), oldest first, and how many of those were already dropped."""
        new = self.appended - cursor
        kept = min(new, self.count)
        return self.columns(first=self.count - kept), new - kept

    @property
    def nbytes(self) -> int:
        arrays = [self.value, self.time_ns, self.severity, self.status]
        return sum(a.nbytes for a in arrays) + (self.length.nbytes if self.length is not None else 0)

    def clear(self) -> None:
        self.start = self.count = self.appended = 0
        self._allocate(min(INITIAL_CAPACITY, self.max_samples))
