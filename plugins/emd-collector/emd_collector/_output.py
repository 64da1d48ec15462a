"""How recordings are served: the OUT structure (a ``history`` of structures like the original
PV, plus columns), the OUT ``:TABLE`` NTTable, per-PV STATUS, and HISTORY range queries."""

from __future__ import annotations

from collections import deque
from functools import lru_cache
from typing import Any

import numpy as np
from p4p import Type, Value
from p4p.nt import NTTable
from p4p.nt.common import alarm, timeStamp

from ._recorder import COUNTERS, PVKind, PVRecorder, is_gap

DEFAULT_KIND = PVKind("scalar", "d")  # served until the first update says otherwise
STATUS_TYPE = Type(
    [("pv", "s"), ("connected", "?"), ("stale", "?"), ("kind", "s"), ("samples", "L"), ("memory_bytes", "L")]
    + [(name, "L") for name in COUNTERS]
    + [("last_event", "s")],
    id="emd:collector:pvstatus:1.0",
)


def _value_code(kind: PVKind) -> str:
    return ("a" + kind.code) if kind.kind == "waveform" else kind.code


def _element_fields(kind: PVKind) -> list[tuple[str, Any]]:
    return [("value", _value_code(kind)), ("alarm", alarm), ("timeStamp", timeStamp)]


@lru_cache(maxsize=None)
def element_type(kind: PVKind) -> Type:
    """One element of OUT:<pv>.history: an update as the source served it."""
    return Type(_element_fields(kind))


@lru_cache(maxsize=None)
def out_type(kind: PVKind) -> Type:
    """OUT:<pv>: ``history`` (value, alarm, timeStamp per update, as the source served them)
    and the same data as columns, which a client can ask for alone with a pvRequest. The alarm
    columns hold only changes (the row each alarm state begins at): alarms change seldom, and
    per-sample columns would add a quarter to every get of value and time."""
    column = "a" + kind.code  # waveforms: flattened, `width` values per sample
    return Type(
        [
            ("history", ("aS", None, _element_fields(kind))),
            ("value", column),
            ("time_ns", "al"),
            ("alarm_row", "al"),
            ("alarm_severity", "ah"),
            ("alarm_status", "ah"),
            ("length", "ai"),
            ("width", "i"),
            ("choices", "as"),
            ("units", "s"),
            ("kind", "s"),
        ],
        id="emd:collector:out:1.0",
    )


TABLE_EXTRA = [("display", ("S", "display_t", [("units", "s"), ("description", "s")]))]
"""TABLE and ROWS carry the source's units as NTScalar does (``display.units``): the Normative
Types give NTTable no display, and a table of a PV's values needs its unit as much."""


@lru_cache(maxsize=None)  # one type object per kind: post() needs the exact type of open()
def table_nt(kind: PVKind) -> NTTable:
    return NTTable(_table_columns(kind), extra=TABLE_EXTRA)


class HistoryElements:
    """The newest `limit` samples of one recording as ``history`` structures, kept from one
    build of OUT:<pv> to the next so that a build makes only the structures of samples stored
    since the last one. Making a structure costs about 1.5 us, passing a made one on about
    0.8 us: a watched OUT of a slow PV costs a fraction of building its history anew."""

    def __init__(self, kind: PVKind, limit: int) -> None:
        self.kind = kind
        self.limit = limit
        self.elements: deque[Value] = deque(maxlen=limit)
        self.cursor = (0, 0)  # (buffer, appended) of the newest sample made

    def update(self, columns: dict[str, np.ndarray], cursor: tuple[int, int]) -> list[Value]:
        """The history of `columns` (all stored samples, oldest first), whose newest sample is
        at `cursor` (from PVRecorder.stored)."""
        if cursor[0] != self.cursor[0]:  # cleared, or a new buffer: nothing made is current
            self.elements.clear()
            self.cursor = (cursor[0], 0)
        stored = len(columns.get("time_ns", ()))
        new = min(cursor[1] - self.cursor[1], stored, self.limit)
        self.cursor = cursor
        if new <= 0:
            return list(self.elements)
        rows = slice(stored - new, None)
        values = columns["value"][rows]
        plain = values.tolist() if self.kind.kind != "waveform" \
            else [row[:length] for row, length in zip(values, columns["length"][rows])]
        made = element_type(self.kind)
        seconds, nanoseconds = np.divmod(columns["time_ns"][rows], 1_000_000_000)
        for v, sev, st, s, ns in zip(plain, columns["severity"][rows].tolist(), columns["status"][rows].tolist(),
                                     seconds.tolist(), nanoseconds.tolist()):
            fields = {"value": v, "timeStamp": {"secondsPastEpoch": s, "nanoseconds": ns}}
            if sev or st:
                fields["alarm"] = {"severity": sev, "status": st}
            # An unset field is zero in the copy the OUT value makes, and p4p copies only the
            # fields set: leaving a NO_ALARM alarm unset makes every build a quarter cheaper.
            self.elements.append(Value(made, fields))
        while len(self.elements) > stored:  # samples the ring dropped leave the history too
            self.elements.popleft()
        return list(self.elements)


def alarm_changes(columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The alarm columns as changes: the rows where severity or status differ from the row
    before (always row 0), and the severity and status from each of those rows on."""
    severity, status = columns["severity"], columns["status"]
    changed = (severity[1:] != severity[:-1]) | (status[1:] != status[:-1])
    rows = np.concatenate(([0], np.flatnonzero(changed) + 1))
    return rows, severity[rows], status[rows]


def expand_alarms(rows: np.ndarray, severity: np.ndarray, status: np.ndarray, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample severity and status from the changes of `alarm_changes` (for clients)."""
    repeats = np.diff(np.append(np.asarray(rows, np.int64), samples))
    return np.repeat(severity, repeats), np.repeat(status, repeats)


def out_value(recorder: PVRecorder, columns: dict[str, np.ndarray], history: list[Value]) -> Value:
    """The OUT value: `history` (from HistoryElements), and all samples as columns (a structure
    array costs ~50x more per sample to build and send)."""
    kind = recorder.kind or DEFAULT_KIND
    if not len(columns.get("time_ns", ())):
        # every field set (to empty): post() keeps fields a value leaves unmarked
        empty = {"history": [], "value": [], "time_ns": [], "alarm_row": [], "alarm_severity": [],
                 "alarm_status": [], "length": []}
        return Value(out_type(kind), {**empty, "width": kind.width or 0, "choices": recorder.choices,
                                      "units": recorder.units, "kind": kind.kind})
    values = columns["value"]
    rows, severity, status = alarm_changes(columns)
    return Value(out_type(kind), {
        "history": history,
        "value": values.reshape(-1) if kind.kind == "waveform" else values,
        "time_ns": columns["time_ns"],
        "alarm_row": rows,
        "alarm_severity": severity,
        "alarm_status": status,
        "length": columns.get("length", np.zeros(0, np.int32)),
        "width": kind.width or 0,
        "choices": recorder.choices,
        "units": recorder.units,
        "kind": kind.kind,
    })


@lru_cache(maxsize=None)
def rows_nt(kind: PVKind) -> NTTable:
    """OUT:<pv>:ROWS:<first>: the TABLE's columns from row `first` on, with each row's number."""
    return NTTable([("row", "l")] + _table_columns(kind), extra=TABLE_EXTRA)


def _table_columns(kind: PVKind) -> list[tuple[str, str]]:
    columns = [("time", "d"), ("time_ns", "l")]
    if kind.kind != "waveform":  # NTTable columns are 1-D: waveforms stay in OUT:<pv>
        columns.append(("value", kind.code))
    return columns + [("severity", "i"), ("status", "i")]


def epics_seconds(time_ns: np.ndarray) -> np.ndarray:
    """Times as float seconds the way EPICS clients make them of a timeStamp (p4p, ophyd-async:
    ``secondsPastEpoch + nanoseconds * 1e-9``), so a time read here equals, to the bit, the
    one a client reading the source itself got (``time_ns * 1e-9`` differs in the last bit)."""
    seconds, nanoseconds = np.divmod(time_ns, 1_000_000_000)
    return seconds + nanoseconds * 1e-9


def table_rows(kind: PVKind, columns: dict[str, np.ndarray]) -> dict[str, Any]:
    """Columns for an NTTable (as NTTable.wrap takes them: one dict of arrays)."""
    if not len(columns.get("time_ns", ())):
        return {}
    rows = {
        "time": epics_seconds(columns["time_ns"]),
        "time_ns": columns["time_ns"],
        "severity": columns["severity"].astype(np.int32),
        "status": columns["status"].astype(np.int32),
    }
    if kind.kind != "waveform":
        rows["value"] = columns["value"]
    return rows


def table_value(recorder: PVRecorder, columns: dict[str, np.ndarray], first_row: int | None = None,
                **kws: Any) -> Value:
    """OUT:<pv>:TABLE of `columns`; with `first_row`, OUT:<pv>:ROWS (a ``row`` column numbering
    them from `first_row`)."""
    kind = recorder.kind or DEFAULT_KIND
    nt = table_nt(kind) if first_row is None else rows_nt(kind)
    value = nt.wrap([], **kws)
    value["display.units"] = recorder.units
    value["display.description"] = f"{recorder.name} as recorded"
    rows = table_rows(kind, columns)
    if first_row is not None and rows:
        rows["row"] = np.arange(first_row, first_row + len(columns["time_ns"]), dtype=np.int64)
    for name, column in rows.items():
        value[f"value.{name}"] = column
    for label in nt.labels:  # mark empty columns too, so an emptied table shows empty
        if not value.changed(f"value.{label}"):
            value[f"value.{label}"] = []
    return value


def status_value(recorder: PVRecorder) -> Value:
    last = recorder.events[-1] if recorder.events else None
    return Value(STATUS_TYPE, {
        "pv": recorder.name,
        "connected": recorder.connected,
        "stale": recorder.stale,
        "kind": recorder.kind.kind if recorder.kind else "",
        "samples": recorder.buffer.count if recorder.buffer else 0,
        "memory_bytes": recorder.nbytes,
        **recorder.counters,
        "last_event": f"{last.kind} {last.message}".strip() if last else "",
    })


def select(columns: dict[str, np.ndarray], kind: PVKind, start: float, end: float, max_points: int) -> dict[str, np.ndarray]:
    """The samples with start <= time <= end (0: open end); above `max_points`, min/max
    decimation: per bucket the smallest and the largest value, in time order (as the Archiver
    Appliance's mean/min/max operators, keeping extremes visible), plus every gap marker."""
    if not len(columns.get("time_ns", ())):
        return columns
    times = columns["time_ns"]
    mask = np.ones(len(times), dtype=bool)
    if start:
        mask &= times >= round(start * 1e9)
    if end:
        mask &= times <= round(end * 1e9)
    index = np.flatnonzero(mask)
    if max_points and len(index) > max_points:
        if kind.numeric and max_points >= 2:
            buckets = np.array_split(index, max_points // 2)
            values = columns["value"]
            gap = is_gap(columns)
            keep = set()
            for bucket in buckets:
                keep.update(bucket[gap[bucket]].tolist())  # gap markers always stay visible
                data = bucket[~gap[bucket]]
                if len(data):
                    keep.add(int(data[np.argmin(values[data])]))
                    keep.add(int(data[np.argmax(values[data])]))
            index = np.array(sorted(keep), dtype=np.int64)
        else:
            index = index[np.linspace(0, len(index) - 1, max_points).astype(np.int64)]
    return {name: column[index] for name, column in columns.items()}
