"""The collector in fly scans: real bluesky plans in a RunEngine drive a real collector (its own
process) recording a real IOC; the event pages are compared with what the IOC served, as a
second client monitoring the IOC saw it."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any, Iterator

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine
from bluesky.plans import count
from ophyd_async.plan_stubs import ensure_connected
from p4p.client.thread import Context

from emd_collector import CollectorClient
from emd_ophyd import Collector, data_key_name
from epics_meta_devices.testing import IocProcess, wait_until

DB = """record(calc, "$(P)count") {
    field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "$(P)count") field(EGU, "cts") field(PREC, "1")
}
"""


@pytest.fixture
def ioc(prefix) -> Iterator[IocProcess]:
    with IocProcess(DB, {"P": f"{prefix}:ioc:"}, wait_for=f"{prefix}:ioc:count") as process:
        yield process


class Served:
    """What the IOC served, as (value, time) pairs seen by a monitor of our own."""

    def __init__(self, pv: str) -> None:
        self.updates: list[tuple[float, float]] = []
        self.lock = threading.Lock()
        self.context = Context("pva", nt=False)
        self.subscription = self.context.monitor(pv, self._on_update, "record[queueSize=10000,pipeline=true]")

    def _on_update(self, value: Any) -> None:
        if not isinstance(value, Exception):
            stamp = value["timeStamp"]
            with self.lock:
                self.updates.append((value["value"], stamp["secondsPastEpoch"] + stamp["nanoseconds"] * 1e-9))

    def close(self) -> None:
        self.subscription.close()
        self.context.close()


def collector(run_device, prefix: str, **config: Any) -> Collector:
    run_device("collect.Collector", f"{prefix}:coll", config={"publish_period": 0.1, **config})
    return Collector(f"{prefix}:coll", name="coll")


def pages_of(documents: list[tuple[str, dict]], key: str) -> dict[str, list]:
    """Every event page's columns of the stream holding `key`, concatenated (time included)."""
    columns: dict[str, list] = {}
    for name, doc in documents:
        if name == "event_page" and key in doc["data"]:
            for field, values in doc["data"].items():
                columns.setdefault(field, []).extend(values)
            columns.setdefault("time", []).extend(doc["timestamps"][key])
    return columns


def run(engine: RunEngine, plan: Any) -> list[tuple[str, dict]]:
    documents: list[tuple[str, dict]] = []
    engine(plan, lambda name, doc: documents.append((name, doc)))
    return documents


def test_a_fly_scan_yields_what_the_ioc_served_with_its_timestamps(prefix, ioc, run_device):
    pv = f"{prefix}:ioc:count"
    coll = collector(run_device, prefix, input_pvs=[pv])
    served = Served(pv)

    def plan():
        yield from ensure_connected(coll)
        yield from bps.mv(coll.enable, True)  # recording, as a collector a factory made is
        yield from bps.prepare(coll, {"acquire_time": 2.0}, wait=True)  # disables it, sets the run's length
        yield from bps.open_run()
        yield from bps.kickoff(coll, wait=True)
        # collects every 0.5 s while the run goes on: each page holds only rows not yet collected
        yield from bps.collect_while_completing([coll], [coll], flush_period=0.5)
        yield from bps.close_run()

    documents = run(RunEngine({}), plan())
    served.close()
    key = data_key_name("coll", pv)
    columns = pages_of(documents, key)
    assert sum(1 for name, doc in documents if name == "event_page" and key in doc["data"]) >= 2  # incremental
    pairs = list(zip(columns[key], columns["time"]))
    assert 12 <= len(pairs) <= 30, len(pairs)  # 2 s at 10 Hz
    assert not any(columns[f"{key}-gap"])
    start = served.updates.index(pairs[0])  # exact: the values and the IOC's own timestamps
    assert served.updates[start:start + len(pairs)] == pairs  # every update once, in order
    [descriptor] = [doc for name, doc in documents if name == "descriptor" and key in doc["data_keys"]]
    assert descriptor["data_keys"][key]["units"] == "cts" and descriptor["data_keys"][key]["dtype"] == "number"
    assert descriptor["name"] == key  # one stream per recorded PV
    with Context("pva", nt=False) as ctxt:  # the TABLE and ROWS NTTables carry the source's units too
        for table in (f"{coll.prefix}:OUT:{pv}:TABLE", f"{coll.prefix}:OUT:{pv}:ROWS:-1"):
            assert ctxt.get(table, "field(display)")["display"]["units"] == "cts"


def test_a_source_lost_during_the_fly_scan_is_a_gap_in_the_pages(prefix, ioc, run_device):
    pv = f"{prefix}:ioc:count"
    coll = collector(run_device, prefix, input_pvs=[pv])  # no end set: the plan stops the run
    status = CollectorClient(coll.prefix)

    def lose_and_restore_the_ioc() -> None:
        wait_until(lambda: status.status(pv)["stored"] >= 5, 10, "recording")
        ioc.kill_and_restart(lambda: status.status(pv))

    def plan():
        yield from ensure_connected(coll)
        yield from bps.open_run()
        yield from bps.kickoff(coll, wait=True)
        yield from bps.wait_for([lambda: asyncio.to_thread(lose_and_restore_the_ioc)])
        yield from bps.stop(coll)  # ACQUIRE=0
        yield from bps.complete(coll, wait=True)
        yield from bps.collect(coll)
        yield from bps.close_run()

    documents = run(RunEngine({}), plan())
    key = data_key_name("coll", pv)
    columns = pages_of(documents, key)
    gaps = [row for row, gap in enumerate(columns[f"{key}-gap"]) if gap]
    assert len(gaps) == 1, columns[f"{key}-gap"]
    assert math.isnan(columns[key][gaps[0]]) and columns[f"{key}-severity"][gaps[0]] == 3  # INVALID
    assert 5 <= gaps[0] < len(columns[key]) - 5  # between the data before and after the restart
    before, after = columns[key][:gaps[0]], columns[key][gaps[0] + 1:]
    assert before == sorted(before) and after == sorted(after) and after[0] < before[-1]  # the IOC counted anew


def test_the_collector_in_a_step_scan_reads_each_pv_s_newest_sample(prefix, ioc, run_device):
    pv = f"{prefix}:ioc:count"
    coll = collector(run_device, prefix, input_pvs=[pv])
    key = data_key_name("coll", pv)

    def plan():
        yield from ensure_connected(coll)
        yield from bps.stage(coll, wait=True)  # stage enables: the collector records
        yield from bps.wait_for([lambda: asyncio.to_thread(
            wait_until, lambda: CollectorClient(coll.prefix).status(pv)["stored"] >= 2, 10, "recording")])
        yield from count([coll], num=2, delay=0.3)
        yield from bps.unstage(coll)

    documents = run(RunEngine({}), plan())
    [descriptor] = [doc for name, doc in documents if name == "descriptor"]
    assert descriptor["data_keys"][key]["units"] == "cts"
    events = [doc for name, doc in documents if name == "event"]
    assert len(events) == 2 and events[1]["data"][key] > events[0]["data"][key]  # newer samples
    assert events[0]["data"][f"{key}-gap"] is False


def test_a_kickoff_the_collector_refuses_raises_its_message(prefix, ioc, run_device):
    pv = f"{prefix}:ioc:count"
    coll = collector(run_device, prefix, input_pvs=[pv])

    def plan():
        yield from ensure_connected(coll)
        yield from bps.mv(coll.enable, True)  # recording already: ACQUIRE is refused
        yield from bps.open_run()
        yield from bps.kickoff(coll, wait=True)

    with pytest.raises(Exception, match=r"is recording already \(ENABLE=1\): disable it, then put ACQUIRE=1"):
        RunEngine({})(plan())


def test_a_prepare_with_a_config_value_out_of_range_raises_the_collector_s_message(prefix, run_device):
    coll = collector(run_device, prefix, input_pvs=[f"{prefix}:ioc:count"])

    def plan():
        yield from ensure_connected(coll)
        yield from bps.prepare(coll, {"acquire_time": -1}, wait=True)

    with pytest.raises(Exception, match="acquire_time must be between 0 and 86400 s"):
        RunEngine({})(plan())
