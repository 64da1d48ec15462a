"""plot_recording and ``emd plot``: PNGs of a real collector's recording (live and from its
exports), one panel per unit, lines broken where the IOC was gone; bad input gives one line and
exit code 1."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from emd_collector import CollectorClient, plot_recording, read_recording
from emd_collector.demo import CIRCLE_DB
from epics_meta_devices.testing import IocProcess, run_emd as emd, wait_until

matplotlib.use("Agg")
PNG = b"\x89PNG\r\n\x1a\n"
UNITS_DB = """
record(ai, "$(P)temp") { field(EGU, "degC") }
record(ai, "$(P)pos") { field(EGU, "mm") }
record(ai, "$(P)pos2") { field(EGU, "mm") }
record(stringout, "$(P)label") { }
"""


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 10_000, (path, len(data))


def assert_one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 1, result
    assert result.stderr.strip() == f"Error: {text}" or (
        result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ") and text in result.stderr), result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def units(monkeypatch, prefix, ctxt, run_device, tmp_path):
    """A collector that recorded two mm PVs, a degC PV and a string, and stopped."""
    names = {short: f"{prefix}:{short}" for short in ("temp", "pos", "pos2", "label")}
    with IocProcess(UNITS_DB, {"P": f"{prefix}:"}, wait_for=names["temp"]):
        monkeypatch.setenv("EMD_DATA_ROOT", str(tmp_path))  # the host's data root: data_dir is relative to it
        run_device("collect.Collector", f"{prefix}:coll",
                   config={"input_pvs": list(names.values()), "publish_period": 0.1})
        client = CollectorClient(f"{prefix}:coll")
        client.start()
        wait_until(lambda: client.status()["connected"] == 4, 10, "IOC records connected")
        for value in (1.0, 2.5, 2.0):
            for short in ("temp", "pos", "pos2"):
                ctxt.put(names[short], value * (1 + len(short)))
        ctxt.put(names["label"], "sample A")
        wait_until(lambda: client.status()["stored"] == 4 + 3 * 3 + 1, 10, "every put recorded")
        client.stop()
        yield client, names, tmp_path
        client.disconnect()


def test_one_panel_per_unit_live_and_from_files(units, tmp_path):
    client, names, data_dir = units
    figure = plot_recording(client, tmp_path / "live.png")
    assert_png(tmp_path / "live.png")
    panels = {ax.get_ylabel(): sorted(line.get_label() for line in ax.get_lines()) for ax in figure.axes}
    assert panels == {"degC": [names["temp"]], "mm": sorted([names["pos"], names["pos2"]])}  # no string line
    temp = figure.axes[0].get_lines()[0]
    assert temp.get_ydata().tolist()[1:] == [5.0, 12.5, 10.0]
    assert np.asarray(temp.get_xdata()).dtype == np.dtype("datetime64[ns]")
    for export in ("run.npz", "run.h5"):
        written = Path(client.export(export))
        plot_recording(written, tmp_path / f"{export}.png", pvs=[names["pos"]])
        assert_png(tmp_path / f"{export}.png")
    with pytest.raises(ValueError, match=rf"nothing to plot: no numeric PVs among {names['label']} \(string\)"):
        plot_recording(client, tmp_path / "nothing.png", pvs=[names["label"]])


def test_lines_break_where_the_ioc_was_gone(monkeypatch, prefix, run_device, tmp_path):
    angle = f"{prefix}:circle:angle"
    with IocProcess(CIRCLE_DB, {"P": f"{prefix}:"}, wait_for=angle) as ioc:
        monkeypatch.setenv("EMD_DATA_ROOT", str(tmp_path))  # the host's data root: data_dir is relative to it
        run_device("collect.Collector", f"{prefix}:coll",
                   config={"input_pvs": [angle], "publish_period": 0.1})
        client = CollectorClient(f"{prefix}:coll")
        client.start()
        wait_until(lambda: client.status(angle)["stored"] >= 5, 10, "recording")
        ioc.stop()
        wait_until(lambda: not client.status(angle)["connected"], 10, "disconnect noticed")
        before = client.status(angle)["stored"]
        ioc.start()
        wait_until(lambda: client.status(angle)["stored"] >= before + 5, 20, "recording resumed")
        client.stop()
        stored = client.status(angle)["stored"]
        for export in ("gap.npz", "gap.h5"):
            figure = plot_recording(client.export(export), tmp_path / f"{export}.png")
            assert_png(tmp_path / f"{export}.png")
            line = figure.axes[0].get_lines()[0]
            values, times = line.get_ydata(), np.asarray(line.get_xdata()).astype(np.int64)
            gaps = np.flatnonzero(np.isnan(values)).tolist()
            assert len(gaps) == 1, export  # one break
            assert len(values) == stored + 1  # every sample, and the break
            # Between the samples before the restart and those after. (A record not processed yet
            # since the restart can send an old timestamp first: it sorts before the break.)
            recorded = read_recording(tmp_path / export).pvs[angle].columns["time_ns"]
            last_before = recorded[:before].max()
            after = recorded[before + 1:]  # row `before` is the gap marker itself
            first_after = after[after > last_before].min()
            assert last_before < times[gaps[0]] < first_after
        # the frame has the gap marker: one NaN row, INVALID
        frame = client.to_pandas(angle)
        assert list(frame["severity"][frame["value"].isna()]) == [3]
        client.disconnect()


def test_emd_plot_command(units, tmp_path):
    client, names, data_dir = units
    result = emd("plot", client.prefix, "-o", str(tmp_path / "cli.png"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"plotted 3 PVs to {tmp_path / 'cli.png'}"
    assert_png(tmp_path / "cli.png")
    npz = client.export("cli.npz")
    result = emd("plot", npz, names["temp"], "-o", str(tmp_path / "file.png"))
    assert result.returncode == 0 and result.stdout.strip() == f"plotted 1 PV to {tmp_path / 'file.png'}", result
    assert_png(tmp_path / "file.png")

    assert_one_line_error(emd("plot", npz, "nope", "-o", str(tmp_path / "x.png")), "'nope' not in the recording")
    assert_one_line_error(emd("plot", npz, "-o", str(tmp_path / "x.xyz")), "cannot write x.xyz: Format 'xyz' is not supported")
    assert_one_line_error(emd("plot", str(tmp_path / "missing.npz"), "-o", str(tmp_path / "x.png")),
                          f"no such file: {tmp_path / 'missing.npz'}")
    assert_one_line_error(emd("plot", npz, "--start", "noon", "-o", str(tmp_path / "x.png")),
                          "start 'noon' is not an ISO 8601 time")
    assert_one_line_error(emd("plot", npz, names["label"], "-o", str(tmp_path / "x.png")), "nothing to plot")
    assert_one_line_error(emd("plot", client.prefix, "nope", "-t", "1", "-o", str(tmp_path / "x.png")),
                          f"{client.prefix} does not record 'nope'")
    assert_one_line_error(emd("plot", "no:such:collector", "-t", "1", "-o", str(tmp_path / "x.png")),
                          "no:such:collector:CONFIG did not answer within 1.0 s")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.xyz").exists()


def test_emd_plot_without_matplotlib(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "matplotlib.py").write_text("raise ImportError('matplotlib is blocked for this test')\n")
    path = os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])
    result = emd("plot", "any.npz", "-o", str(tmp_path / "x.png"), env={"PYTHONPATH": path})
    assert_one_line_error(result, "emd plot needs matplotlib: pip install 'emd-collector[plot]'")
