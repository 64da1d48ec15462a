"""Processors chained with other devices, as a user would: a real IOC feeds a stats.Stats, a
collect.Collector records the statistics, both created through a DeviceFactory."""

from __future__ import annotations

import numpy as np

import epics_meta_devices as emd
from emd_collector import CollectorClient
from epics_meta_devices.testing import DeviceProcess, IocProcess, wait_until

# An analog output record we put values to, as an operator would.
SETPOINT_DB = """
record(ao, "$(P)setpoint") { field(VAL, "0") field(PINI, "YES") field(PREC, "3") }
"""


def test_ioc_to_stats_to_collector_through_a_factory(prefix, ctxt, tmp_path):
    setpoint = f"{prefix}:ioc:setpoint"
    factory = DeviceProcess("factory.DeviceFactory", f"{prefix}:factory",
                            cli=["factory", "run", f"{prefix}:factory", "--data-root", str(tmp_path)])
    with IocProcess(SETPOINT_DB, {"P": f"{prefix}:ioc:"}, wait_for=setpoint):
        factory.start()
        try:
            with emd.FactoryClient(f"{prefix}:factory") as factories:
                factories.wait_for_state("running", timeout=10)
                stats = factories.create("stats.Stats", f"{prefix}:stats", {"inputs": [setpoint], "window": 3})
                mean, count = f"{prefix}:stats:MEAN", f"{prefix}:stats:COUNT"
                collector = factories.create("collect.Collector", f"{prefix}:coll", {
                    "input_pvs": [mean, count], "publish_period": 0.1})
                assert isinstance(collector, CollectorClient) and stats.state is emd.DeviceState.ready
                collector.start()
                wait_until(lambda: collector.status()["connected"] == 2, 10, "the collector connected")

                stats.enable()  # its first sample: the IOC's current value, 0
                wait_until(lambda: valid_values(collector, count) == [1], 10, "the first statistics recorded")
                for value in (10.0, 20.0, 30.0, 40.0):
                    ctxt.put(setpoint, value)
                wait_until(lambda: valid_values(collector, mean)[-1:] == [30.0], 10, "the last mean recorded")

                # Means over the newest three samples, each recorded once, in order.
                assert valid_values(collector, mean) == [0.0, 5.0, 10.0, 20.0, 30.0]
                wait_until(lambda: len(valid_values(collector, count)) == 5, 10, "every count recorded")
                assert valid_values(collector, count) == [1, 2, 3, 3, 3]
                # Recorded with the IOC's timestamps, which the statistics carry.
                times = collector.data(mean)["time"]
                assert np.all(np.diff(times[collector.data(mean)["severity"] == 0]) > 0)
        finally:
            factory.stop()


def valid_values(collector: CollectorClient, pv: str) -> list[float]:
    """The values `pv` had without an alarm, in the order recorded."""
    data = collector.data(pv)
    return data["value"][data["severity"] == 0].tolist()
