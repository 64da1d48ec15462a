"""Gaps in the data itself (issue 18): a reader of OUT, TABLE, HISTORY, data() and the exports
sees where a PV's data is missing (a disconnect, a stalled source) without reading the events:
a marker row of severity INVALID and status CLIENT, at the time of the event that says why."""

from __future__ import annotations

import math
import os
import signal

import numpy as np
import pytest
from p4p.client.thread import RemoteError

from emd_collector import CollectorClient, plot_recording, read_recording
from emd_collector._recorder import GAP_SEVERITY, GAP_STATUS
from epics_meta_devices.testing import wait_until

INVALID, CLIENT = 3, 7  # EPICS alarm severity INVALID, Normative Types alarm status CLIENT


def collector(run_device, prefix, data_root, **config) -> CollectorClient:
    base = run_device("collect.Collector", f"{prefix}:coll", config={"publish_period": 0.1, **config},
                      env={"EMD_DATA_ROOT": str(data_root)})
    return CollectorClient(base.prefix)


def gap_rows(columns) -> np.ndarray:
    return np.flatnonzero((np.asarray(columns["severity"]) == INVALID) & (np.asarray(columns["status"]) == CLIENT))


def test_the_marker_is_invalid_client():
    assert (GAP_SEVERITY, GAP_STATUS) == (INVALID, CLIENT)  # what docs/collector.md documents


def test_an_ioc_killed_and_restarted_leaves_one_marker_row_in_every_form(prefix, ioc, run_device, ctxt, tmp_path):
    name = f"{prefix}:circle:angle"
    client = collector(run_device, prefix, tmp_path, input_pvs=[name])
    client.start()
    wait_until(lambda: client.status(name)["stored"] >= 5, 10, "recording")
    ioc.kill_and_restart(lambda: client.status(name))
    client.stop()

    columns = client.data(name)
    rows = gap_rows(columns)
    assert len(rows) == 1, f"one marker row expected, severities {columns['severity']}"
    row = rows[0]
    assert math.isnan(columns["value"][row])
    assert 0 < row < len(columns["value"]) - 1  # between the data before and after the restart
    assert client.status(name)["stored"] == len(columns["value"]) - 1  # a marker is not a stored update
    events = read_recording(client.export("events.npz")).pvs[name].events  # the event says why
    disconnected = [e for e in events if e.kind == "disconnected" and not e.message]
    assert len(disconnected) == 1 and abs(columns["time_ns"][row] * 1e-9 - disconnected[0].time) < 1e-6

    table = ctxt.get(f"{client.prefix}:OUT:{name}:TABLE").value
    assert len(gap_rows(table)) == 1 and math.isnan(table["value"][gap_rows(table)[0]])
    out = ctxt.get(f"{client.prefix}:OUT:{name}")
    marked = [h for h in out.history if h.alarm.severity == INVALID and h.alarm.status == CLIENT]
    assert len(marked) == 1 and math.isnan(marked[0].value)
    assert len(gap_rows(client.history(name))) == 1
    assert len(gap_rows(client.history(name, max_points=4))) == 1  # decimation keeps markers

    # a live collector's plot breaks its line at the marker (no events needed)
    line = plot_recording(client, tmp_path / "live.png").axes[0].lines[0]
    assert np.isnan(np.asarray(line.get_ydata(), dtype=float)).sum() == 1

    for path in ("run.npz", "run.h5"):
        exported = read_recording(client.export(path)).pvs[name].columns
        assert len(gap_rows(exported)) == 1 and math.isnan(exported["value"][gap_rows(exported)[0]]), path


def test_a_frozen_ioc_is_stale_until_it_updates_again(prefix, ioc, run_device, tmp_path):
    """An IOC that is SIGSTOPped keeps its connection for 30-40 s: stale_after tells sooner."""
    name = f"{prefix}:circle:angle"
    client = collector(run_device, prefix, tmp_path, input_pvs=[name], stale_after=1.0)
    client.start()
    wait_until(lambda: client.status(name)["stored"] >= 3, 10, "recording")
    assert client.status(name)["stale"] is False
    os.kill(ioc.process.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: client.status(name)["stale"], 5, "STATUS stale")
        status = client.status(name)
        assert status["connected"] and status["stalls"] == 1 and status["last_event"] == "stale no update for 1 s"
    finally:
        os.kill(ioc.process.pid, signal.SIGCONT)
    wait_until(lambda: not client.status(name)["stale"], 10, "fresh again")
    client.stop()
    recorded = read_recording(client.export("stale.npz")).pvs[name]
    assert [e.kind for e in recorded.events if e.kind in ("stale", "fresh")] == ["stale", "fresh"]
    rows = gap_rows(recorded.columns)
    assert len(rows) == 1 and 0 < rows[0] < len(recorded.columns["value"]) - 1


def test_stale_after_per_pv(prefix, sources, run_device, tmp_path):
    """A PV that changes seldom can be exempt (stale_after=0) while the others are watched."""
    quiet, watched = sources.name("double"), sources.name("int32")
    client = collector(run_device, prefix, tmp_path, input_pvs=[quiet, watched], stale_after=0.5,
                       pv_options=[f"{quiet} stale_after=0"])
    client.start()
    wait_until(lambda: client.status(watched)["stale"], 5, f"{watched} stale")
    assert not client.status(quiet)["stale"] and client.status(quiet)["connected"]
    sources.post("int32", 5)
    wait_until(lambda: not client.status(watched)["stale"], 5, f"{watched} fresh")
    values = client.data(watched)["value"]
    assert list(values[gap_rows(client.data(watched))]) == [0]  # an integer PV's marker holds 0


@pytest.mark.parametrize("config, reason", [
    ({"stale_after": -1}, "stale_after must be between 0 and 86400 s, got -1"),
    ({"input_pvs": ["a"], "pv_options": ["a stale_after=1e6"]}, "stale_after must be between 0 and 86400 s"),
])
def test_bad_stale_after_is_refused(prefix, ctxt, run_device, tmp_path, config, reason):
    client = collector(run_device, prefix, tmp_path, input_pvs=["keep:me"])
    before = client.config
    with pytest.raises(RemoteError, match="invalid CONFIG") as refused:
        ctxt.put(f"{client.prefix}:CONFIG", config)
    assert reason in str(refused.value)
    assert client.config == before
