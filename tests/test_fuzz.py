"""Property-based fuzzing: random puts of random values to a running device's PVs never break
it. Whatever is refused, the device keeps answering, its identity never changes, its state is a
live one and its CONFIG stays well-typed. (CLOSE is left out: closing is its legitimate effect.)"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import epics_meta_devices as emd

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=5),
    st.dictionaries(
        st.sampled_from(["value", "gain", "count", "name", "enabled_channels", "weights", "strict", "bogus"]),
        st.one_of(scalars, st.lists(st.text(max_size=5), max_size=3)),
        max_size=3,
    ),
)
targets = st.sampled_from(["TYPE", "STATE", "UUID", "CONFIG", "INFO", "ENABLE", "INPUT", "CMD", "OUTPUT", "MODE"])
LIVE = {emd.DeviceState.created, emd.DeviceState.ready, emd.DeviceState.running, emd.DeviceState.error}


@pytest.fixture(scope="module")
def fuzzed_device():
    from epics_meta_devices.testing import DeviceProcess, unique_prefix

    process = DeviceProcess("test.Probe", unique_prefix("emdfuzz"), config={})
    client = process.start()
    yield client, client.uuid
    process.stop()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(puts=st.lists(st.tuples(targets, values), min_size=1, max_size=4))
def test_random_puts_never_break_a_running_device(fuzzed_device, puts):
    client, uuid = fuzzed_device
    for pv, value in puts:
        try:
            client.put(pv, value)
        except emd.DeviceTimeout:
            raise
        except emd.DeviceError:
            pass  # refused, with a message: fine
    assert client.state in LIVE
    assert client.uuid == uuid and client.device_type == "test.Probe"
    config = client.config
    assert isinstance(config["gain"], float) and isinstance(config["count"], int) and config["count"] >= 0
    assert all(isinstance(c, str) for c in config["enabled_channels"])
    assert client.info["pid"] > 0
