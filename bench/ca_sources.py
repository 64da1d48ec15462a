"""Channel Access inputs of collect.Collector (issue 20): ingest of ``ca://`` PVs from a real
CA-only IOC (EPICS base's softIoc, no QSRV) against a bare aioca monitor that only counts (the
CA client the collector uses), and the highest rate one CA PV is recorded at without loss.

The ingest is measured as bench.collector measures PVAccess ingest: windows of the collector
between windows of the baseline, CPU from /proc/PID/stat, loss from the IOC's counting records.
The lossless rate: a producer (aioca puts without waiting, paced) writes 0, 1, 2, ... to one
longout at rising rates; the collector must store every value, in order.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from contextlib import ExitStack

from epics_meta_devices._inputs import channel_access
from epics_meta_devices.testing import IocProcess, unique_prefix, wait_until

from ._common import Result, ask, start_helper, stop_helper
from .collector import RATE, RECORD, SETTLE, cpu_seconds, device, losses, window

CPU_TARGET = 1.0
"""Collector CPU per CA update at most this times a bare aioca monitor's that only counts."""
RATES = (1000, 2000, 3000, 0)
"""Update rates (Hz) of the lossless-rate search, each for LOSSLESS_SECONDS; 0: as fast as the
producer puts (about 3.7 kHz here: the producer, not the collector, sets that ceiling)."""
LOSSLESS_SECONDS = 2.0


def ca_ioc(stack: ExitStack, database: str, prefix: str, wait_for: str) -> None:
    server = IocProcess(database, {"P": f"{prefix}:"}, wait_for=wait_for, ca_only=True)
    stack.callback(server.close)
    server.start()


def bare_ca_window(names: list[str], seconds: float) -> tuple[float, int, int]:
    """A bench.bare_ca_monitor (aioca) of its own: after SETTLE, its CPU seconds over `seconds`,
    the updates it counted and the jumps it saw meanwhile."""
    process = start_helper("bare_ca_monitor", "aioca", *names)
    try:
        ask(process, "start")
        time.sleep(SETTLE)
        cpu = cpu_seconds(process.pid)
        count, jumps = map(int, ask(process, "count").split())
        time.sleep(seconds)
        cpu = cpu_seconds(process.pid) - cpu
        count2, jumps2 = map(int, ask(process, "count").split())
        return cpu, count2 - count, jumps2 - jumps
    finally:
        process.kill()
        stop_helper(process)


def ingest(pvs: int, seconds: float, rounds: int = 2) -> list[Result]:
    prefix = unique_prefix("bench-caioc")
    names = [f"{prefix}:s{n}" for n in range(pvs)]
    collector_cpu: list[float] = []
    bare_cpu: list[float] = []
    bare_jumps = 0
    with ExitStack() as stack:
        ca_ioc(stack, "".join(RECORD.format(n=n) for n in range(pvs)), prefix, names[-1])
        data = stack.enter_context(tempfile.TemporaryDirectory(prefix="emd-bench-"))
        collector, pid = device(stack, {"input_pvs": [f"ca://{name}" for name in names],
                                        "max_samples": 1000}, data)
        for round in range(rounds):
            first = bare_ca_window(names, seconds / 2)
            recorded = window(collector, pid, data, names, seconds)
            second = bare_ca_window(names, seconds / 2)
            bare_jumps += first[2] + second[2]
            if round == 0:
                status = collector.get_pv("STATUS").todict()
                arrays = recorded.arrays
            collector_cpu.append(recorded.us_per_update)
            bare_cpu.append((first[0] + second[0]) / (first[1] + second[1]) * 1e6)
            print(f"  round {round + 1}: bare aioca monitor {first[1] + second[1]} updates, "
                  f"{bare_cpu[-1]:.1f} us CPU per update; collector {recorded.received} updates, "
                  f"{collector_cpu[-1]:.1f} us CPU per update", flush=True)
    kept, sent, _, faults = losses(arrays, names, status)
    print(f"  collector: {kept} samples kept of {sent} the IOC sent between each PV's first and last; "
          f"bare monitor saw {bare_jumps} jumps")
    name = f"{pvs} CA PVs at {RATE:g} Hz for {seconds:g} s"
    return [
        Result(f"CA ingest CPU per update, {name}", collector_cpu, bare_cpu,
               "bare aioca monitor (counts only)", target=CPU_TARGET, unit="us"),
        Result(f"CA ingest updates kept of those sent, {name}"
               + (f" ({'; '.join(faults)})" if faults else ""),
               [kept], [sent], "IOC scans between first and last", unit="updates", floor=sent),
    ]


async def _produce(name: str, rate: float, count: int) -> None:
    """Put 0 .. count-1 to `name` at `rate` per second (aioca puts that do not wait)."""
    from aioca import caput

    start = time.monotonic()
    for n in range(count):
        await caput(name, n, wait=False)
        ahead = start + (n + 1) / rate - time.monotonic() if rate else 0.0
        if ahead > 0:
            await asyncio.sleep(ahead)


def lossless_rate() -> list[Result]:
    """The highest rate in RATES at which a collector stores every update of one CA PV."""
    prefix = unique_prefix("bench-carate")
    name = f"{prefix}:x"
    highest = 0.0
    with ExitStack() as stack:
        ca_ioc(stack, 'record(longout, "$(P)x") { field(VAL, "-1") field(PINI, "YES") }\n', prefix, name)
        data = stack.enter_context(tempfile.TemporaryDirectory(prefix="emd-bench-"))
        collector, _ = device(stack, {"input_pvs": [f"ca://{name}"], "max_samples": 1_000_000,
                                      "publish_period": 0.5}, data)
        access = channel_access()
        for rate in RATES:
            collector.put("CLEAR", True)
            collector.enable()
            wait_until(lambda: collector.get_pv(f"STATUS:{name}")["connected"], 10, "connected")
            count = int((rate or 4000) * LOSSLESS_SECONDS)
            began = time.monotonic()
            access.call(_produce(name, rate, count), 120)
            achieved = count / (time.monotonic() - began)
            try:
                wait_until(lambda: collector.get_pv(f"STATUS:{name}")["received"] >= count + 1, 10)
            except AssertionError:
                pass
            collector.disable()
            status = collector.get_pv(f"STATUS:{name}").todict()
            values = collector.get_pv(f"OUT:{name}")["value"][1:]  # after the initial -1
            lossless = len(values) == count and all(values[n] == n for n in range(0, count, max(1, count // 1000))) \
                and values[-1] == count - 1
            print(f"  {rate or 'unpaced'} Hz asked, {achieved:.0f} Hz put: {len(values)} of {count} stored "
                  f"(received {status['received'] - 1}), {'lossless' if lossless else 'LOSS'}", flush=True)
            if not lossless:
                break
            highest = achieved
    return [Result("CA lossless rate of one PV (collector)", [highest], [float(RATES[0])],
                   "the lowest rate tried", unit="Hz", floor=float(RATES[0]))]


def run(quick: bool = False) -> list[Result]:
    print("CA ingest (collector vs bare aioca monitor) ...", flush=True)
    results = ingest(200 if quick else 1000, 5.0 if quick else 30.0)
    print("CA lossless rate of one PV ...", flush=True)
    return results + lossless_rate()


if __name__ == "__main__":
    from epics_meta_devices.testing import use_loopback_environment

    use_loopback_environment()
    for result in run(quick=True):
        print(result.cells())
