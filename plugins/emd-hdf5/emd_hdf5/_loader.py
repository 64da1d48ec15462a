"""load_hdf5: a file emd-hdf5 wrote (an export, or a spool) read back into a collector
`Recording`, so that frames and plots treat it like a live collector or an .npz export."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import h5py

from emd_collector import RecordedPV, Recording
from emd_collector._recorder import COUNTERS, Event
from emd_collector._recording import Annotation

COLUMNS = {"time": "time_ns", "value": "value", "length": "length", "alarm_severity": "severity",
           "alarm_status": "status"}
"""Datasets of an NXlog and the Recording columns they become."""


def load_hdf5(path: str | Path) -> Recording:
    """Read `path` (an emd HDF5 export or spool; a spool still being written is opened as a
    SWMR reader). Raises ValueError for HDF5 files emd did not write."""
    path = Path(path)
    try:
        f = h5py.File(path, "r", libver="latest", swmr=True)
    except OSError:
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise ValueError(f"{path.name} is not an HDF5 file: {exc}") from None
    with f:
        entry = f.get("entry")
        if not isinstance(entry, h5py.Group) or not isinstance(entry.get("collector"), h5py.Group):
            raise ValueError(f"{path.name} is not a recording emd-hdf5 wrote (no /entry/collector)")
        collector = entry["collector"]
        identity = {key: _text(value) for key, value in collector.attrs.items() if key != "NX_class"}
        identity.setdefault("file", path.name)
        config = json.loads(_text(collector["config"][()])) if "config" in collector else {}
        pvs = {}
        for group in entry.values():
            if isinstance(group, h5py.Group) and _text(group.attrs.get("NX_class", "")) == "NXlog":
                pv = _recorded(group)
                pvs[pv.name] = pv
        annotations = _annotations(entry)
        exported = entry["end_time"].asstr()[()] if "end_time" in entry else ""
    return Recording(identity, config, pvs, annotations, _epoch(exported))


def _recorded(log: h5py.Group) -> RecordedPV:
    columns = {}
    for dataset, column in COLUMNS.items():
        if dataset in log:
            data = log[dataset]
            columns[column] = data.asstr()[()].astype(object) if h5py.check_string_dtype(data.dtype) else data[()]
    events = []
    if isinstance(log.get("events"), h5py.Group):
        found = log["events"]
        events = [Event(t * 1e-9, kind, message) for t, kind, message in
                  zip(found["time"][()].tolist(), found["kind"].asstr()[()], found["message"].asstr()[()])]
    units = _text(log["value"].attrs.get("units", "")) if "value" in log else ""
    choices = [_text(c) for c in log.attrs.get("choices", [])]
    counters = {name: int(log.attrs[name]) for name in COUNTERS if name in log.attrs}
    return RecordedPV(_text(log.attrs["pv_name"]), _text(log.attrs.get("kind", "scalar")),
                      _text(log.attrs.get("type_code", "d")), columns, choices, units, counters, events)


def _annotations(entry: h5py.Group) -> list[Annotation]:
    notes = entry.get("annotations")
    if not isinstance(notes, h5py.Group):
        return []
    return [Annotation(float(t), key, value) for t, key, value in
            zip(notes["time"][()], notes["key"].asstr()[()], notes["value"].asstr()[()])]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _epoch(iso: str) -> float:
    if not iso:
        return 0.0
    return datetime.datetime.fromisoformat(iso).timestamp()


__all__ = ["load_hdf5"]

