"""``python -m bench`` (``make bench``): run every benchmark with its bare-p4p baseline side by
side, print the results, and write them to docs/performance.md (``--quick``: fewer
iterations, printed only, so a quick check never replaces the recorded numbers)."""

# First of all, before anything creates an EPICS context: loopback only, with ports of this
# run's own; every process the benchmarks start inherits these variables.
from epics_meta_devices.testing import use_loopback_environment

use_loopback_environment()

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.metadata  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

from . import collector, device_start, factory, ping_roundtrip  # noqa: E402
from ._common import HEADER, ROOT, Result  # noqa: E402

REPORT = ROOT / "docs" / "performance.md"

TARGETS = f"""\
- Ping round trip through a ping.Ping device: median at most {ping_roundtrip.TARGET:g}x that of a
  bare p4p echo server with the same PV types, pinged by the same client code.
- Device start and close: no target yet; the bare-p4p ratio shows what the device machinery
  (imports, plugin loading, the prefix probe, seven default PVs) adds to a process start.
- Factory CREATE to ready: median at most {factory.CREATE_LIMIT * 1e3:g} ms. Memory and DELETE:
  no target yet; the bare-p4p ratios show what a device process and a factory cost.
- Collector ingest: CPU per update at most {collector.CPU_TARGET:g}x that of a bare p4p
  thread-client monitor of the same PVs, and no update lost: every update the IOC sent between
  a PV's first and last stored sample is kept (received = stored, nothing dropped, no gaps).
- Collector memory: STATUS memory_bytes / samples at most {collector.MEMORY_LIMIT:g} bytes per
  stored scalar sample after the ingest.
- Collector retrieval: a get of the OUT columns at most {collector.RETRIEVAL_TARGET:g}x a plain
  get of an NTScalarArray of as many doubles. The history field and first gets: no target yet.
- Collector ingest while OUT PVs are read (polled by gets, or watched by a monitor): CPU per
  update at most {collector.POLL_TARGET:g}x that without readers (10 % slower). CPU per get: no
  target yet.
"""


def machine() -> str:
    """One line per fact about where the numbers were taken."""
    return "\n".join([
        f"- Machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs"
        + (f" ({platform.processor()})" if platform.processor() else ""),
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"p4p {importlib.metadata.version('p4p')}, "
        f"epics-meta-devices {importlib.metadata.version('epics-meta-devices')}",
        "- EPICS on loopback only (127.0.0.1, private search and server ports)",
    ])


def table(results: list[Result], markdown: bool) -> str:
    """The results as a markdown table, or as aligned text columns."""
    rows = [HEADER] + [r.cells() for r in results]
    if markdown:
        lines = ["| " + " | ".join(row) + " |" for row in rows]
        lines.insert(1, "|" + "---|" * len(HEADER))
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


def write_report(results: list[Result], settings: str, seconds: float) -> None:
    REPORT.parent.mkdir(exist_ok=True)
    full = collector.FULL
    REPORT.write_text(f"""\
# Performance

Measured {datetime.datetime.now().astimezone().isoformat(timespec="seconds")} with

    make bench

(`python -m bench` from the repository root; {settings}; {seconds:.0f} s in all).

{machine()}

## Results

Times in milliseconds, memory (RSS) in MB of 10^6 bytes, CPU time in microseconds (us),
memory per sample in bytes (B), counts in updates, as the unit column says. Every benchmark is
measured with its baseline in the same run, alternating between the two where they could
disturb each other (the collector's ingest windows run one after the other); the ratio is
device median / baseline median. p99 is the maximum when there are fewer than 100 samples.

{table(results, markdown=True)}

- **ping round trip**: `emd_ping.PingClient.ping()` (put to `PREFIX:PING`, wait for the
  `PREFIX:PONG` update) against a `ping.Ping` device run with `emd device run`, and against
  `python -m bench.bare_echo` (two p4p SharedPVs, same types, the put handler posts on PONG).
- **start to default PVs answering**: from spawning `emd device run ping.Ping PREFIX` until a
  get of all seven default PVs (TYPE STATE UUID CONFIG INFO ENABLE CLOSE) succeeds, against a
  `python -c` process that imports p4p and serves one SharedPV.
- **close**: from the put to `PREFIX:CLOSE` until the device process exits, against closing
  the bare server's standard input until it exits.
- **factory**: a factory run with `emd factory run` in its own process, driven by a
  `FactoryClient`. CREATE: `client.create("ping.Ping", ...)` until it returns (the device's
  process serves its PVs), one at a time, against the bare start above. RSS: VmRSS of every
  device process (pids from DEVICES) and of the factory with all devices alive, against bare
  servers read while they serve. DELETE: `client.delete(...)` until it returns (after the
  process exited; checked gone), against the bare close above.
- **collector ingest** ({full.ingest_pvs} PVs at {collector.RATE:g} Hz for
  {full.ingest_seconds:g} s): a real softIoc (`IocProcess`) serves counting calc records
  (`SCAN .1 second`, `CALC A+1` of their own VAL), so consecutive updates of a record differ by
  exactly 1. A `collect.Collector` (`emd device run`, `max_samples` 1000, `queue_size` 1000)
  is enabled, left for the window and disabled; its CPU time (utime + stime of /proc/PID/stat,
  all threads) from the ENABLE put to the return of the disable put, per update received
  (STATUS). Baseline, in a window of its own just before (the IOC runs throughout):
  `python -m bench.bare_monitor` subscribes to the same PVs with
  `p4p.client.thread.Context('pva', nt=False)` and a callback that only counts, over the same
  kind of window (subscribe, wait, close). Loss: the recording is exported (EXPORT, .npz) and
  every PV's values are checked; "sent" counts the IOC's updates between each PV's first and
  last stored one, from the values themselves.
- **memory per stored scalar sample**: STATUS `memory_bytes / samples` after the ingest,
  against the 24 bytes of one sample's data.
- **retrieval**: one PV, an NTScalar double served by `python -m bench.bare_source`, posted as
  fast as it can in chunks of {collector.CHUNK:,} (each once the previous one was received;
  the collector runs with `queue_size` 100000, `max_samples` 1000000), recorded to
  {" and ".join(f"{n:,}" for n in full.sizes)} samples. At each size: gets of `OUT:<pv>` with
  `field(value,secondsPastEpoch,nanoseconds,severity,status)` (28 bytes per sample) against
  gets of an NTScalarArray of as many doubles (8 bytes each) served by the same bare process,
  alternating, on channels already connected; first gets, each from a new Context (a new
  channel, for which the collector builds its OUT value). At the first size also gets of
  `field(history)` (the structure array), against the same bare array.
- **ingest, OUT watched by a monitor**: during the retrieval fill, from {full.sizes[0]:,}
  samples on, four windows of {full.watch:,} updates each, ABBA: not watched, a
  monitor (columns request) on `OUT:<pv>`, the same, not watched; the collector's CPU per
  update. A watched OUT is rebuilt every publish period (1 s) while its data change.
- **ingest while polling**: {full.poll_pvs} IOC records as above, a collector enabled for four
  windows of {full.poll_seconds:g} s, ABBA: no poller, a poller thread in the benchmark process
  getting `OUT:<pv>` (every field) of 5 of the PVs in a tight loop, the same, none; CPU per
  update received. "CPU per OUT get": the CPU of a polled window above what its updates cost
  unpolled (the lower unpolled figure), per get, against the CPU a bare p4p SharedPV (an
  NTScalarArray of 1000 doubles in `bench.bare_source`) spends per get of the same poller.

## Targets

{TARGETS}""")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="fewer iterations; do not write docs/performance.md"
    )
    args = parser.parse_args()
    pings, warmup, starts, devices = (300, 50, 3, 5) if args.quick else (2000, 100, 10, 20)
    collecting = collector.QUICK if args.quick else collector.FULL
    settings = (f"{pings} pings per side after {warmup} warm-up, {starts} starts per side, "
                f"{devices} factory devices, {collecting}")

    began = time.perf_counter()
    print(f"ping round trip: {settings.split(',')[0]} ...", flush=True)
    results = [ping_roundtrip.run(pings, warmup)]
    print(f"device start and close: {starts} starts per side ...", flush=True)
    results += device_start.run(starts)
    print(f"factory: {devices} devices created, measured and deleted ...", flush=True)
    results += factory.run(devices)
    print(f"{collecting} ...", flush=True)
    results += collector.run(collecting)
    seconds = time.perf_counter() - began

    print()
    print(table(results, markdown=False))
    if args.quick:
        print(f"\n--quick: {REPORT.relative_to(ROOT)} left as it was ({seconds:.0f} s)")
    else:
        write_report(results, settings, seconds)
        print(f"\nwritten to {REPORT.relative_to(ROOT)} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
