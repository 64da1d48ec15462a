"""NeXus/HDF5 export of a real recording: every dtype round-trips, the layout reads in h5py and
nexusformat, compression is selectable, bad options and paths are refused cleanly."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

import epics_meta_devices as emd
from emd_collector import CollectorClient, RecordedPV, Recording
from emd_hdf5 import Hdf5Exporter
from epics_meta_devices.testing import SourcePVs, wait_until


@pytest.fixture
def recorded(monkeypatch, prefix, run_device, tmp_path):
    """A collector (own process) that recorded three updates of every kind of source."""
    sources = SourcePVs(prefix)
    try:
        names = [sources.name(kind) for kind in SourcePVs.KINDS]
        monkeypatch.setenv("EMD_DATA_ROOT", str(tmp_path))  # the host's data root: data_dir is relative to it
        run_device("collect.Collector", f"{prefix}:coll",
                   config={"input_pvs": names, "publish_period": 0.1})
        client = CollectorClient(f"{prefix}:coll")
        client.start()
        wait_until(lambda: client.status()["connected"] == len(names), 10, "sources connected")
        sent = {"double": [1.5, -2.5], "float": [0.25, 4.0], "int32": [-7, 9], "int64": [2**40, 3],
                "uint8": [255, 1], "bool": [True, False], "string": ["a", "wörld"],
                "waveform": [np.arange(4.0), np.array([7.0])], "enum": [2, 1]}
        for kind, values in sent.items():
            for value in values:
                sources.post(kind, value)
        wait_until(lambda: client.status()["stored"] == 3 * len(names), 10, "everything stored")
        client.annotate("sample", "Pt(111)")
        client.stop()
        yield client, sources, tmp_path
    finally:
        sources.stop()


def logs_by_pv(f: h5py.File) -> dict[str, h5py.Group]:
    return {g.attrs["pv_name"]: g for g in f["entry"].values()
            if isinstance(g, h5py.Group) and g.attrs.get("NX_class") == "NXlog"}


def test_every_dtype_round_trips(recorded):
    client, sources, data_dir = recorded
    written = client.to_hdf("runs/run1.h5")
    assert written == str(data_dir / "runs" / "run1.h5")
    with h5py.File(written, "r") as f:
        assert f.attrs["default"] == "entry" and f["entry"].attrs["NX_class"] == "NXentry"
        assert f.attrs["file_name"] == "run1.h5"
        logs = logs_by_pv(f)
        assert set(logs) == {sources.name(kind) for kind in SourcePVs.KINDS}
        for kind in SourcePVs.KINDS:
            name = sources.name(kind)
            data, log = client.data(name), logs[name]
            stored = log["value"][()]
            if kind == "string":
                assert [v.decode() for v in stored] == list(data["value"])
            else:
                assert np.array_equal(stored, data["value"]) and stored.dtype == data["value"].dtype, kind
            assert np.array_equal(log["time"][()], data["time_ns"])
            assert log["time"].attrs["units"] == "ns" and log["time"].attrs["start"] == "1970-01-01T00:00:00Z"
            assert np.array_equal(log["alarm_severity"][()], data["severity"])
            assert log.attrs["stored"] == 3 and [k.decode() for k in log["events"]["kind"][()]] == ["connected", "disconnected"]
        assert list(logs[sources.name("waveform")]["length"][()]) == [4, 4, 1]
        assert list(logs[sources.name("enum")].attrs["choices"]) == ["off", "on", "auto"]
        double = logs[sources.name("double")]
        assert (double["minimum_value"][()], double["maximum_value"][()]) == (-2.5, 1.5)
        assert [k.decode() for k in f["entry/annotations/key"][()]] == ["sample"]
        assert f["entry/collector"].attrs["prefix"] == client.prefix
    assert [p.name for p in (data_dir / "runs").iterdir()] == ["run1.h5"]  # no temporary left


def test_nexus_reader_opens_the_file(recorded):
    from nexusformat.nexus import nxload

    client, sources, _ = recorded
    root = nxload(client.to_hdf("run.nxs"), "r")
    assert root.entry.nxclass == "NXentry"
    logs = [group for group in root.entry.values() if group.nxclass == "NXlog"]
    assert len(logs) == len(SourcePVs.KINDS)
    assert all("time" in log and "value" in log for log in logs)


@pytest.mark.parametrize("compression, filter_name", [("gzip", "gzip"), ("lzf", "lzf"), ("none", None)])
def test_compression_is_selectable(recorded, compression, filter_name):
    client, sources, _ = recorded
    written = client.to_hdf(f"c-{compression}.h5", compression=compression)
    with h5py.File(written, "r") as f:
        value = logs_by_pv(f)[sources.name("double")]["value"]
        assert value.compression == filter_name and value.chunks is not None


@pytest.mark.parametrize(
    "options, reason",
    [
        ({"compression": "zstd"}, "compression must be one of gzip, lzf, none, not 'zstd'"),
        ({"compression_level": 12}, "compression_level must be an integer 0-9"),
        ({"chunk_bytes": 10}, "chunk_bytes must be an integer from 4096"),
        ({"colour": "red"}, "unknown option(s) colour"),
    ],
)
def test_bad_options_are_refused_and_write_nothing(recorded, options, reason):
    client, _, data_dir = recorded
    with pytest.raises(emd.DeviceError, match="hdf5 export: ") as refused:
        client.to_hdf("bad.h5", **options)
    assert reason in str(refused.value)
    assert not list(data_dir.rglob("*.h5")) and not list(data_dir.rglob("*.part"))
    assert client.status()["stored"] > 0  # the recording is still there


def test_unwritable_directory_is_a_clear_error(recorded):
    client, _, data_dir = recorded
    (data_dir / "locked").mkdir(mode=0o500)
    try:
        if subprocess.run(["touch", str(data_dir / "locked" / "x")], capture_output=True).returncode == 0:
            pytest.skip("running as a user who can write anywhere (root): permissions cannot refuse")
        with pytest.raises(emd.DeviceError, match="cannot write"):
            client.to_hdf("locked/run.h5")
    finally:
        (data_dir / "locked").chmod(0o700)


def test_emd_export_command(recorded):
    client, _, data_dir = recorded
    result = subprocess.run(
        [sys.executable, "-m", "epics_meta_devices", "export", client.prefix, "cli.h5", "-o", "compression=lzf"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"exported {client.prefix} to {data_dir / 'cli.h5'}"
    with h5py.File(data_dir / "cli.h5", "r") as f:
        assert all(log["value"].compression == "lzf" for log in logs_by_pv(f).values() if log["value"].size)
    bad = subprocess.run([sys.executable, "-m", "epics_meta_devices", "export", client.prefix, "../out.h5"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "must be relative to the data directory" in bad.stderr
    assert "Traceback" not in bad.stderr


def synthetic_recording(rows: int) -> Recording:
    """A recording built from arrays, `rows` samples per PV: many chunks at small chunk_bytes."""
    n = np.arange(rows)
    base = {"time_ns": 1_767_225_600_000_000_000 + n * 100_000_000,
            "severity": (n % 3).astype(np.int16), "status": (n % 5).astype(np.int16)}
    columns = {
        "double": ("scalar", "d", {"value": n * 0.5 - 7.25}),
        "int16": ("scalar", "h", {"value": (n % 30000 - 15000).astype(np.int16)}),
        "uint8": ("scalar", "B", {"value": (n % 256).astype(np.uint8)}),
        "bool": ("scalar", "?", {"value": n % 2 == 0}),
        "string": ("scalar", "s", {"value": np.array([f"s{i}" for i in n], dtype=object)}),
        "waveform": ("waveform", "d", {"value": np.outer(n, np.arange(7.0)),
                                       "length": np.full(rows, 7, np.int32)}),
    }
    pvs = {name: RecordedPV(name, kind, code, {**base, **extra}) for name, (kind, code, extra) in columns.items()}
    return Recording({"prefix": "T", "uuid": "t"}, {"input_pvs": list(pvs)}, pvs, [], 1_767_230_000.0)


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_every_row_of_many_chunks_is_written(tmp_path, compression):
    """Columns that span many chunks, with a partly filled last one, read back exactly."""
    recording = synthetic_recording(5000)
    path = tmp_path / "many.h5"
    Hdf5Exporter().export(recording, path, {"compression": compression, "chunk_bytes": 4096})
    with h5py.File(path, "r") as f:
        logs = logs_by_pv(f)
        for name, pv in recording.pvs.items():
            log = logs[name]
            assert log["value"].chunks[0] < 5000  # several chunks, the last one partly filled
            expected = pv.columns["value"].astype(str) if pv.code == "s" else pv.columns["value"]
            stored = log["value"].asstr()[()] if pv.code == "s" else log["value"][()]
            assert np.array_equal(stored, expected), name
            assert np.array_equal(log["time"][()], pv.columns["time_ns"])
            assert np.array_equal(log["alarm_status"][()], pv.columns["status"])
            if pv.kind == "scalar" and pv.code not in "s?":
                assert log["maximum_value"][()] == pv.columns["value"].max()
