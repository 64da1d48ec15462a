"""Time from starting a process to its PVs answering: ``emd device run ping.Ping`` against a
bare python process that imports p4p and serves one SharedPV.

Each start is timed from just before the process is spawned until one get of every PV it
must serve succeeds (polled with short timeouts from a client context made beforehand). The
device is then closed by a put to CLOSE and timed until its process exits; the bare server is
asked to finish by closing its standard input. Device and bare starts alternate.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Callable

from p4p.client.thread import Context

from epics_meta_devices.testing import unique_prefix

from ._common import ROOT, Result, end_process

DEFAULT_PVS = ("TYPE", "STATE", "UUID", "CONFIG", "INFO", "ENABLE", "CLOSE")

BARE_SERVER = """\
import sys
from p4p.nt import NTScalar
from p4p.server import Server
from p4p.server.thread import SharedPV
pv = SharedPV(nt=NTScalar("d"), initial=0.0)
with Server(providers=[{sys.argv[1] + ":VALUE": pv}]):
    sys.stdin.read()
"""
"""The baseline: import p4p, serve PREFIX:VALUE until standard input closes."""


def wait_until_served(
    context: Context, names: list[str], process: subprocess.Popen, timeout: float = 20.0
) -> None:
    """Poll gets of all `names` until every one answers; raise if `process` exits or
    `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answers = context.get(names, timeout=0.02, throw=False)
        if not any(isinstance(answer, Exception) for answer in answers):
            return
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode} before serving")
        context.disconnect()  # fresh channels search at once; retries would back off to 1 s
    raise TimeoutError(f"{names[0]}... not served within {timeout} s")


def time_device(device_type: str = "ping.Ping") -> tuple[float, float]:
    """One ``emd device run``: seconds from spawn to all default PVs answering, and from the
    CLOSE put to the process's exit."""
    prefix = unique_prefix("bench-start")
    command = [sys.executable, "-m", "epics_meta_devices", "device", "run", device_type, prefix]
    with Context("pva", nt=False) as context:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_until_served(context, [f"{prefix}:{name}" for name in DEFAULT_PVS], process)
            serving = time.perf_counter() - started
            closing = time.perf_counter()
            context.put(f"{prefix}:CLOSE", True, timeout=5.0)
            process.wait(10.0)
            return serving, time.perf_counter() - closing
        finally:
            if process.poll() is None:  # only after a failure above: it was not closed
                process.terminate()
            end_process(process)


def time_bare(
    on_served: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> tuple[float, float]:
    """One bare p4p server: seconds from spawn to its PV answering, and from closing its
    standard input to its exit. `on_served(process)`, if given, runs between the two, untimed
    (the factory benchmark reads the server's memory there)."""
    prefix = unique_prefix("bench-bare-start")
    with Context("pva", nt=False) as context:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-c", BARE_SERVER, prefix], cwd=ROOT, stdin=subprocess.PIPE
        )
        assert process.stdin is not None
        try:
            wait_until_served(context, [f"{prefix}:VALUE"], process)
            serving = time.perf_counter() - started
            if on_served is not None:
                on_served(process)
            closing = time.perf_counter()
            process.stdin.close()
            process.wait(10.0)
            return serving, time.perf_counter() - closing
        finally:
            process.stdin.close()  # if not yet, after a failure above: it exits on this
            end_process(process)


def run(starts: int = 10) -> list[Result]:
    """`starts` device starts and as many bare ones, alternating: start and close results."""
    device: list[tuple[float, float]] = []
    bare: list[tuple[float, float]] = []
    for i in range(starts):
        sides = [(time_device, device), (time_bare, bare)]
        for timer, times in sides if i % 2 == 0 else reversed(sides):  # alternate who goes first
            times.append(timer())
    return [
        Result("start to default PVs answering", [d[0] for d in device], [b[0] for b in bare],
               "bare p4p, 1 PV"),
        Result("close (CLOSE put to exit)", [d[1] for d in device], [b[1] for b in bare],
               "bare p4p, stdin closed"),
    ]
