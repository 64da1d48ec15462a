"""ACQUIRE (issue 19): a collector run as one put, busy-record style, so a Bluesky plan starts a
run and waits for its end with a put, here through p4p and through ophyd-async's PVI device."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from p4p.client.thread import Context

import epics_meta_devices as emd
from emd_collector import CollectorClient
from epics_meta_devices.testing import wait_until


def collector(run_device, prefix, **config) -> CollectorClient:
    base = run_device("collect.Collector", f"{prefix}:coll", config={"publish_period": 0.1, **config})
    return CollectorClient(base.prefix)


def test_a_put_of_1_records_for_acquire_time_and_completes_at_the_end(prefix, ioc, run_device, ctxt):
    name = f"{prefix}:circle:angle"  # 10 Hz
    client = collector(run_device, prefix, input_pvs=[name], acquire_time=1.0)
    started = time.monotonic()
    ctxt.put(f"{client.prefix}:ACQUIRE", 1, timeout=10)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 3.0, elapsed
    assert client.state is emd.DeviceState.ready and ctxt.get(f"{client.prefix}:ACQUIRE")["value"] == 0
    assert 5 <= client.status(name)["stored"] <= 30


def test_acquire_samples_ends_the_run_once_every_pv_has_them(prefix, ioc, run_device, ctxt):
    names = [f"{prefix}:circle:angle", f"{prefix}:circle:x"]
    client = collector(run_device, prefix, input_pvs=names, acquire_samples=8)
    ctxt.put(f"{client.prefix}:ACQUIRE", 1, timeout=10)
    assert all(client.status(name)["stored"] >= 8 for name in names)
    assert client.state is emd.DeviceState.ready


def test_acquire_0_from_another_client_ends_an_open_run(prefix, ioc, run_device, ctxt):
    client = collector(run_device, prefix, input_pvs=[f"{prefix}:circle:angle"])
    result: list = []
    waiting = threading.Thread(target=lambda: result.append(
        ctxt.put(f"{client.prefix}:ACQUIRE", 1, timeout=20, throw=False)))
    waiting.start()
    client.wait_for_state("running", timeout=5)
    with pytest.raises(emd.DeviceError, match="is acquiring already: put ACQUIRE=0 to end that run first"):
        client.put("ACQUIRE", 1)
    with Context("pva", nt=False) as other:
        other.put(f"{client.prefix}:ACQUIRE", 0, timeout=5)
    waiting.join(5)
    assert result == [None] and client.state is emd.DeviceState.ready


def test_acquire_refusals(prefix, run_device, ctxt):
    client = collector(run_device, prefix, input_pvs=["not:served:here"])
    client.enable()
    with pytest.raises(emd.DeviceError, match="is recording already \\(ENABLE=1\\): disable it, then put ACQUIRE=1"):
        client.put("ACQUIRE", 1)
    client.disable()
    with pytest.raises(Exception, match="acquire_time must be between 0 and 86400 s"):
        client.configure(acquire_time=-1)


def test_ophyd_async_sets_acquire_and_waits_for_the_run(prefix, ioc, run_device):
    """A plan's view: device.acquire.set(1) returns when the run ended (kickoff and complete
    of a fly scan are the same put, waited for or not)."""
    from ophyd_async.core import Device
    from ophyd_async.epics.core import PviDeviceConnector

    client = collector(run_device, prefix, input_pvs=[f"{prefix}:circle:angle"], acquire_time=1.0)

    async def run() -> float:
        device = Device(name="coll", connector=PviDeviceConnector(f"{client.prefix}:"))
        await device.connect(timeout=10)
        started = time.monotonic()
        await device.acquire.set(1, timeout=10)
        return time.monotonic() - started

    assert 1.0 <= asyncio.run(run()) < 3.0
    wait_until(lambda: client.state is emd.DeviceState.ready, 5, "ready after the run")
