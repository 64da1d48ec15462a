"""spectrum.Spectrum through its PVs: the spectrum of a sine, and waveforms it refuses."""

from __future__ import annotations

import numpy as np
import pytest

import epics_meta_devices as emd
from processor_helpers import invalid, valid, wait_for


def test_spectrum_of_a_sine_and_waveforms_of_the_wrong_length(prefix, ctxt, sources, run_device):
    device = f"{prefix}:spectrum"
    client = run_device("spectrum.Spectrum", device,
                        config={"waveform": sources.name("waveform"), "sample_rate": 100.0, "length": 64})
    client.enable()
    # The source's initial waveform has 4 samples.
    wait_for(ctxt, f"{device}:MAGNITUDE", invalid("has 4 samples; length is set to 64"))
    t = np.arange(64) / 100.0
    sources.post("waveform", 1.5 + 3.0 * np.sin(2 * np.pi * 12.5 * t))
    magnitude = wait_for(ctxt, f"{device}:MAGNITUDE", valid())["value"]
    frequency = ctxt.get(f"{device}:FREQUENCY")["value"]
    assert len(magnitude) == len(frequency) == 33
    assert frequency == pytest.approx(np.arange(33) * 100.0 / 64)
    peak = int(np.argmax(magnitude[1:])) + 1
    assert frequency[peak] == 12.5 and magnitude[peak] == pytest.approx(3.0)  # the sine's amplitude
    assert magnitude[0] == pytest.approx(1.5)  # DC: the mean
    assert np.delete(magnitude, [0, peak]) == pytest.approx(0.0, abs=1e-9)

    for wrong, message in [(np.zeros(8), "has 8 samples; length is set to 64"),
                           (np.zeros(1), "has 1 sample(s); at least 2 are needed")]:
        sources.post("waveform", wrong)
        wait_for(ctxt, f"{device}:MAGNITUDE", invalid(message))
        assert ctxt.get(f"{device}:FREQUENCY")["alarm.severity"] == 3
        assert client.state is emd.DeviceState.running
    sources.post("waveform", np.ones(64))
    wait_for(ctxt, f"{device}:MAGNITUDE", lambda v: v["alarm.severity"] == 0 and v["value"][0] == pytest.approx(1.0))


def test_spectrum_refuses_a_scalar_input_and_bad_config(prefix, ctxt, sources, run_device):
    device = f"{prefix}:spectrum"
    client = run_device("spectrum.Spectrum", device, config={"waveform": sources.name("double"), "window": "hann"})
    for bad, message in [({"window": "blackman"}, "window must be one of none, hann"),
                         ({"sample_rate": 0.0}, "sample_rate must be a positive number"),
                         ({"length": -1}, "length must be >= 0")]:
        with pytest.raises(emd.DeviceError, match=message):
            client.configure(bad)
    client.enable()
    wait_for(ctxt, f"{device}:MAGNITUDE", invalid(f"input waveform ({sources.name('double')}) is a scalar"))
    assert client.state is emd.DeviceState.running
