"""Hdf5Spool: a NeXus file that grows while a collector records, readable meanwhile (SWMR).

    /entry                  NXentry
      collector             NXcollection  identity attributes, config (JSON), as in an export
      <pv>                  NXlog  pv_name attribute; time, value, [length], alarm_severity,
                            alarm_status: resizable datasets (uncompressed by
                            default), appended at every interval

HDF5's single-writer/multiple-reader mode lets readers follow the file (open it with
``h5py.File(path, "r", libver="latest", swmr=True)`` and call ``dataset.refresh()``), and what
was flushed survives a crash of the writer. In SWMR mode no new objects can be made, so the
file switches to it once every input PV has its group (types are known from a PV's first
sample), or at the third append at the latest: PVs that had no sample by then are left out of
this file (they stay in the collector and in its exports).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from emd_collector import RecordedPV, Recording
from epics_meta_devices import without_scheme

from ._exporter import STRING, TIME_ATTRS, Hdf5Exporter, add_attributes, _unique_name, filters, new_log, writes_whole_chunks
from ._recover import open_for_append

SWMR_AT_THE_LATEST = 3
"""Appends after which the file goes SWMR even if some input PVs have no group yet."""


class Hdf5Spool:
    """Appends collector samples to `path` (made, or continued if it exists)."""

    def __init__(self, path: Path, settings: Mapping[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.settings = dict(settings)
        self.file = open_for_append(path)  # a file its writer left open (a crash) is recovered
        self.entry = self.file.require_group("entry")
        self.entry.attrs["NX_class"] = "NXentry"
        self.file.attrs["default"] = "entry"
        # PV name -> its log's datasets, looked up once: a group lookup costs more than an append
        self.logs: dict[str, dict[str, _Column]] = {
            group.attrs["pv_name"]: _columns(group) for group in self.entry.values()
            if isinstance(group, h5py.Group) and "pv_name" in group.attrs
        }
        self.used = set(self.entry)
        self.appends = 0

    def append(self, recording: Recording) -> None:
        """Add the rows of `recording` (only the new ones) and flush them to the file."""
        if not self.file.swmr_mode:
            if "collector" not in self.entry:
                Hdf5Exporter._identity(self.entry, recording)
            for pv in recording.pvs.values():
                if pv.name not in self.logs:
                    self.logs[pv.name] = _columns(self._new_log(pv))
            self.appends += 1
            inputs = [without_scheme(name) for name in recording.config.get("input_pvs", [])]
            if all(name in self.logs for name in inputs) or self.appends >= SWMR_AT_THE_LATEST:
                self.file.swmr_mode = True
        # All or nothing: a failure (a full disk) leaves every column as it was, so the
        # collector's next attempt appends the same rows once, aligned in every column.
        sizes = {name: {column: c.rows for column, c in log.items()} for name, log in self.logs.items()}
        try:
            for pv in recording.pvs.values():
                log = self.logs.get(pv.name)
                if log is not None:  # None: first seen after SWMR started, when no group can be made
                    self._extend(log, pv)
            self.file.flush()
        except BaseException:
            for name, columns in sizes.items():
                for column, rows in columns.items():
                    self.logs[name][column].truncate(rows)
            raise

    def close(self) -> None:
        self.file.close()

    def _new_log(self, pv: RecordedPV) -> h5py.Group:
        log = new_log(self.entry, pv, _unique_name(pv.name, self.used))
        values = pv.columns["value"]
        value = self._dataset(log, "value", STRING if values.dtype == object else values.dtype,
                              values.shape[1:])
        if pv.units:
            add_attributes(value, {"units": pv.units})
        add_attributes(self._dataset(log, "time", np.dtype(np.int64)), TIME_ATTRS)
        if "length" in pv.columns:
            self._dataset(log, "length", np.dtype(np.int32))
        self._dataset(log, "alarm_severity", np.dtype(np.int16))
        self._dataset(log, "alarm_status", np.dtype(np.int16))
        return log

    def _dataset(self, log: h5py.Group, name: str, dtype: Any, row: tuple[int, ...] = ()) -> h5py.Dataset:
        """An empty dataset that grows along its first axis (and its second, for waveforms)."""
        itemsize = 16 if dtype == STRING else np.dtype(dtype).itemsize
        width = row[0] if row else 1
        rows = max(1, self.settings["chunk_bytes"] // (itemsize * max(1, width)))
        return log.create_dataset(
            name, shape=(0, *row), maxshape=(None,) * (1 + len(row)), dtype=dtype,
            chunks=(rows, *(max(1, w) for w in row)), **filters(self.settings, dtype))

    @staticmethod
    def _extend(log: dict[str, _Column], pv: RecordedPV) -> None:
        columns = pv.columns
        for name, data in (("time", columns["time_ns"]), ("value", columns["value"]), ("length", columns.get("length")),
                           ("alarm_severity", columns["severity"]), ("alarm_status", columns["status"])):
            if data is not None:
                log[name].append(data)


def _columns(log: h5py.Group) -> dict[str, _Column]:
    return {name: _Column(dataset) for name, dataset in log.items() if isinstance(dataset, h5py.Dataset)}


class _Column:
    """A dataset of the spool that grows along its first axis.

    Uncompressed one-dimensional numbers (every column of a scalar PV, by default) are appended
    chunk by chunk: the column keeps its last, partly filled chunk in memory and hands it whole
    to HDF5 (H5Dwrite_chunk). That is half the cost of HDF5's own partial write (selections,
    chunk cache), and a spool writes a few columns per PV at every interval. Other columns
    (waveforms, strings, compressed) use h5py's writes."""

    def __init__(self, dataset: h5py.Dataset) -> None:
        self.dataset = dataset
        self.rows = dataset.shape[0]
        self.tail: np.ndarray | None = None
        if dataset.ndim == 1 and writes_whole_chunks(dataset.dtype, bool(dataset.compression or dataset.shuffle)):
            self.tail = np.zeros(dataset.chunks[0], dataset.dtype)
            start = self.rows - self.rows % len(self.tail)
            self.tail[: self.rows - start] = dataset[start:self.rows]  # a continued file

    def truncate(self, rows: int) -> None:
        """Go back to `rows` rows (undoing a failed append), keeping the tail chunk in step."""
        if rows == self.dataset.shape[0]:
            self.rows = rows
            return
        self.dataset.id.set_extent((rows, *self.dataset.shape[1:]))
        self.rows = rows
        if self.tail is not None:
            start = rows - rows % len(self.tail)
            self.tail[:] = 0
            self.tail[: rows - start] = self.dataset[start:rows]

    def append(self, data: np.ndarray) -> None:
        """Add `data`'s rows at the end."""
        if self.tail is None:
            _append(self.dataset, data)
            self.rows = self.dataset.shape[0]
            return
        ident, tail, old, n = self.dataset.id, self.tail, self.rows, len(data)
        ident.set_extent((old + n,))
        done = 0
        while done < n:  # fill the tail chunk, write it, start the next one when full
            at = (old + done) % len(tail)
            take = min(n - done, len(tail) - at)
            tail[at:at + take] = data[done:done + take]
            ident.write_direct_chunk((old + done - at,), tail)
            done += take
            if at + take == len(tail):
                tail[:] = 0  # what HDF5 stores past the end of a dataset (its fill value)
        self.rows = old + n


def _append(dataset: h5py.Dataset, data: np.ndarray) -> None:
    """Add `data`'s rows at the end of `dataset` (waveforms may grow wider). Other 1-D columns
    (compressed numbers, booleans) go through h5py's low-level calls: the high-level ones cost
    about three times as much per call, and a spool makes a few calls per PV at every interval."""
    if data.ndim == 1 and data.dtype != object:
        ident = dataset.id
        old, rows = ident.get_space().shape[0], len(data)
        ident.set_extent((old + rows,))
        selection = h5py.h5s.create_simple((old + rows,), (h5py.h5s.UNLIMITED,))
        selection.select_hyperslab((old,), (rows,))
        ident.write(h5py.h5s.create_simple((rows,)), selection,
                    np.ascontiguousarray(data, dtype=dataset.dtype))
        return
    old = dataset.shape[0]
    if data.ndim == 2 and data.shape[1] > dataset.shape[1]:  # a waveform grew longer
        dataset.resize(data.shape[1], axis=1)
    dataset.resize(old + len(data), axis=0)
    if data.ndim == 2:
        dataset[old:, : data.shape[1]] = data
    else:
        dataset[old:] = data
