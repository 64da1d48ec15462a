"""PVRecorder: records every update of one input PV into a RingBuffer, with its counters,
connection events and optional processing (N-to-1 decimation, deadband).

PVAccess updates arrive through p4p's raw client: its monitor handler only queues the recorder,
and one drain thread pops every queued update of a subscription per wake-up (cheaper per update
than the thread client's callbacks, see P4P-NOTES). Channel Access updates (``ca://`` inputs)
arrive through a CaFeed: libca's thread only copies each into a tuple and queues it, and the
same drain thread records them, so one thread writes every buffer either way."""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from p4p import Value
from p4p.client.raw import Context, Disconnected, Finished, RemoteError

from epics_meta_devices._inputs import CA_CODES, CA_HINT_AFTER, DBR_ENUM, CaFeed, ca_hint, channel_access

from ._buffer import RingBuffer, sample_bytes

# PVAccess type code -> NumPy dtype of the value column ('s': Python strings in an object array)
DTYPES = {"?": np.bool_, "b": np.int8, "B": np.uint8, "h": np.int16, "H": np.uint16,
          "i": np.int32, "I": np.uint32, "l": np.int64, "L": np.uint64,
          "f": np.float32, "d": np.float64, "s": np.object_}
AGGREGATES = {"mean": np.mean, "min": np.min, "max": np.max, "last": lambda values: values[-1]}
COUNTERS = ("received", "stored", "dropped", "filtered", "gaps", "disconnects",
            "type_changes", "rejected", "time_reversals", "stalls")
GAP_SEVERITY = 3
"""Alarm severity of a gap marker row: INVALID, as EPICS marks data nobody can vouch for."""
GAP_STATUS = 7
"""Alarm status of a gap marker row: CLIENT, the Normative Types' status for a condition the
client (here the collector) found, not the source. A marker row says: from this row's time to
the next row's, this PV's data is missing (disconnected or stale); its event has the same time."""


def is_gap(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Which rows of recorded columns are gap markers, as a boolean array."""
    return (np.asarray(columns["severity"]) == GAP_SEVERITY) & (np.asarray(columns["status"]) == GAP_STATUS)


@dataclass
class Processing:
    """Minor processing of numeric scalars, as the EPICS compress record does."""

    decimate: int = 1
    mode: str = "mean"
    deadband: float = 0.0

    def __post_init__(self) -> None:
        if self.decimate < 1:
            raise ValueError(f"decimate must be >= 1, got {self.decimate}")
        if self.mode not in AGGREGATES:
            raise ValueError(f"mode must be one of {', '.join(AGGREGATES)}, got {self.mode!r}")
        if not self.deadband >= 0:
            raise ValueError(f"deadband must be >= 0, got {self.deadband}")

    @property
    def active(self) -> bool:
        return self.decimate > 1 or self.deadband > 0


@dataclass(frozen=True)
class PVKind:
    """What a PV's updates look like, fixed by its first update."""

    kind: str  # "scalar", "string", "enum" or "waveform"
    code: str  # PVAccess type code of the stored value ("i" for enum indices)
    width: int | None = None

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(DTYPES[self.code])

    @property
    def numeric(self) -> bool:
        return self.kind == "scalar" and self.code not in ("s", "?")


def ca_kind(datatype: int, array: bool, value: Any) -> PVKind:
    """The PVKind of a CA update: its DBR type, and whether the record holds an array (NELM >
    1: a waveform, whatever its current length)."""
    code = CA_CODES.get(datatype)
    if code is None:
        raise TypeError(f"unsupported DBR type {datatype!r}")
    if datatype == DBR_ENUM:
        return PVKind("enum", "i")
    if array:
        if code == "s":
            raise TypeError("string waveforms are not recorded")
        return PVKind("waveform", code, len(value))
    return PVKind("string" if code == "s" else "scalar", code)


def kind_of(update: Value) -> PVKind:
    if update.getID().startswith("epics:nt/NTEnum"):
        return PVKind("enum", "i")
    code = update.type().aspy("value")
    if not isinstance(code, str) or code.lstrip("a") not in DTYPES:
        raise TypeError(f"unsupported value type {code!r}")
    if code.startswith("a"):
        return PVKind("waveform", code[1:], len(update["value"]))
    return PVKind("string" if code == "s" else "scalar", code)


@dataclass
class Event:
    """A connection event or a notable change, with the time it happened (s since epoch)."""

    time: float
    kind: str
    message: str = ""


class PVRecorder:
    """The recording of one input PV."""

    def __init__(self, name: str, max_samples: int, max_bytes: int, processing: Processing,
                 max_events: int = 1000, protocol: str = "pva") -> None:
        self.name = name
        self.protocol = protocol  # "pva" or "ca": how the PV is reached
        self.subscribed_at = 0.0  # time.monotonic() of the last subscribe
        self._control: Any = None  # CA: the last DBR_CTRL value (units, choices)
        self._hinted = False  # the "unanswered" event was added for this subscription
        self._properties: Any = None  # CA: the DBR_CTRL subscription
        self._ca_type = -1  # CA: the DBR type of the last update recorded
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.processing = processing
        self.lock = threading.Lock()  # guards buffer and events against the publisher's reads
        self.buffer: RingBuffer | None = None
        self.buffers_made = 0  # which buffer a spooling cursor was of (ids can be reused)
        self.rows_before = 0  # samples appended to earlier buffers: rows are numbered across them
        self.kind: PVKind | None = None
        self.choices: list[str] = []
        self.units = ""
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.events: deque[Event] = deque(maxlen=max_events)  # the newest: bounded memory
        self.connected = False
        self.version = 0  # changes whenever stored data or counters change
        self.subscription: Any = None
        self.stale_after = 0.0  # seconds; 0: never stale
        self.stale = False  # connected, but no update for stale_after s
        self._last_arrival = 0.0  # time.monotonic() of the last update
        self._last_time = 0  # ns since the epoch
        self._last_tag = 0
        self._last_stored: float | None = None
        self._pending: list[tuple[float, int, int, int]] = []
        self._py_type: type | None = None

    # -- subscription -----------------------------------------------------------------------------

    def subscribe(self, context: Context, queue_size: int, ready: queue.SimpleQueue) -> None:
        """Monitor the PV losslessly. PVAccess: a deep queue with pipelining (p4p squashes to 4
        otherwise). CA: every update aioca receives (libca may still merge under flow control:
        see docs/collector.md), queued here for the drain thread."""
        self.subscribed_at = time.monotonic()
        self._hinted = False
        if self.protocol == "ca":
            access = channel_access()
            self._properties = access.properties(self.name, self._on_control)
            self.subscription = CaFeed(access, self.name, lambda: ready.put(self))
            return
        self.subscription = context.monitor(
            self.name, lambda: ready.put(self), f"record[queueSize={queue_size},pipeline=true]"
        )

    def _on_control(self, control: Any) -> None:
        """CA: DBR_CTRL at each connect and property change: units and enum choices."""
        with self.lock:
            self._control = control
            if self.kind is not None:
                self._take_control()
                self.version += 1

    def _take_control(self) -> None:
        if self._control is not None:
            self.units = str(getattr(self._control, "units", "") or "")
            if self.kind is not None and self.kind.kind == "enum":
                self.choices = [str(choice) for choice in getattr(self._control, "enums", [])]

    def unsubscribe(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None
        if self._properties is not None:
            self._properties.close()
            self._properties = None
        if self.connected:
            self._event("disconnected", "recording stopped")
            self.connected = False

    def drain(self) -> None:
        """Record every update queued for this PV (runs on the collector's drain thread)."""
        subscription = self.subscription
        while subscription is not None:
            update = subscription.pop()
            if update is None:
                return
            if isinstance(update, Exception):
                self._on_exception(update)
                continue
            try:
                if self.protocol == "ca":
                    self._record_ca(update)
                else:
                    self._record(update)
            except Exception as exc:  # an update that does not fit: rejected and said, never fatal
                self.counters["rejected"] += 1
                self._event("rejected", f"{type(exc).__name__}: {exc}")

    # -- recording --------------------------------------------------------------------------------

    def _arrived(self) -> None:
        self.counters["received"] += 1
        self._last_arrival = time.monotonic()
        if not self.connected:
            self.connected = True
            self._event("connected")
        if self.stale:
            self.stale = False
            self._event("fresh", "updates again")

    def _record(self, update: Value) -> None:
        """A PVAccess update (NTScalar, NTScalarArray or NTEnum)."""
        self._arrived()
        value = update["value"]
        if type(value) is not self._py_type or (
            self.kind and self.kind.kind == "waveform" and getattr(value, "dtype", self.kind.dtype) != self.kind.dtype
        ):
            value = self._check_kind(lambda: kind_of(update), value, update)
            if value is None:
                return
        if self.kind.kind == "enum":  # type: ignore[union-attr]
            value = value["index"]
        stamp = update["timeStamp.secondsPastEpoch"] * 1_000_000_000 + update["timeStamp.nanoseconds"]
        self._record_sample(value, stamp, update["timeStamp.userTag"], update["alarm.severity"],
                            update["alarm.status"])

    def _record_ca(self, update: tuple) -> None:
        """A CA update: a CaUpdate tuple from the CaFeed."""
        self._arrived()
        value, secs, nsec, severity, status, datatype, array = update
        if self.kind is None or datatype != self._ca_type:
            if self._check_kind(lambda: ca_kind(datatype, array, value), value, None) is None:
                return
            self._ca_type = datatype
        self._record_sample(value, secs * 1_000_000_000 + nsec, 0, severity, status)

    def _record_sample(self, value: Any, stamp: int, tag: int, severity: int, status: int) -> None:
        if stamp < self._last_time:
            self.counters["time_reversals"] += 1  # kept, in arrival order (see docs)
        self._last_time = stamp
        if tag and self._last_tag and tag != self._last_tag + 1:
            self.counters["gaps"] += 1  # the source numbers its updates in userTag: some are missing
        self._last_tag = tag
        if self.processing.active and self.kind.numeric:  # type: ignore[union-attr]
            self._process(float(value), stamp, severity, status)
        else:
            self._store(value, stamp, severity, status)

    def _check_kind(self, kind_of_update: Callable[[], PVKind], value: Any, update: Value | None) -> Any:
        """First update: set up the buffer. Later: a type change. Numeric scalars are converted
        and kept; anything else that no longer fits is rejected and counted. `update`: the
        PVAccess Value, for its choices and units (None for CA: those come from DBR_CTRL)."""
        try:
            kind = kind_of_update()
        except TypeError as exc:
            self.counters["rejected"] += 1
            self._event("rejected", str(exc))
            return None
        if self.kind is None:
            self._setup(kind, value, update)
            return value
        if kind != self.kind:
            if self._py_type is not type(value):
                self.counters["type_changes"] += 1
                self._event("type_changed", f"{self.kind.kind} {self.kind.code} -> {kind.kind} {kind.code}")
                self._py_type = type(value)
            if kind.numeric and self.kind.numeric:
                return value
            self.counters["rejected"] += 1
            return None
        self._py_type = type(value)
        return value

    def _sample_limit(self, kind: PVKind, width: int | None) -> int:
        """The memory guard: at most `max_bytes` of buffer for samples of `width` elements."""
        return min(self.max_samples, max(1, self.max_bytes // sample_bytes(kind.dtype, width)))

    def _setup(self, kind: PVKind, value: Any, update: Value | None) -> None:
        max_samples = self._sample_limit(kind, kind.width)
        if max_samples < self.max_samples:
            self._event("limited", f"buffer limited to {max_samples} samples by memory_limit_mb")
        with self.lock:
            self.kind = kind
            if self.buffer is not None:
                self.rows_before += self.buffer.appended
            self.buffer = RingBuffer(kind.dtype, max_samples, kind.width)
            self.buffers_made += 1
            self._py_type = type(value)
            if update is None:  # CA
                self._take_control()
                return
            if kind.kind == "enum":
                self.choices = list(update["value.choices"])
            if "display" in update.keys() and "units" in update["display"].keys():
                self.units = update["display.units"]

    def _process(self, value: float, time_ns: int, severity: int, status: int) -> None:
        processing = self.processing
        if processing.decimate > 1:
            self._pending.append((value, time_ns, severity, status))
            if len(self._pending) < processing.decimate:
                self.counters["filtered"] += 1
                return
            values = np.array([p[0] for p in self._pending])
            worst = max(self._pending, key=lambda p: p[2])
            value = float(AGGREGATES[processing.mode](values))
            severity, status = worst[2], worst[3]
            self._pending.clear()
        if processing.deadband > 0 and self._last_stored is not None and not math.isnan(value):
            if abs(value - self._last_stored) <= processing.deadband:
                self.counters["filtered"] += 1
                return
        self._last_stored = value
        self._store(value, time_ns, severity, status)

    def _store(self, value: Any, time_ns: int, severity: int, status: int) -> None:
        with self.lock:
            if self.kind.width is not None and len(value) > self.kind.width:  # type: ignore[union-attr]
                self._widen(len(value))  # before the append: the wider row must fit
            kept = self.buffer.append(value, time_ns, severity, status)  # type: ignore[union-attr]
            self.counters["stored"] += 1
            if not kept:
                self.counters["dropped"] += 1
            self.version += 1

    def _widen(self, width: int) -> None:
        """Longer waveform rows (called under the lock): the buffer gets the new width and the
        memory guard's sample limit for it, dropping the oldest rows beyond that limit."""
        kind, buffer = self.kind, self.buffer
        assert kind is not None and buffer is not None
        before = buffer.max_samples
        dropped = buffer.widen(width, self._sample_limit(kind, width))
        self.kind = PVKind(kind.kind, kind.code, width)
        if buffer.max_samples < before:
            self.counters["dropped"] += dropped
            self.events.append(Event(time.time(), "limited", f"buffer limited to {buffer.max_samples} samples "
                                     f"by memory_limit_mb for rows of {width}; {dropped} oldest dropped"))

    def keep_events(self, max_events: int) -> None:
        """Keep the newest `max_events` events from now on (the newest of those held, too)."""
        with self.lock:
            if self.events.maxlen != max_events:
                self.events = deque(self.events, maxlen=max_events)

    def check_stale(self, now: float) -> bool:
        """Mark the PV stale, with a gap marker row, when it is connected but has had no update
        for `stale_after` s (a frozen IOC looks connected until the connection times out);
        True if it became stale now. `now`: time.monotonic(). The next update clears it."""
        if self.stale_after <= 0 or self.stale or not self.connected \
                or now - self._last_arrival < self.stale_after:
            return False
        self.stale = True
        self.counters["stalls"] += 1
        self._mark_gap("stale", f"no update for {self.stale_after:g} s")
        return True

    def check_unanswered(self, now: float) -> bool:
        """A bare (PVAccess) name that no server has answered CA_HINT_AFTER s after the
        subscription: an "unanswered" event saying it may be served by Channel Access only and
        how to name it; True when it was added now (once per subscription)."""
        if self.protocol != "pva" or self.subscription is None or self.connected or self._hinted \
                or self.counters["received"] or now - self.subscribed_at < CA_HINT_AFTER:
            return False
        self._hinted = True
        self._event("unanswered", ca_hint(self.name))
        return True

    def _on_exception(self, exc: Exception) -> None:
        if isinstance(exc, Disconnected):
            if self.connected:
                self.counters["disconnects"] += 1
                self._mark_gap("disconnected")
            self.connected = False
            self.stale = False
        elif isinstance(exc, (RemoteError, Finished)):
            self._event("error", str(exc) or type(exc).__name__)

    def _mark_gap(self, kind: str, message: str = "") -> None:
        """Store a gap marker row (see GAP_STATUS) and the event saying why, at the same time.
        Its value is NaN for floating-point PVs, 0, "" or an empty waveform otherwise. It does
        not count as stored, and later timestamps are compared with the last update's, not the
        marker's (a reconnect's first update may carry an older timestamp)."""
        now_ns = time.time_ns()
        with self.lock:
            self.events.append(Event(now_ns / 1e9, kind, message))
            if self.buffer is not None and self.kind is not None:
                if not self.buffer.append(self._gap_value(self.kind), now_ns, GAP_SEVERITY, GAP_STATUS):
                    self.counters["dropped"] += 1
            self.version += 1

    @staticmethod
    def _gap_value(kind: PVKind) -> Any:
        if kind.kind == "waveform":
            return np.zeros(0, kind.dtype)
        if kind.kind == "string":
            return ""
        return math.nan if kind.dtype.kind == "f" else 0

    def _event(self, kind: str, message: str = "") -> None:
        with self.lock:
            self.events.append(Event(time.time(), kind, message))
            self.version += 1

    # -- reading ----------------------------------------------------------------------------------

    def snapshot(self) -> tuple[dict[str, np.ndarray], list[Event]]:
        """Copies of the columns (oldest first) and events, consistent with each other."""
        with self.lock:
            columns = self.buffer.columns() if self.buffer is not None else {}
            return columns, list(self.events)

    def stored(self) -> tuple[dict[str, np.ndarray], tuple[int, int]]:
        """Copies of the columns (oldest first) and the cursor of the newest sample (see since)."""
        with self.lock:
            if self.buffer is None:
                return {}, (0, 0)
            return self.buffer.columns(), (self.buffers_made, self.buffer.appended)

    def since(self, cursor: tuple[int, int]) -> tuple[dict[str, np.ndarray], int, tuple[int, int]]:
        """The samples stored after `cursor` (from an earlier call; ``(0, 0)`` at first), how
        many of them the full buffer dropped before they were read, and the new cursor. A
        cursor of a buffer since cleared or set up again counts from that buffer's start."""
        with self.lock:
            if self.buffer is None:
                return {}, 0, (0, 0)
            buffer, appended = cursor
            if buffer != self.buffers_made:  # the cursor was of an earlier buffer
                appended = 0
            columns, dropped = self.buffer.since(appended)
            return columns, dropped, (self.buffers_made, self.buffer.appended)

    def rows(self, first: int) -> tuple[dict[str, np.ndarray], int]:
        """Copies of the columns from row `first` on, and the number of their first row.

        Rows number every sample stored since the collector started, across CLEARs and new
        buffers, so a reader that read up to row N asks for N+1 next and loses nothing unless the
        returned first row is later (those rows were dropped by the full buffer, or cleared).
        A negative `first` asks for the newest ``-first`` rows. A `first` beyond the next row
        number can only come from before the recording was set up anew (a new collector
        process): it reads from the oldest row, whose lower number tells the reader so."""
        with self.lock:
            if self.buffer is None:
                return {}, self.rows_before
            end = self.rows_before + self.buffer.appended  # the number the next row will get
            oldest = end - self.buffer.count
            if first < 0:
                start = max(end + first, oldest)
            else:
                start = oldest if first > end else max(first, oldest)
            return self.buffer.columns(first=start - oldest), start

    def clear(self) -> None:
        """Forget everything recorded; the next update sets the buffer up again (with the
        max_samples configured now)."""
        with self.lock:
            if self.buffer is not None:
                self.rows_before += self.buffer.appended
            self.buffer, self.kind, self._py_type, self._ca_type = None, None, None, -1
            self.choices, self.units = [], ""
            self.events.clear()
            self.counters = dict.fromkeys(COUNTERS, 0)
            self.stale = False
            self._pending.clear()
            self._last_stored = None
            self.version += 1

    @property
    def nbytes(self) -> int:
        return self.buffer.nbytes if self.buffer is not None else 0
