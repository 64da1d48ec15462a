"""Recordings as pandas and xarray objects: the one place that turns recorded columns into
DataFrames and Datasets. Every source (a live collector, an ``.npz`` export, an emd HDF5 file)
is first read into a `Recording` (see `_sources`), so all of them give the same frames.

pandas and xarray are optional: they are imported when a frame is asked for, and a missing one
raises an ImportError that names the extra to install."""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import json
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np

from ._recording import RecordedPV, Recording
from ._sources import Source, recording_of

if TYPE_CHECKING:
    import pandas
    import xarray

TimeLike = Union[float, int, str, datetime.datetime, np.datetime64]
"""A moment: seconds since the epoch, an ISO 8601 text or a datetime (naive ones are UTC)."""

DurationLike = Union[float, int, datetime.timedelta, np.timedelta64]
"""A duration: seconds, or a timedelta."""

PVSelection = Optional[Union[str, Sequence[str]]]
"""One PV name, several, or None for every PV of the recording."""

ALIGNMENTS = ("asof", "nearest")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def require(module: str, user: str, extra: str) -> ModuleType:
    """Import an optional package, or say which extra brings it (one clear line)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{user} needs {module}: pip install 'emd-collector[{extra}]'") from None


def time_ns(moment: TimeLike | None, name: str) -> int | None:
    """`moment` in nanoseconds since the epoch (None stays None). Naive datetimes and ISO texts
    without an offset are UTC, as pandas reads them, not the local time."""
    if moment is None:
        return None
    if isinstance(moment, np.datetime64):
        return int(moment.astype("datetime64[ns]").astype(np.int64))
    if isinstance(moment, str):
        try:
            moment = datetime.datetime.fromisoformat(moment)
        except ValueError:
            raise ValueError(f"{name} {moment!r} is not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)") from None
    if isinstance(moment, datetime.datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        nanosecond = getattr(moment, "nanosecond", 0)  # pandas Timestamps carry nanoseconds
        return _timedelta_ns(moment - _EPOCH) + nanosecond
    if isinstance(moment, (int, float, np.integer, np.floating)) and not isinstance(moment, bool):
        return round(float(moment) * 1e9)
    raise ValueError(f"{name} must be seconds since the epoch, a datetime or an ISO 8601 text, "
                     f"not {type(moment).__name__}")


def duration_ns(duration: DurationLike | None, name: str) -> int | None:
    """`duration` in nanoseconds (None stays None); negative durations are refused."""
    if duration is None:
        return None
    if isinstance(duration, np.timedelta64):
        ns = int(duration.astype("timedelta64[ns]").astype(np.int64))
    elif isinstance(duration, datetime.timedelta):
        ns = _timedelta_ns(duration) + getattr(duration, "nanoseconds", 0)
    elif isinstance(duration, (int, float, np.integer, np.floating)) and not isinstance(duration, bool):
        ns = round(float(duration) * 1e9)
    else:
        raise ValueError(f"{name} must be seconds or a timedelta, not {type(duration).__name__}")
    if ns < 0:
        raise ValueError(f"{name} must not be negative, got {duration!r}")
    return ns


def _timedelta_ns(delta: datetime.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def in_range(pv: RecordedPV, start: int | None, end: int | None) -> RecordedPV:
    """`pv` with only the samples of ``start <= time_ns <= end`` (None: open end)."""
    times = pv.columns.get("time_ns")
    if times is None or (start is None and end is None):
        return pv
    keep = np.ones(len(times), dtype=bool)
    if start is not None:
        keep &= times >= start
    if end is not None:
        keep &= times <= end
    return dataclasses.replace(pv, columns={name: column[keep] for name, column in pv.columns.items()})


def select(recording: Recording, pvs: PVSelection = None, start: TimeLike | None = None,
           end: TimeLike | None = None) -> list[RecordedPV]:
    """The PVs asked for (all when `pvs` is None), in that order, within the time range."""
    names = list(recording.pvs) if pvs is None else [pvs] if isinstance(pvs, str) else list(pvs)
    missing = [name for name in names if name not in recording.pvs]
    if missing:
        raise ValueError(f"{', '.join(map(repr, missing))} not in the recording "
                         f"(recorded: {', '.join(recording.pvs) or 'nothing'})")
    first, last = time_ns(start, "start"), time_ns(end, "end")
    return [in_range(recording.pvs[name], first, last) for name in names]


def align_rows(pvs: Sequence[RecordedPV], align: str, tolerance: int | None, on: str | None
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The common time axis (every timestamp of any PV, sorted, or those of the PV `on`) and,
    per PV, the row that gives its value at each of those times (-1: none). ``asof``: the
    PV's latest sample at or before the time (of several at the same time, the last
    recorded); ``nearest``: its closest sample (the earlier one on a tie). A sample farther
    than `tolerance` ns from the time does not count."""
    if align not in ALIGNMENTS:
        raise ValueError(f"align must be one of {', '.join(ALIGNMENTS)}, not {align!r}")
    by_name = {pv.name: pv for pv in pvs}
    if on is not None and on not in by_name:
        raise ValueError(f"on={on!r} is not one of the PVs asked for ({', '.join(by_name)})")
    stamps = {pv.name: pv.columns.get("time_ns", np.zeros(0, np.int64)) for pv in pvs}
    if on is not None:
        axis = np.sort(stamps[on], kind="stable")
    else:
        axis = np.unique(np.concatenate([np.zeros(0, np.int64), *stamps.values()]))
    rows = {}
    for name, times in stamps.items():
        order = np.argsort(times, kind="stable")  # timestamps may go back (time_reversals)
        ordered, n = times[order], len(times)
        if not n:
            rows[name] = np.full(len(axis), -1, np.int64)
            continue
        after = np.searchsorted(ordered, axis, side="right")  # first sample later than the time
        at = np.maximum(after - 1, 0)  # the last sample at or before it (if any)
        found = after > 0
        if align == "nearest":
            later = np.minimum(after, n - 1)
            use_later = ~found | (ordered[later] - axis < axis - ordered[at])
            at = np.where(use_later, later, at)
            found = np.ones(len(axis), dtype=bool)
        if tolerance is not None:
            found &= np.abs(axis - ordered[at]) <= tolerance
        rows[name] = np.where(found, order[at], -1)
    return axis, rows


def _check_alignment(align: str | None, tolerance: DurationLike | None, on: str | None) -> int | None:
    if align is None and (tolerance is not None or on is not None):
        raise ValueError("tolerance and on apply to aligned frames only: give align='asof' or 'nearest'")
    return duration_ns(tolerance, "tolerance")


def utc_index(pandas: ModuleType, nanoseconds: np.ndarray) -> pandas.DatetimeIndex:
    """Timestamps as a ``datetime64[ns, UTC]`` index named ``time``."""
    return pandas.DatetimeIndex(pandas.to_datetime(np.asarray(nanoseconds, np.int64), unit="ns", utc=True),
                                name="time")


def _pandas_values(pandas: ModuleType, pv: RecordedPV) -> Any:
    """The value column as pandas shows it best: enums as categories of their choices,
    waveforms as one array per sample (its valid elements), strings as text."""
    values = pv.columns.get("value", np.zeros(0))
    if pv.kind == "waveform":
        cells = np.empty(len(values), dtype=object)
        cells[:] = [row[:length] for row, length in zip(values, pv.columns["length"])]
        return cells
    if pv.kind == "enum" and pv.choices and len(set(pv.choices)) == len(pv.choices):
        codes = np.where((values >= 0) & (values < len(pv.choices)), values, -1)
        return pandas.Categorical.from_codes(codes, categories=pv.choices)
    if values.dtype.kind == "U":
        return values.astype(object)
    return values


def pv_frame(pv: RecordedPV) -> pandas.DataFrame:
    """One PV's samples: index ``time`` (datetime64[ns, UTC]), columns ``value``, ``severity``,
    ``status`` (and ``length`` for waveforms), in recorded order; ``attrs`` name the PV, its
    kind and units (and choices for enums)."""
    pd = require("pandas", "to_pandas", "pandas")
    columns = pv.columns
    frame = pd.DataFrame({"value": _pandas_values(pd, pv),
                          "severity": columns.get("severity", np.zeros(0, np.int16)),
                          "status": columns.get("status", np.zeros(0, np.int16))},
                         index=utc_index(pd, columns.get("time_ns", np.zeros(0, np.int64))))
    if "length" in columns:
        frame["length"] = columns["length"]
    frame.attrs = {"pv": pv.name, "kind": pv.kind, "units": pv.units}
    if pv.choices:
        frame.attrs["choices"] = list(pv.choices)
    return frame


def to_pandas(source: Source, pvs: PVSelection = None, start: TimeLike | None = None,
              end: TimeLike | None = None, align: str | None = None, tolerance: DurationLike | None = None,
              on: str | None = None) -> Any:
    """The recording of `source` (a Recording, an exported file's path or a CollectorClient)
    as pandas DataFrames. Without `align`: a DataFrame per PV (see `pv_frame`), as a dict by PV name, or the one
    DataFrame when `pvs` is a single name. With `align` (``asof`` or ``nearest``, see
    `align_rows`): one DataFrame, one value column per PV, on a common time index; a PV with
    no sample for a time (within `tolerance`) has NaN there. ``attrs["units"]`` maps PV names
    to units."""
    pd = require("pandas", "to_pandas", "pandas")
    tolerance_ns = _check_alignment(align, tolerance, on)
    recording = recording_of(source, pvs, start, end)
    selected = select(recording, pvs, start, end)
    if align is None:
        frames = {pv.name: pv_frame(pv) for pv in selected}
        return frames[pvs] if isinstance(pvs, str) else frames
    axis, rows = align_rows(selected, align, tolerance_ns, on)
    frame = pd.DataFrame(index=utc_index(pd, axis))
    for pv in selected:
        values, at = pd.Series(_pandas_values(pd, pv)), rows[pv.name]
        if len(values):
            column = values.iloc[np.maximum(at, 0)].reset_index(drop=True).where(pd.Series(at >= 0))
        else:
            column = pd.Series(np.full(len(axis), np.nan))
        frame[pv.name] = column.to_numpy() if not isinstance(column.dtype, pd.CategoricalDtype) else column.array
    frame.attrs = {"units": {pv.name: pv.units for pv in selected}, "align": align}
    return frame


def _xarray_values(pv: RecordedPV, rows: np.ndarray | None) -> np.ndarray:
    """The value column for xarray (at `rows`, -1 for none): waveforms 2-D with NaN past each
    row's length, strings as objects; where a row is missing NaN (numbers become float64) or
    None."""
    values = pv.columns.get("value", np.zeros(0))
    if values.dtype.kind == "U":
        values = values.astype(object)
    if pv.kind == "waveform" and values.dtype.kind in "biuf":
        valid = np.arange(values.shape[1])[None, :] < pv.columns["length"][:, None]
        values = np.where(valid, values.astype(np.float64), np.nan)
    if rows is None:
        return values
    missing = rows < 0
    if len(values):
        taken = values[np.maximum(rows, 0)]
    else:
        taken = np.zeros((len(rows), *values.shape[1:]), values.dtype)
    if not missing.any():
        return taken
    if taken.dtype.kind in "biuf":
        taken = taken.astype(np.float64)
        taken[missing] = np.nan
    else:
        taken = taken.astype(object)
        taken[missing] = None
    return taken


def _attributes(pv: RecordedPV) -> dict[str, Any]:
    attributes: dict[str, Any] = {"pv_name": pv.name, "kind": pv.kind, "long_name": pv.name}
    if pv.units:
        attributes["units"] = pv.units
    if pv.choices:
        attributes["choices"] = list(pv.choices)
    return attributes


def to_xarray(source: Source, pvs: PVSelection = None, start: TimeLike | None = None,
              end: TimeLike | None = None, align: str | None = None, tolerance: DurationLike | None = None,
              on: str | None = None) -> xarray.Dataset:
    """The recording of `source` (as for `to_pandas`) as an xarray Dataset: one variable per PV, named by the PV, with ``units``, ``pv_name`` and
    ``kind`` attributes (``choices`` for enums, whose values are indices). Times are
    ``datetime64[ns]`` in UTC. Without `align` each PV has its own time dimension
    ``time:<pv>``; with it all share ``time`` (as in `to_pandas`). Waveforms have a second
    dimension ``element:<pv>``."""
    xr = require("xarray", "to_xarray", "xarray")
    tolerance_ns = _check_alignment(align, tolerance, on)
    recording = recording_of(source, pvs, start, end)
    selected = select(recording, pvs, start, end)
    variables: dict[str, Any] = {}
    coordinates: dict[str, Any] = {}
    if align is not None:
        axis, rows = align_rows(selected, align, tolerance_ns, on)
        coordinates["time"] = ("time", axis.astype("datetime64[ns]"), {"timezone": "UTC"})
    for pv in selected:
        if align is None:
            dimension = f"time:{pv.name}"
            times = pv.columns.get("time_ns", np.zeros(0, np.int64)).astype("datetime64[ns]")
            coordinates[dimension] = (dimension, times, {"timezone": "UTC"})
            values = _xarray_values(pv, None)
        else:
            dimension = "time"
            values = _xarray_values(pv, rows[pv.name])
        dimensions = (dimension,) if values.ndim == 1 else (dimension, f"element:{pv.name}")
        variables[pv.name] = (dimensions, values, _attributes(pv))
    attributes = {key: json.dumps(value) if isinstance(value, (dict, list)) else value
                  for key, value in recording.identity.items() if value is not None}
    return xr.Dataset(variables, coords=coordinates, attrs=attributes)


__all__ = ["ALIGNMENTS", "DurationLike", "PVSelection", "TimeLike", "align_rows", "duration_ns", "in_range",
           "pv_frame", "require", "select", "time_ns", "to_pandas", "to_xarray", "utc_index"]
