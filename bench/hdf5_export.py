"""Hdf5Exporter (emd-hdf5) against plain h5py writing the same arrays.

A Recording of scalar double PVs is built here from NumPy arrays (no EPICS): per PV a float64
value, int64 time_ns, int16 severity and int16 status column, as the collector stores them.
``Hdf5Exporter.export`` writes it as a NeXus file; the baseline writes, with h5py alone, the
four datasets that carry the data (time, value, alarm_severity, alarm_status), one group per
PV, with the same chunk shapes (rows computed as ``Hdf5Exporter._chunk_rows`` does for the same
chunk_bytes) and the same compression and shuffle filters. The ratio is what the exporter adds
to the bare writes: its NeXus metadata, cues and statistics, and the atomic write (temporary
file, rename).

Once per compression, untimed, both files are written and compared dataset by dataset (shape,
dtype, chunks, filters, data), so the baseline is known to write the same thing; then the two
sides are timed alternately. Every file goes to a temporary directory removed at the end.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from emd_collector import RecordedPV, Recording
from emd_collector._recorder import COUNTERS, Event
from emd_hdf5 import Hdf5Exporter

from ._common import Result

TARGET = 1.25
"""Hdf5Exporter.export at most 1.25 times the plain h5py writes (medians)."""
COMPRESSIONS = ("gzip", "lzf", "none")
LEVEL = 4
"""gzip level: the exporter's default."""
CHUNK_BYTES = 1 << 20
"""The exporter's default chunk_bytes."""
DATASETS = ("time", "value", "alarm_severity", "alarm_status")
"""The datasets of every PV's group that both sides write."""
START = 1_767_225_600
"""2026-01-01T00:00:00Z: the second of every PV's first sample."""


@dataclass(frozen=True)
class Settings:
    """How much the HDF5 export benchmark does."""

    pvs: int
    samples: int
    """Per PV."""
    runs: int
    """Timed exports per side and compression."""

    def __str__(self) -> str:
        return (f"hdf5 export: {self.pvs} PVs x {self.samples:,} samples, {self.runs} "
                f"run{'s' if self.runs > 1 else ''} per side and compression")


FULL = Settings(10, 1_000_000, 5)
QUICK = Settings(10, 100_000, 1)


def recording(pvs: int, samples: int) -> Recording:
    """`pvs` scalar double PVs of `samples` samples each, at about 1 kHz: a noisy sine rounded
    to 1e-4 (an ADC-like value), timestamps with jitter, now and then a MINOR HIGH alarm."""
    rng = np.random.default_rng(1)
    steps = np.arange(samples, dtype=np.int64)
    recorded = {}
    for n in range(pvs):
        name = f"BENCH:HDF5:pv{n}"
        times = START * 1_000_000_000 + steps * 1_000_000 + rng.integers(0, 1000, samples)
        alarm = (np.sin(steps / (5000.0 + 100 * n)) > 0.95).astype(np.int16)
        columns = {
            "value": np.round(np.sin(steps / 1000.0 + n) * 10 + rng.normal(0, 0.01, samples), 4),
            "time_ns": times,
            "severity": alarm,  # MINOR
            "status": alarm * np.int16(3),  # HIGH
        }
        counters = dict.fromkeys(COUNTERS, 0) | {"received": samples, "stored": samples}
        events = [Event(float(START), "connected", "")]
        recorded[name] = RecordedPV(name, "scalar", "d", columns, units="V", counters=counters,
                                    events=events)
    identity = {"prefix": "BENCH:COLL", "type": "collect.Collector", "uuid": "bench",
                "host": "bench", "pid": 0, "versions": {}}
    return Recording(identity, {"input_pvs": list(recorded)}, recorded, [],
                     START + samples / 1000.0)


def chunk_rows(data: np.ndarray, chunk_bytes: int) -> int:
    """Rows per chunk for `data`, computed as Hdf5Exporter._chunk_rows does."""
    row_bytes = max(1, data.itemsize * int(np.prod(data.shape[1:], dtype=np.int64)))
    return max(1, min(len(data) or 1, chunk_bytes // row_bytes))


def write_plain(recorded: Recording, path: Path, compression: str) -> None:
    """The baseline: the data datasets of every PV with h5py alone, same chunks and filters."""
    filters: dict[str, Any] = {} if compression == "none" else {
        "compression": compression, "shuffle": True,
        "compression_opts": LEVEL if compression == "gzip" else None}
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        for n, pv in enumerate(recorded.pvs.values()):
            group = entry.create_group(f"pv{n}")
            columns = pv.columns
            arrays = {
                "time": columns["time_ns"],
                "value": columns["value"],
                "alarm_severity": columns["severity"],
                "alarm_status": columns["status"],
            }
            for name, data in arrays.items():
                group.create_dataset(name, data=data, chunks=(chunk_rows(data, CHUNK_BYTES),),
                                     **filters)


def write_emd(recorded: Recording, path: Path, compression: str) -> None:
    """The exporter with the same settings (chunk_bytes, gzip level: its defaults, given)."""
    options: dict[str, Any] = {"compression": compression, "chunk_bytes": CHUNK_BYTES}
    if compression == "gzip":
        options["compression_level"] = LEVEL
    Hdf5Exporter().export(recorded, path, options)


def same_datasets(recorded: Recording, emd_path: Path, plain_path: Path) -> None:
    """Check that both files hold the same data datasets, chunked and filtered alike."""
    with h5py.File(emd_path, "r") as emd, h5py.File(plain_path, "r") as plain:
        for n, pv in enumerate(recorded.pvs.values()):
            group = next(g for g in emd["entry"].values()
                         if isinstance(g, h5py.Group) and g.attrs.get("pv_name") == pv.name)
            for name in DATASETS:
                a, b = group[name], plain[f"entry/pv{n}/{name}"]
                layout = [(d.shape, d.dtype, d.chunks, d.compression, d.compression_opts,
                           d.shuffle) for d in (a, b)]
                if layout[0] != layout[1]:
                    raise AssertionError(f"{pv.name} {name}: exporter {layout[0]}, "
                                         f"plain {layout[1]}")
                if not np.array_equal(a[()], b[()]):
                    raise AssertionError(f"{pv.name} {name}: the data differ")


def timed(write: Any, recorded: Recording, path: Path, compression: str) -> float:
    """Seconds one write of the whole file takes (the file is removed after)."""
    started = time.perf_counter()
    write(recorded, path, compression)
    seconds = time.perf_counter() - started
    path.unlink()
    return seconds


def run(settings: Settings) -> list[Result]:
    """Every compression: the exporter against the plain writes, `settings.runs` each,
    alternating which goes first."""
    began = time.perf_counter()
    recorded = recording(settings.pvs, settings.samples)
    data_mb = sum(a.nbytes for pv in recorded.pvs.values() for a in pv.columns.values()) / 1e6
    print(f"  recording built: {settings.pvs} PVs x {settings.samples:,} samples, {data_mb:.0f} "
          f"MB of columns ({time.perf_counter() - began:.1f} s)")
    label = f"{settings.samples / 1e6:g}M" if settings.samples >= 1e6 \
        else f"{settings.samples / 1e3:g}k"
    results = []
    with tempfile.TemporaryDirectory(prefix="emd-bench-hdf5-") as directory:
        emd_path, plain_path = Path(directory) / "emd.h5", Path(directory) / "plain.h5"
        for compression in COMPRESSIONS:
            write_emd(recorded, emd_path, compression)  # untimed: a warm-up, and the check
            write_plain(recorded, plain_path, compression)
            same_datasets(recorded, emd_path, plain_path)
            sizes = emd_path.stat().st_size / 1e6, plain_path.stat().st_size / 1e6
            emd_path.unlink()
            plain_path.unlink()
            emd_times: list[float] = []
            plain_times: list[float] = []
            for i in range(settings.runs):
                sides = [(write_emd, emd_path, emd_times), (write_plain, plain_path, plain_times)]
                for write, path, times in sides if i % 2 == 0 else reversed(sides):
                    times.append(timed(write, recorded, path, compression))
            filters = {"gzip": f"gzip {LEVEL} + shuffle", "lzf": "lzf + shuffle",
                       "none": "no compression"}[compression]
            print(f"  {filters}: exporter {statistics.median(emd_times):.3f} s ({sizes[0]:.1f} "
                  f"MB), plain h5py {statistics.median(plain_times):.3f} s ({sizes[1]:.1f} MB)")
            results.append(Result(
                f"HDF5 export, {filters}, {settings.pvs} PVs x {label} samples", emd_times,
                plain_times, "plain h5py, same datasets, chunks and filters", target=TARGET,
                unit="s"))
    return results
