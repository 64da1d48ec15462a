"""Processing latency: from an input update to the output post, through a bench.Relay
ProcessingDevice (Y = x) against a bare p4p monitor-to-post relay.

This process serves two source PVs (p4p SharedPV, NTScalar double), one per side, and watches
each side's output with a thread-client monitor. One sample: post the next number on a source,
stamped now, and wait until the relayed output with that value (and the source's timestamp)
arrives; latency is from just before the post to the monitor callback, so both sides include
the same client and server work here. Samples are taken one at a time, in alternating blocks,
so drifts of the machine hit both sides alike. Each relay runs in a process of its own: the
device with ``emd device run bench.Relay`` (loaded through EMD_PLUGINS from
bench._relay_device), the baseline with ``python -m bench.bare_relay``.

CPU pinning: with two or more CPUs, this process runs on one and both relays on another, so
both relays run under the same conditions. Unpinned, on two CPUs, the scheduler's placement
of the eight or so threads involved changed every few hundred milliseconds and favoured one
side or the other for a while: block ratios from 0.84x to 1.78x, run ratios from 0.88x to 1.26x.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from p4p.client.thread import Context
from p4p.nt import NTScalar
from p4p.server import Server
from p4p.server.thread import SharedPV

from epics_meta_devices.testing import DeviceProcess, unique_prefix

from ._common import ROOT, Result, separate_cpus, start_helper, stop_helper

TARGET = 1.2
"""Device latency at most 1.2 times the bare relay's (medians)."""
TIMEOUT = 5.0
"""Seconds to wait for one relayed update before the benchmark fails."""
PLUGIN_ENV = {
    "EMD_PLUGINS": "bench._relay_device",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
}
"""What a device process needs to load bench.Relay."""


class Watcher:
    """Monitor callback on a relay's output: notes when the awaited value arrives."""

    def __init__(self) -> None:
        self.expected: float | None = None
        self.arrived = threading.Event()
        self.at = 0.0
        self.stamp = 0.0

    def __call__(self, update: Any) -> None:
        now = time.perf_counter()
        if isinstance(update, Exception) or update["value"] != self.expected:
            return
        if update["alarm.severity"] != 0:  # e.g. the device's INVALID "waiting for input"
            return
        self.stamp = update["timeStamp.secondsPastEpoch"] + update["timeStamp.nanoseconds"] * 1e-9
        self.at = now
        self.arrived.set()


class Side:
    """One relay: the source this process posts on, the monitor on the relay's output."""

    def __init__(self, source: SharedPV, nt: NTScalar, context: Context, output: str) -> None:
        self.source = source
        self.nt = nt
        self.watcher = Watcher()
        self.subscription = context.monitor(output, self.watcher, notify_disconnect=True)
        self.count = 0

    def sample(self, timeout: float = TIMEOUT) -> float | None:
        """Post the next value on the source; seconds until the relay's output had it, or None
        after `timeout`. RuntimeError when the output does not carry the source's timestamp."""
        self.count += 1
        value = float(self.count)
        self.watcher.expected = value
        self.watcher.arrived.clear()
        stamp = time.time()
        posted = self.nt.wrap(value, timestamp=stamp)
        began = time.perf_counter()
        self.source.post(posted)
        if not self.watcher.arrived.wait(timeout):
            return None
        if abs(self.watcher.stamp - stamp) > 2e-6:  # float seconds: sub-microsecond rounding
            raise RuntimeError(f"output {value} stamped {self.watcher.stamp}, its input {stamp}")
        return self.watcher.at - began

    def prime(self, timeout: float = 20.0) -> None:
        """Post until an update makes it through (the relay's monitors connect meanwhile)."""
        deadline = time.monotonic() + timeout
        while self.sample(timeout=0.5) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no relayed update within {timeout} s")

    def measure(self, count: int) -> list[float]:
        times = []
        for _ in range(count):
            latency = self.sample()
            if latency is None:
                raise RuntimeError(f"update {self.count} not relayed within {TIMEOUT} s")
            times.append(latency)
        return times


def run(count: int = 5000, warmup: int = 200, blocks: int = 50) -> Result:
    """`count` samples per side after `warmup` each, in `blocks` alternating blocks."""
    device_times: list[float] = []
    bare_times: list[float] = []
    prefix = unique_prefix("bench-proc")
    nt = NTScalar("d")  # what the device serves Y = 0.0 as, and the bare relay its output
    sources = {side: SharedPV(nt=nt, initial=0.0) for side in ("dev", "bare")}
    names = {side: f"{prefix}:src:{side}" for side in sources}
    bare_output = f"{prefix}:bare:Y"
    device_prefix = f"{prefix}:dev"
    with Server(providers=[{names[side]: pv for side, pv in sources.items()}]), \
            Context("pva", nt=False) as context:
        bare_process = start_helper("bare_relay", names["bare"], bare_output)
        device_process = DeviceProcess("bench.Relay", device_prefix, config={"x": names["dev"]},
                                       env=PLUGIN_ENV)
        try:
            with device_process as client, \
                    separate_cpus([bare_process.pid, device_process.process.pid], []):
                client.enable()
                device = Side(sources["dev"], nt, context, f"{device_prefix}:Y")
                bare = Side(sources["bare"], nt, context, bare_output)
                for side in (device, bare):
                    side.prime()
                    side.measure(warmup)
                per_block = max(1, count // blocks)
                for block in range(blocks):
                    sides = [(device, device_times), (bare, bare_times)]
                    for side, times in sides if block % 2 == 0 else reversed(sides):
                        times += side.measure(per_block)
                for side in (device, bare):
                    side.subscription.close()
        finally:
            stop_helper(bare_process)
    return Result("processing latency, input update to output post", device_times, bare_times,
                  "bare p4p monitor-to-post relay", TARGET)
