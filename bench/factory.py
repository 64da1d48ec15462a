"""A DeviceFactory run with ``emd factory run`` in a process of its own, driven by a
FactoryClient from this process: CREATE to ready, memory with many devices alive, DELETE to
process gone.

CREATEs of ping.Ping devices are timed one at a time (the put returns once the child process
serves its PVs), alternating with bare p4p starts measured as in device_start (spawn python,
import p4p, serve one PV until a get answers), whose memory is read while they serve. The
devices are kept, so the memory of every device process and of the factory is read with all of
them alive. Then each is deleted, timed until the put returns (after the process exited), and
its process is checked to be gone. DELETE is compared with closing a bare server until it exits.
A DELETE refused with "process object is closed" (a race in the factory between DELETE and its
watcher of child processes, both reaping the child) is counted and named in the results: the
process had exited before that answer, so its time counts all the same.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Callable

from epics_meta_devices import DeviceError
from epics_meta_devices.factory import FactoryClient
from epics_meta_devices.testing import DeviceProcess, unique_prefix

from . import device_start
from ._common import Result

CREATE_LIMIT = 1.5
"""CREATE to ready: median at most 1.5 s."""


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` (VmRSS of /proc/PID/status) in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for pid {pid}: a zombie?")


def gone(pid: int) -> bool:
    """Whether process `pid` has exited: no /proc/PID, or only a zombie left (state Z)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"  # the field after "(command name)"


def run(count: int = 20) -> list[Result]:
    """`count` CREATEs alternating with as many bare p4p starts, memory with `count` devices
    alive, then `count` DELETEs: create, memory per device, factory memory and delete results."""
    creates: list[float] = []
    bare_starts: list[tuple[float, float]] = []
    bare_rss: list[float] = []

    def create(client: FactoryClient, prefix: str) -> None:
        started = time.perf_counter()
        device = client.create("ping.Ping", prefix)
        creates.append(time.perf_counter() - started)
        device.disconnect()  # create() returns a client with a context of its own

    def bare() -> None:
        def read_rss(process: subprocess.Popen[bytes]) -> None:
            bare_rss.append(rss_mb(process.pid))

        bare_starts.append(device_start.time_bare(read_rss))

    prefix = unique_prefix("bench-factory")
    factory = DeviceProcess("factory.DeviceFactory", prefix, cli=["factory", "run", prefix])
    factory.start()
    assert factory.process is not None
    try:
        with FactoryClient(prefix) as client:
            client.get_pv("CREATE")  # connect the channel first: its search is not a CREATE's cost
            for n in range(count):
                sides: list[Callable[[], None]] = [partial(create, client, f"{prefix}:b{n}"), bare]
                for side in sides if n % 2 == 0 else reversed(sides):  # alternate who goes first
                    side()

            devices = client.devices()
            if len(devices) != count:
                raise RuntimeError(f"{len(devices)} devices listed after {count} CREATEs")
            device_rss = [rss_mb(d["pid"]) for d in devices]
            factory_rss = rss_mb(factory.process.pid)

            deletes: list[float] = []
            refused = 0
            for d in devices:
                started = time.perf_counter()
                try:
                    client.delete(d["prefix"])
                except DeviceError as exc:
                    if "process object is closed" not in str(exc):
                        raise
                    refused += 1
                deletes.append(time.perf_counter() - started)
                if not gone(d["pid"]):
                    raise RuntimeError(f"{d['prefix']}: pid {d['pid']} still runs after DELETE")
    finally:
        factory.stop()  # the factory closes any device still alive, then exits
    bare_rss_median = statistics.median(bare_rss)
    return [
        Result("factory CREATE to ready", creates, [b[0] for b in bare_starts],
               "bare p4p, 1 PV", limit=CREATE_LIMIT),
        Result(f"RSS per device process, {count} alive", device_rss, bare_rss,
               "bare p4p, 1 PV", unit="MB"),
        Result(f"factory RSS, {count} devices alive", [factory_rss], [bare_rss_median],
               "bare p4p, 1 PV (median)", unit="MB"),
        Result("factory DELETE to process gone"
               + (f" ({refused} of {count} refused: process object is closed)" if refused else ""),
               deletes, [b[1] for b in bare_starts],
               "bare p4p, stdin closed"),
    ]
