"""emd-ophyd benchmarks: what the Bluesky layer costs over the PVs it reads and writes.

- Fly-scan collect: a collector records 100,000 samples of one PV in an ACQUIRE run started by
  `emd_ophyd.Collector.kickoff`; then `collect_pages` (a get of the run's
  ``OUT:<pv>:ROWS:<first>`` and the event page made of it) is timed against a bare p4p get of
  the same PV's ``OUT:<pv>:TABLE``, each on an open channel, alternating, in the same run.
- CONFIG field put: a put to ``PREFIX:CONFIG:delay`` (an NTScalar, as ophyd-async writes a
  CONFIG signal) against a put of the CONFIG structure with the same field, both waiting for
  the device's answer, alternating blocks, on one ping.Ping device.
"""

from __future__ import annotations

import asyncio
import time

from p4p.client.asyncio import Context as AsyncContext
from p4p.client.thread import Context

from emd_collector import CollectorClient
from emd_ophyd import Collector
from epics_meta_devices.testing import DeviceProcess, unique_prefix, wait_until

from ._common import Result, ask, start_helper, stop_helper

COLLECT_TARGET = 1.5
"""A collect of 100,000 samples at most 1.5 times a bare get of the same TABLE (medians)."""
CONFIG_TARGET = 1.2
"""A CONFIG:<field> put at most 1.2 times a put of the CONFIG structure (medians)."""
SAMPLES = 100_000
CHUNK = 10_000
"""Updates the source posts at once, each chunk once the previous one was received."""


def run_collect(repeats: int = 10) -> Result:
    """`repeats` collects of the same `SAMPLES` rows, each side alternately."""
    prefix = unique_prefix("bench-fly")
    source = start_helper("bare_source", prefix)
    pv = f"{prefix}:SOURCE"
    config = {"input_pvs": [pv], "acquire_samples": SAMPLES, "max_samples": SAMPLES * 2, "publish_period": 1.0,
              "queue_size": CHUNK}
    try:
        with DeviceProcess("collect.Collector", f"{prefix}:coll", config=config):
            return asyncio.run(_collect_alternately(prefix, pv, repeats, source))
    finally:
        stop_helper(source)


async def _collect_alternately(prefix: str, pv: str, repeats: int, source) -> Result:
    collector = Collector(f"{prefix}:coll", name="coll")
    await collector.connect()
    status = CollectorClient(collector.prefix)
    await collector.kickoff()
    first_rows = dict(collector._next_rows)  # where this run's rows begin: each collect reads them all
    # posts before the subscription is up would be lost to it, and the run would not end
    await asyncio.to_thread(wait_until, lambda: status.status(pv)["stored"] >= 1, 10, "the source's first update")
    for posted in range(0, SAMPLES, CHUNK):  # in chunks the collector's queue holds: nothing squashed
        await asyncio.to_thread(ask, source, f"post {CHUNK}")
        await asyncio.to_thread(wait_until, lambda: status.status(pv)["received"] >= posted + CHUNK, 30,
                                "the chunk received")
    await asyncio.wait_for(collector.complete(), 30)
    collect_times: list[float] = []
    get_times: list[float] = []
    table = f"{collector.prefix}:OUT:{pv}:TABLE"
    with AsyncContext("pva", nt=False) as bare:
        rows = len((await bare.get(table)).value.time_ns)  # the channel opened, as a reader keeps it
        assert rows >= SAMPLES, f"the collector stored {rows} of {SAMPLES}"

        async def get_table() -> None:
            started = time.perf_counter()
            await bare.get(table)
            get_times.append(time.perf_counter() - started)

        async def collect() -> None:
            collector._next_rows = dict(first_rows)
            started = time.perf_counter()
            pages = [page async for page in collector.collect_pages()]
            collect_times.append(time.perf_counter() - started)
            assert len(pages[0]["time"]) >= SAMPLES

        for repeat in range(repeats):  # ABBA: drifts of the machine hit both sides alike
            for side in (get_table, collect) if repeat % 2 == 0 else (collect, get_table):
                await side()
    return Result(f"fly-scan collect of {SAMPLES:,} samples (emd-ophyd)", collect_times, get_times,
                  "bare p4p get of the TABLE", COLLECT_TARGET)


def run_config(count: int = 400, blocks: int = 20) -> Result:
    """`count` puts each way in `blocks` alternating blocks, after a warm-up."""
    prefix = unique_prefix("bench-cfg")
    with DeviceProcess("ping.Ping", prefix, config={}), Context("pva", nt=False) as ctxt:
        field_pv, config_pv = f"{prefix}:CONFIG:delay", f"{prefix}:CONFIG"

        def put_field(value: float) -> None:
            ctxt.put(field_pv, value, wait=True)

        def put_config(value: float) -> None:
            ctxt.put(config_pv, {"delay": value}, wait=True)

        sides: list[tuple] = [(put_field, []), (put_config, [])]
        for put, _ in sides:
            for n in range(20):
                put(n * 1e-6)
        per_block = max(1, count // blocks)
        for block in range(blocks):
            for put, times in (sides if block % 2 == 0 else reversed(sides)):
                for n in range(per_block):
                    started = time.perf_counter()
                    put((n % 2) * 1e-6)  # a change each time: nothing answered from "unchanged"
                    times.append(time.perf_counter() - started)
    return Result("CONFIG field put (CONFIG:delay)", sides[0][1], sides[1][1], "put of the CONFIG structure",
                  CONFIG_TARGET)


def run() -> list[Result]:
    return [run_collect(), run_config()]
