"""The soak (issue 18): a collector recording for many minutes with its rings wrapped, spooling
to HDF5, watched by monitoring clients, while a factory creates and deletes devices; its RSS,
CPU and open file descriptors over time, and the factory's.

Run on its own, not by ``python -m bench`` (it takes ``--minutes``, 10 by default)::

    python -m bench.soak --minutes 10

The baseline is the same run's own early state: each figure at the first sample after every
ring has wrapped, against the last sample. A process that leaks grows past it; one in a steady
state stays at 1.0x. Nothing may be lost on the way: every update the IOC sent is received, no
gaps or disconnects, and the spool counts no lost rows.
"""

# First, before anything creates an EPICS context: loopback only, with ports of this run's own.
from epics_meta_devices.testing import use_loopback_environment

use_loopback_environment()

import argparse  # noqa: E402
import datetime  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from contextlib import ExitStack  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

from p4p.client.thread import Context  # noqa: E402

from epics_meta_devices import FactoryClient  # noqa: E402
from epics_meta_devices.testing import DeviceProcess, unique_prefix  # noqa: E402

from ._common import REPORT, SOAK_HEADING  # noqa: E402
from .collector import cpu_seconds, device, ioc  # noqa: E402
from .factory import rss_mb  # noqa: E402

RSS_TARGET = 1.1
"""RSS at the end at most 10 % above RSS once the rings had wrapped."""
CPU_TARGET = 1.2
"""CPU per second in the last interval at most 20 % above the first interval after the wrap."""


@dataclass(frozen=True)
class Sample:
    """One look at the processes: seconds since the start, then per process RSS (MB), CPU
    seconds used so far and open file descriptors; the collector's STATUS totals."""

    at: float
    collector: tuple[float, float, int]
    factory: tuple[float, float, int]
    status: dict[str, int]


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def look(pid: int) -> tuple[float, float, int]:
    return rss_mb(pid), cpu_seconds(pid), fds(pid)


def spool_status(collector: Any) -> dict[str, Any]:
    """The collector's spool counts (SPOOL:rows_lost, ...) and SPOOL's alarm severity."""
    status = {name: collector.get_pv(f"SPOOL:{name}")["value"]
              for name in ("rows_spooled", "rows_pending", "rows_lost", "failures")}
    status["severity"] = collector.get_pv("SPOOL")["alarm.severity"]
    return status


class Cycler(threading.Thread):
    """Creates and deletes a ping.Ping through the factory, round and round, until stopped."""

    def __init__(self, factory: FactoryClient, prefix: str) -> None:
        super().__init__(name="cycler", daemon=True)
        self.factory, self.prefix, self.cycles = factory, prefix, 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.factory.create("ping.Ping", f"{self.prefix}:cycle").disconnect()
            self.factory.delete(f"{self.prefix}:cycle")
            self.cycles += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(60)


def soak(minutes: float, pvs: int, clients: int, max_samples: int, every: float, write: str = "") -> int:
    prefix = unique_prefix("soak")
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="emd-soak-") as data_root:
        ioc(stack, prefix, pvs)
        names = [f"{prefix}:s{n}" for n in range(pvs)]
        collector, collector_pid = device(stack, {
            "input_pvs": names, "max_samples": max_samples, "spool_file": "soak.h5", "spool_interval": 10.0,
        }, data_root)
        factory_process = DeviceProcess("factory.DeviceFactory", f"{prefix}:factory",
                                        cli=["factory", "run", f"{prefix}:factory"])
        stack.enter_context(factory_process)
        factory_client = FactoryClient(f"{prefix}:factory")
        stack.callback(factory_client.disconnect)
        assert factory_process.process is not None
        factory_pid = factory_process.process.pid

        watchers = [stack.enter_context(Context("pva", nt=False)) for _ in range(clients)]
        updates = [0] * clients

        def counter(index: int) -> Any:
            def count(_: Any) -> None:
                updates[index] += 1
            return count

        collector.enable()
        collector_prefix = collector.prefix
        for index, context in enumerate(watchers):  # STATUS and one OUT column set each
            for name in (f"{collector_prefix}:STATUS", f"{collector_prefix}:OUT:{names[index % pvs]}"):
                subscription = context.monitor(name, counter(index))
                stack.callback(subscription.close)
        cycler = Cycler(factory_client, prefix)
        cycler.start()
        stack.callback(cycler.stop)

        started, samples = time.monotonic(), []
        wrap_after = max_samples / 10.0 + every  # 10 Hz sources: every ring full by then
        while time.monotonic() - started < minutes * 60:
            time.sleep(every)
            status = collector.get_pv("STATUS").todict()
            samples.append(Sample(time.monotonic() - started, look(collector_pid), look(factory_pid), status))
            s = samples[-1]
            print(f"{s.at:7.0f} s  collector RSS {s.collector[0]:7.1f} MB cpu {s.collector[1]:7.1f} s "
                  f"fds {s.collector[2]:4d} | factory RSS {s.factory[0]:6.1f} MB fds {s.factory[2]:4d} | "
                  f"received {status['received']:,} dropped {status['dropped']:,} gaps {status['gaps']} "
                  f"disconnects {status['disconnects']} | cycles {cycler.cycles}", flush=True)
        cycler.stop()
        spool = spool_status(collector)
    return report(samples, wrap_after, cycler.cycles, updates, spool, write)


def report(samples: list[Sample], wrap_after: float, cycles: int, updates: list[int], spool: dict[str, Any],
           write: str) -> int:
    """Print the ratios against the first sample after the wrap (and write them into the
    report's soak section with the samples, `write` saying how the run was made); 1 if a
    target was missed."""
    wrapped = [s for s in samples if s.at >= wrap_after]
    if len(wrapped) < 3:
        print(f"too short: the rings wrap after {wrap_after:.0f} s; run longer")
        return 1
    base, second, last = wrapped[0], wrapped[1], wrapped[-1]
    rss = last.collector[0] / base.collector[0]
    cpu_first = (second.collector[1] - base.collector[1]) / (second.at - base.at)
    cpu_last = (last.collector[1] - samples[-2].collector[1]) / (last.at - samples[-2].at)
    status = last.status
    lost = status["gaps"] + status["disconnects"] + int(spool["rows_lost"])
    checks = {
        f"collector RSS {base.collector[0]:.1f} -> {last.collector[0]:.1f} MB: {rss:.2f}x (<= {RSS_TARGET}x)":
            rss <= RSS_TARGET,
        f"collector CPU {cpu_first:.3f} -> {cpu_last:.3f} s/s: {cpu_last / cpu_first:.2f}x (<= {CPU_TARGET}x)":
            cpu_last <= CPU_TARGET * cpu_first,
        f"collector fds {base.collector[2]} -> {last.collector[2]}": last.collector[2] <= base.collector[2],
        f"factory RSS {base.factory[0]:.1f} -> {last.factory[0]:.1f} MB, fds {base.factory[2]} -> "
        f"{last.factory[2]} over {cycles} create/delete cycles": last.factory[2] <= base.factory[2]
        and last.factory[0] <= RSS_TARGET * base.factory[0],
        f"{len(updates)} monitoring clients, fewest updates received {min(updates)}": min(updates) > 0,
        f"lost: gaps {status['gaps']}, disconnects {status['disconnects']}, spool rows lost "
        f"{spool['rows_lost']} (spooled {spool['rows_spooled']:,}, SPOOL severity {spool['severity']})":
            lost == 0 and spool["severity"] == 0,
    }
    summary = [f"soak: {samples[-1].at / 60:.1f} min, {len(updates)} monitoring clients, baseline at {base.at:.0f} s "
               "(rings wrapped)"] + [f"{'ok' if ok else 'MISSED'}: {line}" for line, ok in checks.items()]
    print("\n" + "\n  ".join(summary))
    if write:
        write_section(write, samples, summary)
    return 0 if all(checks.values()) else 1


def write_section(how: str, samples: list[Sample], summary: list[str]) -> None:
    """Put this run in the report's soak section, in place of the last one."""
    rows = "\n".join(
        f"| {s.at:.0f} | {s.collector[0]:.1f} | {s.collector[1]:.1f} | {s.collector[2]} | {s.factory[0]:.1f} | "
        f"{s.factory[2]} | {s.status['received']:,} | {s.status['dropped']:,} | {s.status['gaps']} |"
        for s in samples)
    section = f"""{SOAK_HEADING}
Measured {datetime.datetime.now().astimezone().isoformat(timespec="seconds")} with `{how}` on
{platform.platform()}, {os.cpu_count()} CPUs. Baseline: the same run once every ring had
wrapped; ratios are the end against it.

{chr(10).join(f"- {line}" for line in summary)}

| s | collector RSS MB | collector CPU s | collector fds | factory RSS MB | factory fds | received | dropped (ring) | gaps |
|---|---|---|---|---|---|---|---|---|
{rows}
"""
    text = REPORT.read_text()
    REPORT.write_text(text.partition(SOAK_HEADING)[0].rstrip("\n") + "\n" + section)
    print(f"written to the soak section of {REPORT.name}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--pvs", type=int, default=500, help="counting IOC records at 10 Hz")
    parser.add_argument("--clients", type=int, default=20, help="monitoring clients")
    parser.add_argument("--max-samples", type=int, default=600, help="ring size per PV (60 s at 10 Hz)")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--write", action="store_true", help=f"put the figures into {REPORT.name}")
    arguments = parser.parse_args()
    how = (f"python -m bench.soak --minutes {arguments.minutes:g} --pvs {arguments.pvs} --clients "
           f"{arguments.clients} --max-samples {arguments.max_samples}")
    raise SystemExit(soak(arguments.minutes, arguments.pvs, arguments.clients, arguments.max_samples,
                          arguments.every, how if arguments.write else ""))


if __name__ == "__main__":
    main()
