"""The HDF5 export's default plot (NXdata linked into each numeric PV's NXlog, the NeXus
``default`` chain) and load_hdf5, which reads exports and spools back into a Recording."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from emd_collector import CollectorClient, to_pandas
from emd_hdf5 import load_hdf5
from epics_meta_devices.testing import SourcePVs, wait_until

SENT = {"double": [1.5, -2.5], "float": [0.25, 4.0], "int32": [-7, 9], "int64": [2**40, 3], "uint8": [255, 1],
        "bool": [True, False], "string": ["a", "wörld"], "waveform": [np.arange(4.0), np.array([7.0])],
        "enum": [2, 1]}


@pytest.fixture
def recorded(monkeypatch, prefix, run_device, tmp_path):
    """A collector (own process) that recorded three updates of every kind of source (the
    value at connection and two posts), with a spool file, then stopped."""
    sources = SourcePVs(prefix)
    try:
        names = [sources.name(kind) for kind in SourcePVs.KINDS]
        monkeypatch.setenv("EMD_DATA_ROOT", str(tmp_path))  # the host's data root: data_dir is relative to it
        run_device("collect.Collector", f"{prefix}:coll",
                   config={"input_pvs": names, "publish_period": 0.1,
                           "spool_file": "spool.h5", "spool_interval": 0.1})
        client = CollectorClient(f"{prefix}:coll")
        client.start()
        wait_until(lambda: client.status()["connected"] == len(names), 10, "sources connected")
        for kind, values in SENT.items():
            for value in values:
                sources.post(kind, value)
        wait_until(lambda: client.status()["stored"] == 3 * len(names), 10, "everything stored")
        client.stop()
        yield client, sources, tmp_path
        client.disconnect()
    finally:
        sources.stop()


def test_default_plot_chain_and_one_nxdata_per_numeric_pv(recorded):
    client, sources, _ = recorded
    with h5py.File(client.to_hdf("run.h5"), "r") as f:
        entry = f[f.attrs["default"]]
        assert entry.attrs["NX_class"] == "NXentry"
        default = entry[entry.attrs["default"]]
        assert default.attrs["NX_class"] == "NXdata" and default.attrs["pv_name"] == sources.name("double")
        plots = {g.attrs["pv_name"]: g for g in entry.values()
                 if isinstance(g, h5py.Group) and g.attrs.get("NX_class") == "NXdata"}
        numeric = {"double", "float", "int32", "int64", "uint8", "waveform", "enum"}  # no strings, no bools
        assert set(plots) == {sources.name(kind) for kind in numeric}
        logs = {g.attrs["pv_name"]: g for g in entry.values()
                if isinstance(g, h5py.Group) and g.attrs.get("NX_class") == "NXlog"}
        for name, plot in plots.items():
            assert plot.attrs["signal"] == "value" and plot.attrs["time_indices"] == 0
            assert plot["value"] == logs[name]["value"] and plot["time"] == logs[name]["time"]  # links, not copies
            assert plot["title"].asstr()[()] == name
        assert list(plots[sources.name("double")].attrs["axes"]) == ["time"]
        assert list(plots[sources.name("waveform")].attrs["axes"]) == ["time", "."]


def test_nexus_reader_finds_the_default_plot(recorded):
    from nexusformat.nexus import nxload

    client, sources, _ = recorded
    root = nxload(client.to_hdf("run.nxs"), "r")
    data = root.plottable_data
    assert data.nxclass == "NXdata" and data.attrs["pv_name"] == sources.name("double")
    assert data.nxsignal.nxname == "value" and [axis.nxname for axis in data.nxaxes] == ["time"]
    assert data.nxsignal.nxvalue.tolist() == [0.0, *SENT["double"]]


def test_load_hdf5_reads_exports_and_spools_back(recorded):
    client, sources, data_dir = recorded
    run = load_hdf5(client.to_hdf("run.h5"))
    assert run.identity["prefix"] == client.prefix and run.config["spool_file"] == "spool.h5"
    spool = load_hdf5(data_dir / "spool.h5")  # written while recording, by another writer
    for kind in SourcePVs.KINDS:
        name = sources.name(kind)
        data = client.data(name)
        for recording in (run, spool):
            pv = recording.pvs[name]
            assert pv.kind == ("scalar" if kind not in ("string", "waveform", "enum") else kind)
            for column in ("value", "time_ns", "severity", "status"):
                assert np.array_equal(pv.columns[column], data[column]), (kind, column)
        assert [e.kind for e in run.pvs[name].events] == ["connected", "disconnected"]
        assert run.pvs[name].counters["stored"] == 3
    assert run.pvs[sources.name("enum")].choices == ["off", "on", "auto"]
    assert run.pvs[sources.name("waveform")].columns["length"].tolist() == [4, 4, 1]
    frame = to_pandas(data_dir / "run.h5", sources.name("enum"))
    assert frame["value"].tolist() == ["off", "auto", "on"]  # categories of the choices


def test_load_hdf5_refuses_other_files(tmp_path):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = [1, 2]
    with pytest.raises(ValueError, match="plain.h5 is not a recording emd-hdf5 wrote"):
        load_hdf5(plain)
    text = tmp_path / "text.h5"
    text.write_text("no HDF5 here")
    with pytest.raises(ValueError, match="text.h5 is not an HDF5 file"):
        load_hdf5(text)
