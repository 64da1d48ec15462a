"""Where recordings come from for frames and plots: an exported file (``.npz``, or an emd HDF5
file through emd-hdf5) read back into a `Recording`, or a live collector (its `recording()`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import numpy as np

from ._recorder import Event
from ._recording import Annotation, RecordedPV, Recording, load_npz

HDF5_SUFFIXES = (".h5", ".hdf5", ".nxs")

Source = Union[Recording, str, Path, Any]
"""A Recording, the path of an exported file, or a CollectorClient."""


def read_recording(path: str | Path) -> Recording:
    """An exported recording read back: ``.npz`` here, ``.h5``/``.hdf5``/``.nxs`` (files emd-hdf5
    wrote, exports or spools) with emd-hdf5. Raises ValueError for other suffixes and
    FileNotFoundError for a missing file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix == ".npz":
        return npz_recording(path)
    if path.suffix in HDF5_SUFFIXES:
        try:
            from emd_hdf5 import load_hdf5
        except ImportError:
            raise ImportError(f"reading {path.name} needs emd-hdf5: pip install emd-hdf5") from None
        return load_hdf5(path)
    raise ValueError(f"cannot read {path.name}: emd reads .npz and {', '.join(HDF5_SUFFIXES)} files")


def npz_recording(path: Path) -> Recording:
    """A `.npz` export (see NpzExporter) as a Recording."""
    try:
        loaded = load_npz(path)
    except (OSError, ValueError, KeyError) as exc:  # not a zip, or not one emd wrote
        raise ValueError(f"{path.name} is not an emd .npz export: {exc}") from None
    meta, arrays = loaded["meta"], loaded["arrays"]
    pvs = {}
    for name, info in meta.get("pvs", {}).items():
        columns = {column: arrays[f"{name}/{column}"] for column in ("value", "time_ns", "severity", "status", "length")
                   if f"{name}/{column}" in arrays}
        events = [Event(float(e["time"]), str(e["kind"]), str(e["message"]))
                  for e in arrays.get(f"{name}/events", np.zeros(0, dtype=[("time", "f8"), ("kind", "U1"),
                                                                           ("message", "U1")]))]
        pvs[name] = RecordedPV(name, info.get("kind", "scalar"), info.get("code", "d"), columns,
                               list(info.get("choices", [])), info.get("units", ""),
                               dict(info.get("counters", {})), events)
    notes = arrays.get("annotations")
    annotations = [Annotation(float(a["time"]), str(a["key"]), str(a["value"])) for a in notes] \
        if notes is not None else []
    return Recording(meta.get("identity", {}), meta.get("config", {}), pvs, annotations,
                     float(meta.get("exported_at", 0.0)))


def recording_of(source: Source, pvs: Any = None, start: Any = None, end: Any = None) -> Recording:
    """The Recording behind `source`: itself, a file read back, or a live collector's data
    (only the PVs and time range asked for are transferred)."""
    if isinstance(source, Recording):
        return source
    if isinstance(source, (str, Path)):
        return read_recording(source)
    if hasattr(source, "recording"):
        return source.recording(pvs, start, end)
    raise TypeError(f"expected a Recording, a file path or a CollectorClient, not {type(source).__name__}")


def describe(recording: Recording) -> str:
    """A short name of where a recording comes from (for titles)."""
    identity = recording.identity
    return str(identity.get("prefix") or identity.get("file") or "recording")


__all__ = ["HDF5_SUFFIXES", "Source", "describe", "npz_recording", "read_recording", "recording_of"]
