"""stats.Stats through its PVs: a count window pooled over two inputs, a reset on restart, a
time window by the samples' own timestamps, and refused waveforms."""

from __future__ import annotations

import time

import numpy as np
import pytest

import epics_meta_devices as emd
from processor_helpers import invalid, valid, wait_for


def outputs(ctxt, device: str) -> dict[str, float]:
    return {name: ctxt.get(f"{device}:{name}")["value"] for name in ("COUNT", "MEAN", "STD", "MIN", "MAX")}


def test_stats_pools_inputs_into_a_count_window(prefix, ctxt, sources, run_device):
    device = f"{prefix}:stats"
    client = run_device("stats.Stats", device, config={"inputs": [sources.name("double"), sources.name("int32")],
                                                        "window": 4})
    client.enable()
    # Every update adds exactly one sample, starting with each input's value at connection.
    wait_for(ctxt, f"{device}:COUNT", valid(2), what="the two initial samples")

    def feed(kind: str, value: float) -> None:
        """Post one update and wait until the device has processed it (its timestamp is on
        MEAN), so updates of the two inputs are added in this order."""
        stamp = time.time()
        sources.post(kind, value, timestamp=stamp)
        wait_for(ctxt, f"{device}:MEAN", lambda v: abs(v["timeStamp.secondsPastEpoch"]
                                                      + v["timeStamp.nanoseconds"] * 1e-9 - stamp) < 1e-6)

    for kind, value in [("double", 10.0), ("int32", 20), ("double", 30.0), ("int32", 40)]:
        feed(kind, value)
    # The window keeps the newest four: the two zeros are out.
    assert outputs(ctxt, device) == pytest.approx(
        {"COUNT": 4, "MEAN": 25.0, "STD": np.std([10, 20, 30, 40]), "MIN": 10.0, "MAX": 40.0})
    feed("double", 30.0)  # the same value again is another sample: 20, 30, 40, 30
    assert outputs(ctxt, device) == pytest.approx(
        {"COUNT": 4, "MEAN": 30.0, "STD": np.std([20, 30, 40, 30]), "MIN": 20.0, "MAX": 40.0})

    # A new run starts with an empty window: only the inputs' current values (30 and 40).
    client.disable()
    assert ctxt.get(f"{device}:MEAN")["alarm.message"] == "not running"
    client.enable()
    wait_for(ctxt, f"{device}:COUNT", valid(2))
    wait_for(ctxt, f"{device}:MEAN", valid(35.0))


def test_stats_time_window_follows_the_sample_timestamps(prefix, ctxt, sources, run_device):
    device = f"{prefix}:stats"
    client = run_device("stats.Stats", device, config={"inputs": [sources.name("double")], "window_seconds": 5.0})
    client.enable()
    wait_for(ctxt, f"{device}:COUNT", valid(1))
    t0 = time.time() + 100  # later than the initial sample: that one drops out of the window
    for offset, value in [(0, 1.0), (2, 2.0), (4, 3.0)]:
        sources.post("double", value, timestamp=t0 + offset)
    wait_for(ctxt, f"{device}:MAX", valid(3.0))
    assert outputs(ctxt, device) == pytest.approx({"COUNT": 3, "MEAN": 2.0, "STD": np.std([1, 2, 3]),
                                                   "MIN": 1.0, "MAX": 3.0})
    sources.post("double", 4.0, timestamp=t0 + 8)  # 1 and 2 are now more than 5 s older
    wait_for(ctxt, f"{device}:MAX", valid(4.0))
    assert outputs(ctxt, device) == pytest.approx({"COUNT": 2, "MEAN": 3.5, "STD": 0.5, "MIN": 3.0, "MAX": 4.0})
    sources.post("double", 100.0, timestamp=t0 + 1)  # arrives too old to count
    wait_for(ctxt, f"{device}:MEAN", lambda v: v["timeStamp.secondsPastEpoch"] == int(t0 + 1),
             what="the late sample processed")
    assert outputs(ctxt, device) == pytest.approx({"COUNT": 2, "MEAN": 3.5, "STD": 0.5, "MIN": 3.0, "MAX": 4.0})


def test_stats_refuses_waveforms_and_bad_windows(prefix, ctxt, sources, run_device):
    device = f"{prefix}:stats"
    client = run_device("stats.Stats", device, config={"inputs": [sources.name("waveform")]})
    for bad, message in [({"window": 0}, "window must be 1 to 100000"),
                         ({"window_seconds": -1.0}, "window_seconds must be >= 0"),
                         ({"inputs": []}, "give the PV name of every input")]:
        with pytest.raises(emd.DeviceError, match=message):
            client.configure(bad)
    client.enable()
    wait_for(ctxt, f"{device}:MEAN", invalid(f"input inputs[0] ({sources.name('waveform')}) is a waveform"))
    assert ctxt.get(f"{device}:COUNT")["value"] == 0 and client.state is emd.DeviceState.running


def test_stats_keeps_counting_while_another_input_is_away(prefix, ctxt, sources, run_device):
    """Pooled statistics do not wait for every input: a missing PV and an INVALID update add
    nothing, and the other input's samples are all counted meanwhile."""
    device = f"{prefix}:stats"
    missing = f"{prefix}:no:such:pv"
    client = run_device("stats.Stats", device, config={"inputs": [sources.name("double"), missing],
                                                        "window": 10})
    client.enable()
    wait_for(ctxt, f"{device}:COUNT", valid(1), what="the double's initial sample alone")
    for value in (1.0, 2.0):
        sources.post("double", value)
    wait_for(ctxt, f"{device}:COUNT", valid(3))
    sources.post("double", 99.0, severity=3, message="broken")
    sources.post("double", 3.0, severity=0, message="")  # a post keeps the alarm unless given
    wait_for(ctxt, f"{device}:MAX", valid(3.0))
    assert outputs(ctxt, device)["COUNT"] == 4  # 0, 1, 2, 3: the INVALID 99 is not counted
