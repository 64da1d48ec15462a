"""Hdf5Exporter: a collector Recording as a NeXus file.

    /entry                        NXentry   start_time, end_time
      collector                   NXcollection  identity attributes, config (JSON)
      annotations                 NXcollection  time (s), key, value
      <pv>                        NXlog     one per recorded PV (name made HDF5-safe, pv_name attribute)
        time                      int64 ns since the epoch (start="1970-01-01T00:00:00Z", units="ns")
        value                     the samples (2-D for waveforms; units where the source has them)
        length                    waveforms: valid elements per row
        alarm_severity, alarm_status
        cue_index, cue_timestamp_zero   every chunk's first sample, for seeking
        minimum_value, maximum_value, average_value   numeric PVs
        events                    NXcollection  connection events: time (ns), kind, message
      <pv>_plot                   NXdata    per PV with numbers to plot: value (signal) and time (axis),
                                  hard links into the NXlog; the entry's ``default`` names the first
                                  numeric scalar's, so NeXus viewers show a plot without configuration
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np
from h5py import h5a, h5d, h5s, h5t

from emd_collector import RecordedPV, Recording
from emd_collector._recording import write_atomically

COMPRESSIONS = ("gzip", "lzf", "none")
EPOCH = "1970-01-01T00:00:00Z"
DEFAULT_CHUNK_BYTES = 1 << 20  # about 1 MiB per chunk: large writes, cheap partial reads
STRING = h5py.string_dtype()


TIME_ATTRS = {"start": EPOCH, "units": "ns"}
"""Attributes of every time dataset: int64 nanoseconds since the epoch."""


def filters(settings: Mapping[str, Any], dtype: Any) -> dict[str, Any]:
    """create_dataset's compression keywords for checked `settings` (shuffle helps numbers,
    not strings)."""
    compression = None if settings["compression"] == "none" else settings["compression"]
    return {"compression": compression,
            "compression_opts": settings["level"] if compression == "gzip" else None,
            "shuffle": compression is not None and dtype != STRING}


def new_log(entry: h5py.Group, pv: RecordedPV, name: str) -> h5py.Group:
    """The NXlog group of one PV, with the attributes that say which PV and of what kind."""
    log = entry.create_group(name)
    add_attributes(log, {"NX_class": "NXlog", "pv_name": pv.name, "kind": pv.kind, "type_code": pv.code})
    if pv.choices:
        add_attributes(log, {"choices": np.array(pv.choices, dtype=STRING)})
    return log


def small_dataset(group: h5py.Group, name: str, data: Any) -> h5py.Dataset:
    """A small, unchunked dataset holding `data` (a scalar, a string or a short array).

    h5py's ``create_dataset`` spends about 100 us in Python on each new dataset, three times
    what HDF5 needs; a file has a dozen of these per PV (cues, statistics, events), so they are
    made with the low-level API instead. Strings are stored as variable-length UTF-8, as h5py
    stores them."""
    array = _as_array(data)
    dataset = h5d.create(group.id, name.encode(), h5t.py_create(array.dtype, logical=True), _space(array))
    if array.size:
        dataset.write(h5s.ALL, h5s.ALL, array)
    return h5py.Dataset(dataset)


def add_attributes(obj: h5py.HLObject, attributes: Mapping[str, Any]) -> None:
    """Add attributes to a new object (none of these names may exist yet), as h5py would store
    them. h5py's ``attrs`` first looks for an attribute of the same name to replace and converts
    types in Python, about half again HDF5's own cost; a file has some twenty per PV."""
    for name, value in attributes.items():
        array = _as_array(value)
        attribute = h5a.create(obj.id, name.encode(), h5t.py_create(array.dtype, logical=True), _space(array))
        if array.size:
            attribute.write(array, mtype=h5t.py_create(array.dtype))


def _as_array(data: Any) -> np.ndarray:
    """`data` as an array h5py can write; text as variable-length UTF-8 strings."""
    array = np.array(data, dtype=STRING) if isinstance(data, str) else np.asarray(data)
    return array.astype(STRING) if array.dtype.kind in "OU" else array


def _space(array: np.ndarray) -> h5s.SpaceID:
    return h5s.create(h5s.SCALAR) if array.ndim == 0 else h5s.create_simple(array.shape)


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat()


class Hdf5Exporter:
    """NeXus/HDF5. Options: ``compression`` (gzip, lzf or none; default gzip),
    ``compression_level`` (gzip 0-9, default 4), ``chunk_bytes`` (default 1 MiB)."""

    name = "hdf5"
    suffixes = [".h5", ".hdf5", ".nxs"]

    def export(self, recording: Recording, path: Path, options: Mapping[str, Any]) -> None:
        settings = self.settings(options)
        write_atomically(path, lambda temporary: self._write(recording, temporary, path.name, settings))

    def open_spool(self, path: Path, options: Mapping[str, Any]) -> Any:
        """A file at `path` that grows while a collector records (an `Hdf5Spool`, SWMR). Options
        as for `export`; by default no compression and 16 KiB chunks, cheap for the recording
        process: every append rewrites each dataset's last, partly filled chunk (compressed
        chunks are decompressed and compressed again for that)."""
        from ._spool import Hdf5Spool  # it builds on this module

        return Hdf5Spool(path, self.settings({"compression": "none", "chunk_bytes": 1 << 14, **options}))

    @staticmethod
    def settings(options: Mapping[str, Any]) -> dict[str, Any]:
        """Checked options; ValueError says what is wrong."""
        unknown = set(options) - {"compression", "compression_level", "chunk_bytes"}
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))} "
                             "(options: compression, compression_level, chunk_bytes)")
        compression = options.get("compression", "gzip")
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, not {compression!r}")
        level = options.get("compression_level", 4)
        if not (isinstance(level, int) and 0 <= level <= 9):
            raise ValueError(f"compression_level must be an integer 0-9, not {level!r}")
        chunk_bytes = options.get("chunk_bytes", DEFAULT_CHUNK_BYTES)
        if not (isinstance(chunk_bytes, int) and 4096 <= chunk_bytes <= 1 << 28):
            raise ValueError(f"chunk_bytes must be an integer from 4096 to 268435456, not {chunk_bytes!r}")
        return {"compression": compression, "level": level, "chunk_bytes": chunk_bytes}

    def _write(self, recording: Recording, path: Path, file_name: str, settings: dict[str, Any]) -> None:
        with h5py.File(path, "w") as f:
            add_attributes(f, {"default": "entry", "creator": f"emd-hdf5 {_version('emd-hdf5')}",
                               "file_name": file_name, "file_time": _iso(recording.exported_at),
                               "HDF5_Version": h5py.version.hdf5_version, "h5py_version": h5py.__version__})
            entry = f.create_group("entry")
            add_attributes(entry, {"NX_class": "NXentry"})
            starts = [pv.columns["time_ns"][0] for pv in recording.pvs.values() if pv.samples]
            small_dataset(entry, "start_time", _iso(min(starts) / 1e9) if starts
                          else _iso(recording.exported_at))
            small_dataset(entry, "end_time", _iso(recording.exported_at))
            self._identity(entry, recording)
            self._annotations(entry, recording)
            used: set[str] = set()
            # The next PV's statistics are computed in a second thread while this one writes:
            # NumPy does that without the GIL, and HDF5 (not thread-safe) is only used from here.
            pvs = list(recording.pvs.values())
            names = [_unique_name(pv.name, used) for pv in pvs]
            with ThreadPoolExecutor(1, thread_name_prefix="emd-hdf5-export") as pool:
                upcoming = pool.submit(_statistics, pvs[0]) if pvs else None
                for i, pv in enumerate(pvs):
                    statistics = upcoming.result()
                    upcoming = pool.submit(_statistics, pvs[i + 1]) if i + 1 < len(pvs) else None
                    self._log(entry, pv, names[i], settings, statistics)
            add_plots(entry, [(pv, entry[name]) for pv, name in zip(pvs, names)], used)

    @staticmethod
    def _identity(entry: h5py.Group, recording: Recording) -> None:
        collector = entry.create_group("collector")
        add_attributes(collector, {"NX_class": "NXcollection"} | {
            key: json.dumps(value) if isinstance(value, dict) else value for key, value in recording.identity.items()})
        small_dataset(collector, "config", json.dumps(recording.config))

    @staticmethod
    def _annotations(entry: h5py.Group, recording: Recording) -> None:
        notes = entry.create_group("annotations")
        add_attributes(notes, {"NX_class": "NXcollection"})
        time = small_dataset(notes, "time", np.array([a.time for a in recording.annotations], dtype=np.float64))
        add_attributes(time, {"units": "s"})
        small_dataset(notes, "key", np.array([a.key for a in recording.annotations], dtype=STRING))
        small_dataset(notes, "value", np.array([a.value for a in recording.annotations], dtype=STRING))

    def _log(self, entry: h5py.Group, pv: RecordedPV, name: str, settings: dict[str, Any],
             statistics: dict[str, Any]) -> None:
        log = new_log(entry, pv, name)
        add_attributes(log, pv.counters)
        columns = pv.columns
        n = pv.samples
        nanoseconds = columns.get("time_ns", np.zeros(0, np.int64))
        if n:
            values = columns["value"]
        else:
            values = np.zeros((0,) if pv.kind != "waveform" else (0, 0), dtype=np.float64 if pv.code != "s" else STRING)
        if values.dtype == object:
            values = values.astype(STRING)
        time = self._dataset(log, "time", nanoseconds, settings)
        add_attributes(time, TIME_ATTRS)
        value = self._dataset(log, "value", values, settings)
        if pv.units:
            add_attributes(value, {"units": pv.units})
        if "length" in columns:
            self._dataset(log, "length", columns["length"], settings)
        self._dataset(log, "alarm_severity", columns.get("severity", np.zeros(0, np.int16)), settings)
        self._dataset(log, "alarm_status", columns.get("status", np.zeros(0, np.int16)), settings)
        rows = self._chunk_rows(values, settings)
        cues = np.arange(0, n, rows, dtype=np.int64)
        small_dataset(log, "cue_index", cues)
        add_attributes(small_dataset(log, "cue_timestamp_zero", nanoseconds[cues]), TIME_ATTRS)
        for name, value in statistics.items():
            small_dataset(log, name, value)
        events = log.create_group("events")
        add_attributes(events, {"NX_class": "NXcollection"})
        add_attributes(small_dataset(events, "time", np.array([int(e.time * 1e9) for e in pv.events], dtype=np.int64)),
                       TIME_ATTRS)
        small_dataset(events, "kind", np.array([e.kind for e in pv.events], dtype=STRING))
        small_dataset(events, "message", np.array([e.message for e in pv.events], dtype=STRING))

    @staticmethod
    def _chunk_rows(values: np.ndarray, settings: dict[str, Any]) -> int:
        row_bytes = max(1, values.itemsize * int(np.prod(values.shape[1:], dtype=np.int64)))
        return max(1, min(len(values) or 1, settings["chunk_bytes"] // row_bytes))

    def _dataset(self, group: h5py.Group, name: str, data: np.ndarray, settings: dict[str, Any]) -> h5py.Dataset:
        """One write of the whole column, chunked and compressed: no per-sample writes."""
        if not len(data):
            return small_dataset(group, name, data)
        rows = self._chunk_rows(data, settings)
        chunks = (rows, *data.shape[1:])
        if writes_whole_chunks(data.dtype, filtered=settings["compression"] != "none"):
            dataset = group.create_dataset(name, shape=data.shape, dtype=data.dtype, chunks=chunks)
            _write_chunks(dataset, data, rows)
            return dataset
        return group.create_dataset(name, data=data, chunks=chunks, **filters(settings, data.dtype))


def plottable(pv: RecordedPV) -> bool:
    """Whether a NeXus viewer can plot the PV's values against time: numbers (scalars, enum
    indices, numeric waveforms), with at least one sample."""
    return pv.samples > 0 and pv.code not in ("s", "?") and pv.kind in ("scalar", "enum", "waveform")


def add_plots(entry: h5py.Group, logs: list[tuple[RecordedPV, h5py.Group]], used: set[str]) -> None:
    """One NXdata per plottable PV, ``<log>_plot``, whose ``value`` (the signal) and ``time``
    (the axis) are hard links to the NXlog's datasets (no copies), and the entry's NeXus
    ``default`` naming the first numeric scalar's (else the first one's): NXroot -> NXentry ->
    NXdata, so a viewer shows a plot without being told where. One group per PV, because
    NXdata's auxiliary signals must share the axes and each PV has timestamps of its own."""
    plots = []
    for pv, log in logs:
        if not plottable(pv):
            continue
        name = _unique_name(f"{log.name.rsplit('/', 1)[-1]}_plot", used)
        data = entry.create_group(name)
        data["value"] = log["value"]
        data["time"] = log["time"]
        axes = ["time"] if log["value"].ndim == 1 else ["time", "."]
        add_attributes(data, {"NX_class": "NXdata", "signal": "value", "axes": axes, "time_indices": 0,
                              "pv_name": pv.name})
        small_dataset(data, "title", pv.name)
        plots.append((pv.kind == "scalar", name))
    if plots:
        scalars = [name for scalar, name in plots if scalar]
        add_attributes(entry, {"default": scalars[0] if scalars else plots[0][1]})


def writes_whole_chunks(dtype: np.dtype, filtered: bool) -> bool:
    """Whether a column is handed to HDF5 a whole chunk at a time (H5Dwrite_chunk): numbers in
    the machine's byte order without filters, whose chunks are stored as they are in memory
    (bools are HDF5 enums, strings variable-length: both need HDF5's conversion)."""
    return not filtered and dtype.kind in "iuf" and dtype.isnative


def _write_chunks(dataset: h5py.Dataset, data: np.ndarray, rows: int) -> None:
    """Write uncompressed numbers chunk by chunk, straight into the file (H5Dwrite_chunk).

    A whole-array write of a chunked dataset goes through HDF5's chunk cache and selection code,
    about 20 % slower than handing it each chunk as it is; the last chunk is padded to the full
    chunk shape, as HDF5 would store it."""
    data = np.ascontiguousarray(data)
    full = len(data) // rows * rows
    for start in range(0, full, rows):
        dataset.id.write_direct_chunk((start, *[0] * (data.ndim - 1)), data[start:start + rows])
    if full < len(data):
        last = np.zeros((rows, *data.shape[1:]), data.dtype)
        last[:len(data) - full] = data[full:]
        dataset.id.write_direct_chunk((full, *[0] * (data.ndim - 1)), last)


def _statistics(pv: RecordedPV) -> dict[str, Any]:
    """NXlog's minimum_value, maximum_value and average_value: numeric scalars only."""
    values = pv.columns.get("value")
    if not pv.samples or values is None or pv.kind != "scalar" or pv.code in ("s", "?"):
        return {}
    return {"minimum_value": values.min(), "maximum_value": values.max(),
            "average_value": values.mean(dtype=np.float64)}


def _unique_name(pv: str, used: set[str]) -> str:
    """An HDF5/NeXus-friendly group name for a PV name (``a:b.VAL`` -> ``a_b_VAL``)."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", pv) or "pv"
    name, n = base, 1
    while name in used or name in ("collector", "annotations", "start_time", "end_time"):
        n += 1
        name = f"{base}_{n}"
    used.add(name)
    return name


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""
