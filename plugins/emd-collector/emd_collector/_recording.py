"""Recording: a consistent snapshot of what a collector recorded, handed to exporters; and the
built-in NumPy ``.npz`` exporter (the HDF5 exporter comes with the emd-hdf5 plugin)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._recorder import Event


@dataclass
class RecordedPV:
    """One input PV: its columns (oldest first: value, time_ns, severity, status, and length
    for waveforms), kind, counters and connection events."""

    name: str
    kind: str
    code: str
    columns: dict[str, np.ndarray]
    choices: list[str] = field(default_factory=list)
    units: str = ""
    counters: dict[str, int] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return len(self.columns.get("time_ns", ()))


@dataclass
class Annotation:
    """Non-EPICS data kept with a recording."""

    time: float
    key: str
    value: str


@dataclass
class Recording:
    """What an exporter gets: the data and who recorded it, how."""

    identity: dict[str, Any]  # prefix, type, uuid, host, pid, versions
    config: dict[str, Any]
    pvs: dict[str, RecordedPV]
    annotations: list[Annotation]
    exported_at: float

    @property
    def samples(self) -> int:
        return sum(pv.samples for pv in self.pvs.values())


def write_atomically(path: Path, write: Any) -> None:
    """Call ``write(temporary_path)`` and rename the result to `path`, so a reader never sees a
    half-written file and a failure leaves nothing behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    # The writer creates the file anew: truncating an existing one (h5py's "w" does) makes ext4
    # flush all of it to disk on close (auto_da_alloc), which doubled the time of an export.
    os.unlink(temporary)
    try:
        write(Path(temporary))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # as any new file, not mkstemp's private 0600
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class NpzExporter:
    """NumPy ``.npz``: ``<pv>/<column>`` arrays, ``<pv>/events``, ``annotations`` and a
    ``meta`` JSON string (identity, config, per-PV kind, choices, units and counters)."""

    name = "npz"
    suffixes = [".npz"]

    def export(self, recording: Recording, path: Path, options: Mapping[str, Any]) -> None:
        """Options: ``compress`` (default true)."""
        unknown = set(options) - {"compress"}
        if unknown:
            raise ValueError(f"npz export takes the option compress, not {', '.join(sorted(unknown))}")
        save = np.savez_compressed if options.get("compress", True) else np.savez
        arrays: dict[str, Any] = {}
        meta: dict[str, Any] = {"identity": recording.identity, "config": recording.config,
                                "exported_at": recording.exported_at, "pvs": {}}
        for pv in recording.pvs.values():
            for column, values in pv.columns.items():
                arrays[f"{pv.name}/{column}"] = values.astype(str) if values.dtype == object else values
            arrays[f"{pv.name}/events"] = np.array([(e.time, e.kind, e.message) for e in pv.events],
                                                   dtype=[("time", "f8"), ("kind", "U32"), ("message", "U200")])
            meta["pvs"][pv.name] = {"kind": pv.kind, "code": pv.code, "choices": pv.choices,
                                    "units": pv.units, "counters": pv.counters}
        arrays["annotations"] = np.array([(a.time, a.key, a.value) for a in recording.annotations],
                                         dtype=[("time", "f8"), ("key", "U200"), ("value", "U2000")])
        arrays["meta"] = np.array(json.dumps(meta, default=str))

        def write(temporary: Path) -> None:
            with open(temporary, "wb") as out:  # a file object: savez adds no suffix to it
                save(out, **arrays)

        write_atomically(path, write)


def load_npz(path: Path) -> dict[str, Any]:
    """Read an exported .npz back: {'meta': dict, 'arrays': {name: array}} (for users and tests)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    return {"meta": json.loads(str(arrays.pop("meta"))), "arrays": arrays}


__all__ = ["Annotation", "NpzExporter", "RecordedPV", "Recording", "load_npz", "write_atomically"]
