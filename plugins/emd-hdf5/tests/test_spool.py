"""Continuous spooling (CONFIG spool_file): while a collector records, its samples are appended
to an HDF5 file in SWMR mode that readers can follow, and that survives a crash of the
collector with at most one interval missing."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import epics_meta_devices as emd
from emd_collector import CollectorClient, RecordedPV, Recording
from emd_hdf5 import Hdf5Exporter
from epics_meta_devices.testing import SourcePVs, wait_until

from test_hdf5 import synthetic_recording

KINDS = ("double", "int32", "string", "waveform", "enum")


@pytest.fixture
def sources(prefix):
    served = SourcePVs(prefix)
    yield served
    served.stop()


def spooling_collector(run_device, prefix, sources, tmp_path, **config):
    names = [sources.name(kind) for kind in KINDS]
    run_device("collect.Collector", f"{prefix}:coll", env={"EMD_DATA_ROOT": str(tmp_path)},  # the host's data root
               config={"input_pvs": names, "spool_file": "live.h5",
                       "spool_interval": 0.2, **config})
    client = CollectorClient(f"{prefix}:coll")
    client.start()
    wait_until(lambda: client.status()["stored"] == len(names), 10, "first sample of every PV")
    return client


def spooled_rows(path, pv):
    """Rows of `pv` in the spool file, read as a SWMR reader would (None: not there yet)."""
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            logs = {g.attrs["pv_name"]: g for g in f["entry"].values()
                    if isinstance(g, h5py.Group) and "pv_name" in g.attrs}
            return len(logs[pv]["time"]) if pv in logs else None
    except OSError:  # not in SWMR mode yet: the writer still makes groups
        return None


def test_a_reader_follows_the_recording(prefix, sources, run_device, tmp_path):
    client = spooling_collector(run_device, prefix, sources, tmp_path)
    name = sources.name("double")
    path = tmp_path / "live.h5"
    wait_until(lambda: spooled_rows(path, name) == 1, 10, "the first interval in the file")
    with h5py.File(path, "r", libver="latest", swmr=True) as reader:  # open while recording
        log = next(g for g in reader["entry"].values() if g.attrs.get("pv_name") == name)
        for value in (1.5, 2.5, 3.5):
            sources.post("double", value)

        def follows() -> bool:
            log["value"].refresh()
            return len(log["value"]) == 4

        wait_until(follows, 10, "the reader sees the new samples")
        assert list(log["value"][1:]) == [1.5, 2.5, 3.5]
    sources.post("waveform", np.arange(6.0))  # longer than before: the dataset widens
    sources.post("string", "später")
    sources.post("enum", 2)
    wait_until(lambda: client.status(sources.name("waveform"))["stored"] == 2, 10, "stored")
    client.stop()  # the last rows are written at stop; the file stays open (SWMR) while disabled
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        logs = {g.attrs["pv_name"]: g for g in f["entry"].values() if "pv_name" in g.attrs}
        assert set(logs) == {sources.name(kind) for kind in KINDS}
        for kind in KINDS:
            pv = sources.name(kind)
            data = client.data(pv)
            assert len(logs[pv]["time"]) == len(data["value"]), kind
            assert np.array_equal(logs[pv]["time"][()], data["time_ns"]), kind
        wave = logs[sources.name("waveform")]
        assert wave["value"].shape == (2, 6) and list(wave["length"]) == [4, 6]
        assert list(wave["value"][1]) == list(np.arange(6.0))
        assert [s.decode() for s in logs[sources.name("string")]["value"]] == ["", "später"]
        assert list(logs[sources.name("enum")]["value"]) == [0, 2]
        assert f["entry/collector"].attrs["prefix"] == f"{prefix}:coll"


def test_enabling_again_continues_the_file_without_repeating(prefix, sources, run_device, tmp_path):
    client = spooling_collector(run_device, prefix, sources, tmp_path)
    name = sources.name("int32")
    sources.post("int32", 5)
    wait_until(lambda: client.status(name)["stored"] == 2, 10, "stored")
    client.stop()
    client.start()
    sources.post("int32", 6)
    wait_until(lambda: client.status(name)["stored"] == 3, 10, "stored")
    client.stop()
    client.configure(spool_file="")  # spooling off: the collector lets go of the file
    with h5py.File(tmp_path / "live.h5", "r") as f:  # closed: a plain reader opens it
        log = next(g for g in f["entry"].values() if g.attrs.get("pv_name") == name)
        assert list(log["value"]) == [0, 5, 6]


def test_a_crash_loses_at_most_one_interval(prefix, sources, run_device, tmp_path):
    spooling_collector(run_device, prefix, sources, tmp_path)
    name = sources.name("double")
    for value in range(1, 11):
        sources.post("double", float(value))
    path = tmp_path / "live.h5"
    wait_until(lambda: spooled_rows(path, name) == 11, 10, "ten samples spooled")
    process = run_device.processes[-1].process
    process.kill()  # no chance to close the file
    process.wait(10)
    # The writer never closed the file: it opens as a SWMR reader (h5clear -s clears the flag)
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        log = next(g for g in f["entry"].values() if g.attrs.get("pv_name") == name)
        assert list(log["value"]) == [0.0] + [float(v) for v in range(1, 11)]


@pytest.mark.parametrize("changes, reason", [
    ({"spool_file": "../live.h5"}, "must be relative to the data directory"),
    ({"spool_file": "live.npz"}, "the npz format cannot spool; use a .h5 file"),
    ({"spool_file": "live.h5", "spool_interval": 0}, "spool_interval must be between 0.05 and 3600"),
])
def test_bad_spool_settings_are_refused(monkeypatch, prefix, run_device, tmp_path, changes, reason):
    monkeypatch.setenv("EMD_DATA_ROOT", str(tmp_path))  # the host's data root: data_dir is relative to it
    client = run_device("collect.Collector", f"{prefix}:coll", config={})
    before = client.config
    with pytest.raises(emd.DeviceError, match=reason):
        client.configure(**changes)
    assert client.config == before


def test_a_spool_file_that_cannot_be_opened_refuses_enable(monkeypatch, prefix, sources, run_device, tmp_path):
    (tmp_path / "live.h5").write_text("not an HDF5 file")
    monkeypatch.setenv("EMD_DATA_ROOT", str(tmp_path))  # the host's data root: data_dir is relative to it
    client = run_device("collect.Collector", f"{prefix}:coll",
                        config={"input_pvs": [sources.name("double")],
                                "spool_file": "live.h5"})
    with pytest.raises(emd.DeviceError, match="cannot spool to .*live.h5"):
        client.enable()
    assert client.state is emd.DeviceState.ready


def test_appends_across_chunks_and_a_reopened_file_keep_every_row(tmp_path):
    """Batches of many sizes (some within a chunk, some spanning several), then the file closed,
    opened again and appended to, as a collector does when spooling resumes into it."""
    exporter, path = Hdf5Exporter(), tmp_path / "spool.h5"
    recording = synthetic_recording(4000)
    cuts = [0, 1, 601, 604, 2104, 2111, 2112]  # 4096-byte chunks: 512 int64, 2048 int16 rows
    more = [2112, 3012, 3014, 4000]

    def append(spool, start, stop):
        part = {name: RecordedPV(pv.name, pv.kind, pv.code, {k: v[start:stop] for k, v in pv.columns.items()})
                for name, pv in recording.pvs.items()}
        spool.append(Recording(recording.identity, recording.config, part, [], 0.0))

    spool = exporter.open_spool(path, {"chunk_bytes": 4096})
    for start, stop in zip(cuts, cuts[1:]):
        append(spool, start, stop)
    spool.close()
    spool = exporter.open_spool(path, {"chunk_bytes": 4096})
    for start, stop in zip(more, more[1:]):
        append(spool, start, stop)
    spool.close()
    with h5py.File(path, "r") as f:
        logs = {g.attrs["pv_name"]: g for g in f["entry"].values() if "pv_name" in g.attrs}
        for name, pv in recording.pvs.items():
            log = logs[name]
            stored = log["value"].asstr()[()] if pv.code == "s" else log["value"][()]
            expected = pv.columns["value"].astype(str) if pv.code == "s" else pv.columns["value"]
            assert np.array_equal(stored, expected), name
            assert np.array_equal(log["time"][()], pv.columns["time_ns"]), name
            assert np.array_equal(log["alarm_severity"][()], pv.columns["severity"]), name
