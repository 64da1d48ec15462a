"""Recordings as pandas and xarray objects: a real collector recording a real IOC (units from
its EGU fields) and p4p sources with chosen timestamps; the live collector, its .npz export and
its HDF5 export must give the same frames."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import epics_meta_devices as emd
from emd_collector import CollectorClient, read_recording, to_pandas, to_xarray
from epics_meta_devices.testing import IocProcess, wait_until

UNITS_DB = """
record(ai, "$(P)temp") { field(EGU, "degC") field(PREC, "2") }
record(ai, "$(P)pos") { field(EGU, "mm") }
record(longout, "$(P)count") { }
"""
PUT = {"temp": [20.5, 21.25, 22.0], "pos": [1.0, -3.5], "count": [7, 8, 9, 10]}
UNITS = {"temp": "degC", "pos": "mm", "count": ""}


@pytest.fixture
def recorded(monkeypatch, prefix, ctxt, run_device, tmp_path):
    """A collector (own process) that recorded an IOC's ai/longout records, then exported them
    to .npz and .h5: (client, PV names by short name, npz path, h5 path, first and last put
    time)."""
    names = {short: f"{prefix}:{short}" for short in PUT}
    with IocProcess(UNITS_DB, {"P": f"{prefix}:"}, wait_for=names["temp"]):
        monkeypatch.setenv("EMD_DATA_ROOT", str(tmp_path))  # the host's data root: data_dir is relative to it
        run_device("collect.Collector", f"{prefix}:coll",
                   config={"input_pvs": list(names.values()), "publish_period": 0.1})
        client = CollectorClient(f"{prefix}:coll")
        client.start()
        wait_until(lambda: client.status()["connected"] == len(names), 10, "IOC records connected")
        first = time.time()
        for short, values in PUT.items():
            for value in values:
                ctxt.put(names[short], value)
        last = time.time()
        wait_until(lambda: all(client.status(name)["stored"] == len(PUT[short]) + 1 for short, name in names.items()),
                   10, "every put recorded (after the value at connection)")
        client.stop()
        npz, h5 = Path(client.export("run.npz")), Path(client.to_hdf("run.h5"))
        yield client, names, npz, h5, first, last
        client.disconnect()


def test_live_npz_and_hdf5_give_the_same_frames_with_units(recorded):
    client, names, npz, h5, first, last = recorded
    live = client.to_pandas()
    assert list(live) == list(names.values())
    for short, name in names.items():
        frame = live[name]
        assert list(frame.columns) == ["value", "severity", "status"]
        assert frame["value"].tolist()[1:] == PUT[short]  # after the value at connection
        assert str(frame.index.dtype) == "datetime64[ns, UTC]" and frame.index.name == "time"
        data = client.data(name)
        assert (frame.index.asi8 == data["time_ns"]).all()
        put_times = frame.index.asi8[1:]
        assert first * 1e9 - 1e8 <= put_times.min() and put_times.max() <= last * 1e9 + 1e8  # the IOC's stamps
        assert frame.attrs == {"pv": name, "kind": "scalar", "units": UNITS[short]}
        for path in (npz, h5):
            exported = to_pandas(path)[name]
            pd.testing.assert_frame_equal(exported, frame, check_dtype=True)
            assert exported.attrs == frame.attrs
    one = client.to_pandas(names["temp"])  # one name: the DataFrame itself
    assert isinstance(one, pd.DataFrame) and one.attrs["units"] == "degC"


def test_xarray_dataset_has_units_and_utc_times(recorded):
    client, names, npz, h5, *_ = recorded
    ds = client.to_xarray()
    assert isinstance(ds, xr.Dataset) and set(ds.data_vars) == set(names.values())
    temp = ds[names["temp"]]
    assert temp.dims == (f"time:{names['temp']}",)
    assert temp.attrs["units"] == "degC" and temp.attrs["pv_name"] == names["temp"]
    assert "units" not in ds[names["count"]].attrs
    times = temp[f"time:{names['temp']}"]
    assert times.dtype == np.dtype("datetime64[ns]")
    assert (times.values.astype(np.int64) == client.data(names["temp"])["time_ns"]).all()
    assert temp.values[1:].tolist() == PUT["temp"]
    assert ds.attrs["prefix"] == client.prefix
    for path in (npz, h5):
        exported = to_xarray(path)
        for name in names.values():
            xr.testing.assert_identical(exported[name], ds[name])


def test_time_range_on_data_and_frames(recorded):
    client, names, npz, *_ = recorded
    name = names["count"]
    stamps = client.data(name)["time_ns"]
    start = stamps[2]
    middle = client.data(name, start=np.datetime64(int(start), "ns"))
    assert middle["time_ns"].tolist() == stamps[2:].tolist() and middle["value"].tolist() == [8, 9, 10]
    assert client.data(name, end=float(stamps[1]) * 1e-9 + 1e-6)["value"].tolist()[-1] == 7
    iso = pd.Timestamp(int(start), unit="ns", tz="UTC").isoformat()
    for source in (client, npz):
        frame = to_pandas(source, name, start=iso, end=int(stamps[3]) * 1e-9 + 1e-6)
        assert frame["value"].tolist() == [8, 9]
    with pytest.raises(ValueError, match="start 'yesterday' is not an ISO 8601 time"):
        client.data(name, start="yesterday")


def test_alignment_asof_and_nearest(monkeypatch, prefix, sources, run_device, tmp_path):
    a, b = sources.name("double"), sources.name("int32")
    monkeypatch.setenv("EMD_DATA_ROOT", str(tmp_path))  # the host's data root: data_dir is relative to it
    run_device("collect.Collector", f"{prefix}:coll",
               config={"input_pvs": [a, b], "publish_period": 0.1})
    client = CollectorClient(f"{prefix}:coll")
    client.start()
    wait_until(lambda: client.status()["connected"] == 2, 10, "sources connected")
    t0 = 1_800_000_000.0
    for offset, value in ((0.0, 1.0), (1.0, 2.0), (2.0, 3.0)):
        sources.post("double", value, timestamp=t0 + offset)
    for offset, value in ((0.4, 10), (1.7, 20)):
        sources.post("int32", value, timestamp=t0 + offset)
    wait_until(lambda: client.status()["stored"] == 7, 10, "all posts (and both initial values) stored")
    client.stop()
    npz = client.export("align.npz")
    for source in (client, npz):
        asof = to_pandas(source, start=t0 - 1, align="asof")  # start: leave out the unstamped initial values
        expected = np.array([round((t0 + s) * 1e9) for s in (0, 0.4, 1, 1.7, 2)])
        assert np.abs(asof.index.asi8 - expected).max() < 1000  # p4p stamps a float: ns rounding
        assert asof[a].tolist() == [1.0, 1.0, 2.0, 2.0, 3.0]
        assert asof[b].fillna(-1).tolist() == [-1, 10, 10, 20, 20]
        assert asof.attrs["units"] == {a: "", b: ""}
        limited = to_pandas(source, start=t0 - 1, align="asof", tolerance=0.5)
        assert limited[b].fillna(-1).tolist() == [-1, 10, -1, 20, 20]
        nearest = to_pandas(source, start=t0 - 1, align="nearest", on=a)
        assert str(nearest.index.dtype) == "datetime64[ns, UTC]"
        assert nearest[a].tolist() == [1.0, 2.0, 3.0]
        assert nearest[b].tolist() == [10, 10, 20]  # at t0+1: 0.6 s to 10, 0.7 s to 20
        near = to_pandas(source, start=t0 - 1, align="nearest", on=a, tolerance=0.5)
        assert near[b].fillna(-1).tolist() == [10, -1, 20]
        ds = to_xarray(source, start=t0 - 1, align="nearest", on=a, tolerance=0.5)
        assert ds[b].dims == ("time",) and np.isnan(ds[b].values[1]) and ds[b].values[2] == 20
    client.disconnect()


def test_bad_requests_say_what_is_wrong(recorded):
    client, names, npz, *_ = recorded
    with pytest.raises(ValueError, match=r"'nope' not in the recording \(recorded: "):
        to_pandas(npz, ["nope"])
    with pytest.raises(ValueError, match="align must be one of asof, nearest, not 'linear'"):
        client.to_pandas(align="linear")
    with pytest.raises(ValueError, match="tolerance and on apply to aligned frames only"):
        to_pandas(npz, tolerance=1.0)
    with pytest.raises(ValueError, match="on='x' is not one of the PVs asked for"):
        to_pandas(npz, align="asof", on="x")
    with pytest.raises(ValueError, match="tolerance must not be negative"):
        to_pandas(npz, align="asof", tolerance=-1)
    with pytest.raises(emd.DeviceError, match="does not record 'nope'"):
        CollectorClient(client.prefix, timeout=1.0).data("nope")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_recording(npz.parent / "missing.npz")
    text = npz.parent / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="emd reads .npz and .h5, .hdf5, .nxs files"):
        read_recording(text)
    fake = npz.parent / "fake.npz"
    fake.write_text("not a zip")
    with pytest.raises(ValueError, match="fake.npz is not an emd .npz export"):
        read_recording(fake)


@pytest.mark.parametrize("package, call", [("pandas", "to_pandas"), ("xarray", "to_xarray")])
def test_missing_optional_package_names_the_extra(recorded, tmp_path, package, call):
    """The package made unimportable: a module of its name that raises ImportError, first on
    the path."""
    npz = recorded[2]
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / f"{package}.py").write_text(f"raise ImportError('{package} is blocked for this test')\n")
    script = (f"import emd_collector\n"
              f"try:\n    emd_collector.{call}({str(npz)!r})\n"
              f"except ImportError as exc:\n    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{call} needs {package}: pip install 'emd-collector[{package}]'"
