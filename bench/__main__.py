"""``python -m bench`` (``make bench``): run every benchmark with its bare-p4p baseline side by
side, print the results, and write them to docs/performance.md (``--quick``: fewer
iterations, printed only, so a quick check never replaces the recorded numbers; ``--only
NAME``: run only those benchmarks and put their rows in place of theirs in the report)."""

# First of all, before anything creates an EPICS context: loopback only, with ports of this
# run's own; every process the benchmarks start inherits these variables.
from epics_meta_devices.testing import use_loopback_environment

use_loopback_environment()

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.metadata  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from typing import Callable  # noqa: E402

from . import (  # noqa: E402
    access, bluesky, ca_sources, collector, device_start, factory, hdf5_export, ping_roundtrip, processing,
)
from ._common import HEADER, REPORT, ROOT, Result, soak_section  # noqa: E402

TARGETS = f"""\
- Ping round trip through a ping.Ping device: median at most {ping_roundtrip.TARGET:g}x that of a
  bare p4p echo server with the same PV types, pinged by the same client code.
- Access security: a ping round trip (a put checked against an ACF) at most {access.TARGET:g}x
  that through the same device type run without an ACF.
- Device start and close: no target yet; the bare-p4p ratio shows what the device machinery
  (imports, plugin loading, the prefix probe, the default PVs) adds to a process start.
- Factory CREATE to ready: median at most {factory.CREATE_LIMIT * 1e3:g} ms. Memory and DELETE:
  no target yet; the bare-p4p ratios show what a device process and a factory cost.
- Collector ingest: CPU per update at most {collector.CPU_TARGET:g}x that of a bare p4p
  thread-client monitor of the same PVs, and no update lost: every update the IOC sent between
  a PV's first and last stored sample is kept (received = stored, nothing dropped, no gaps).
- Collector memory: STATUS memory_bytes / samples at most {collector.MEMORY_LIMIT:g} bytes per
  stored scalar sample after the ingest.
- Collector retrieval: a get of the OUT columns at most {collector.RETRIEVAL_TARGET:g}x a plain
  get of the same bytes (a structure of as many doubles and int64). The issue names an
  NTScalarArray of as many doubles, half the bytes: that ratio is shown without a target (see
  retrieval below). The history field and first gets: no target yet.
- Collector ingest while OUT PVs are read (polled by gets once per publish period, or watched
  by a monitor): CPU per update at most {collector.POLL_TARGET:g}x that without readers (10 %
  slower). A tight-loop poller and CPU per get: no target.
- Collector ingest with spooling to HDF5 on: CPU per update at most
  {collector.SPOOL_TARGET:g}x that with spooling off (10 % slower).
- Collector ingest of Channel Access (`ca://`) PVs from a CA-only IOC: CPU per update at most
  {ca_sources.CPU_TARGET:g}x that of a bare aioca monitor of the same PVs that only counts, and no
  update lost. The highest rate one CA PV is recorded at without loss: measured, no target.
- HDF5 export: `Hdf5Exporter.export` at most {hdf5_export.TARGET:g}x the time plain h5py takes to
  write the same data datasets with the same chunks and filters, for each compression.
- Processing latency, from an input update to the output post of a ProcessingDevice (Y = x):
  median at most {processing.TARGET:g}x that of a bare p4p monitor-to-post relay. p99: no
  target (reported beside it).
- Fly-scan collect through emd-ophyd: `Collector.collect_pages` of {bluesky.SAMPLES:,} samples of
  one PV at most {bluesky.COLLECT_TARGET:g}x a bare p4p get of the same PV's TABLE.
- CONFIG field put: a put to `CONFIG:<field>` at most {bluesky.CONFIG_TARGET:g}x a put of the
  CONFIG structure with that field.
"""
BENCHMARKS = ("ping", "access", "start", "factory", "collector", "ca", "hdf5", "processing", "bluesky")
"""The names `--only` takes, in the order of the report."""
ROWS = {
    "ping": ("ping round trip",),
    "access": ("access check per put",),
    "start": ("start to default PVs answering", "close (CLOSE put to exit)"),
    "factory": ("factory ", "RSS per device process"),
    "collector": ("ingest ", "memory per stored scalar sample", "get OUT ", "first get OUT ",
                  "CPU per OUT get"),
    "ca": ("CA ",),
    "hdf5": ("HDF5 export",),
    "processing": ("processing ",),
    "bluesky": ("fly-scan collect", "CONFIG field put"),
}
"""How the report's rows of each benchmark begin: `--only` replaces those of what it runs."""


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


def table(cells: list[list[str]], markdown: bool) -> str:
    """Result rows (`Result.cells`) as a markdown table, or as aligned text columns."""
    rows = [HEADER] + cells
    if markdown:
        lines = ["| " + " | ".join(row) + " |" for row in rows]
        lines.insert(1, "|" + "---|" * len(HEADER))
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def heading(settings: str, seconds: float) -> str:
    """The report's first part, up to its results: when, how and where."""
    return f"""\
# Performance

Measured {now()} with

    make bench

(`python -m bench` from the repository root; {settings}; {seconds:.0f} s in all).

{machine()}
"""


def row_of(name: str) -> str | None:
    """The benchmark (a key of ROWS) whose rows begin like `name`, if any."""
    return next((key for key, starts in ROWS.items() if name.startswith(starts)), None)


def merged(only: list[str], results: list[Result], settings: str, seconds: float,
           ) -> tuple[str, list[list[str]]]:
    """The report's heading and rows with the rows of the `only` benchmarks replaced by
    `results`: the other rows and the heading as the report has them, plus a line in the
    heading saying what was measured when. ValueError when that cannot be done safely."""
    text = REPORT.read_text()
    head, found, rest = text.partition("\n## Results\n")
    if not found:
        raise ValueError(f"{REPORT.name} has no '## Results' section")
    lines = rest.split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith("| benchmark |")), None)
    if start is None or lines[start] != "| " + " | ".join(HEADER) + " |":
        raise ValueError(f"{REPORT.name} has no results table with the columns of this version")
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    old = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[start + 2:end]]
    if any(len(row) != len(HEADER) for row in old):
        raise ValueError(f"{REPORT.name}: a table row has not {len(HEADER)} cells")
    strays = [r.name for r in results if row_of(r.name) not in only]
    if strays:  # would be left beside the rows they replace next time
        raise ValueError(f"rows of no benchmark run: {', '.join(strays)}")
    rows = []
    for key in BENCHMARKS:
        rows += [r.cells() for r in results if row_of(r.name) == key] if key in only \
            else [row for row in old if row_of(row[0]) == key]
    rows += [row for row in old if row_of(row[0]) is None]  # none of ours: kept as they are
    names = ", ".join(only)
    note = (f"The rows of {names} are from `python -m bench --only {' '.join(only)}`, run "
            f"{now()} ({settings}; {seconds:.0f} s).")
    kept = []
    for line in head.rstrip("\n").split("\n"):  # earlier notes: drop the rows replaced now
        m = re.match(r"The rows of (.*?) are from (`python -m bench --only .*)", line)
        if m:
            left = [name for name in m.group(1).split(", ") if name not in only]
            if not left:
                continue
            line = f"The rows of {', '.join(left)} are from {m.group(2)}"
        kept.append(line)
    return "\n".join(kept).rstrip("\n") + "\n\n" + note + "\n", rows


def write_report(head: str, rows: list[list[str]]) -> None:
    REPORT.parent.mkdir(exist_ok=True)
    soak = soak_section()  # measured by python -m bench.soak, not here
    full = collector.FULL
    hdf5 = hdf5_export.FULL
    REPORT.write_text(f"""\
{head}
## Results

Times in milliseconds (export times in seconds, s), memory (RSS) in MB of 10^6 bytes, CPU
time in microseconds (us), memory per sample in bytes (B), counts in updates, as the unit
column says. Every benchmark is measured with its baseline in the same run, alternating
between the two where they could disturb each other (the collector's ingest windows run one
after the other); the ratio is device median / baseline median. p99 is the maximum when
there are fewer than 100 samples.

{table(rows, markdown=True)}

- **ping round trip**: `emd_ping.PingClient.ping()` (put to `PREFIX:PING`, wait for the
  `PREFIX:PONG` update) against a `ping.Ping` device run with `emd device run`, and against
  `python -m bench.bare_echo` (two p4p SharedPVs, same types, the put handler posts on PONG).
- **access check per put**: the ping round trip above, through a `ping.Ping` device run with
  `--acf` (a beamline's file: operators write, everyone reads; the benchmark's user is the
  operator, so every put is checked and accepted) against one run without, alternating.
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
  is enabled and, after {collector.SETTLE:g} s (its 1000 channels connected), its CPU time
  (utime + stime of /proc/PID/stat, all threads) is taken over the window, then it is
  disabled; per update received in the window (the exported samples stamped inside it).
  Baseline, in two windows of half that length, just before and just after the collector's
  (the IOC runs throughout): `python -m bench.bare_monitor` subscribes to the same PVs with
  `p4p.client.thread.Context('pva', nt=False)` and a callback that only counts; after the same
  settling time, its CPU and count over the window. So neither side's figure holds subscribing
  or unsubscribing, only steady monitoring. Each bare window is a fresh process, killed after
  it: closing 1000 thread-client subscriptions while updates arrive hung (in p4p)
  once in a few windows. Unpinned, as the target was set (pinning both sides to one CPU and
  the IOC to the other lowers both; before the collector's drain thread waited for bursts,
  the thread client's more). The collector's drain thread, once woken, waits 20 ms and then
  records every queued update: one wake-up per IOC scan, not per update. The three windows run twice (a window's CPU varies by
  about 10 % here); medians of the two rounds. Loss: the first round's recording is exported
  (EXPORT, .npz) and every PV's values are checked; "sent" counts the IOC's updates between
  each PV's first and last stored one, from the values themselves.
- **memory per stored scalar sample**: STATUS `memory_bytes / samples` after the ingest,
  against the 20 bytes of one sample's data (value 8, time_ns 8, severity 2, status 2).
- **retrieval**: one PV, an NTScalar double served by `python -m bench.bare_source`, posted as
  fast as it can in chunks of {collector.CHUNK:,} (each once the previous one was received;
  the collector runs with `queue_size` 100000, `max_samples` 1000000), recorded to
  {" and ".join(f"{n:,}" for n in full.sizes)} samples. At each size: gets of `OUT:<pv>` with
  `field(value,time_ns,alarm_row,alarm_severity,alarm_status)` (every column: 16 bytes per
  sample, and 12 bytes per alarm change; this source raises no alarm) against gets of an
  NTScalarArray of as many doubles (8 bytes each) served by the same bare process,
  and against gets of a structure of as many doubles and as many int64 (`PAIR`: the same
  bytes as the value and time columns), alternating, on channels already connected; first
  gets, each from a new Context (a new channel, for which the collector builds its OUT value).
  The issue sets its 2x against the array of doubles; but value and exact time are 16 bytes a
  sample against the array's 8, so that ratio is 2x for the data alone (a pure p4p pair of
  processes gets 2M doubles in 1.96-2.21x the time of 1M), and no layout that keeps exact
  timestamps can meet it with any margin. So the target is applied to the same bytes (PAIR),
  and the ratio to the array is shown on its own row. At the first size also gets of
  `field(history)` (the structure array), against the same bare array. Large gets depend on
  glibc in the benchmark (client) process: with its default thresholds it gives the memory of
  a large get back to the kernel and faults it in again at the next one; the benchmark keeps
  glibc's defaults, as a user's client has them.
- **ingest lossless rate**: the fastest rate at which the retrieval fills above were
  recorded without loss (received = posted, no gaps, nothing dropped: sizes that lost updates
  are left out), against the rate `bench.bare_source` posts at with no subscriber at all, the
  ceiling of this single Python producer. A rate, so higher is better: the ratio is the share
  of the producer's ceiling the collector keeps up with.
- **ingest, OUT watched by a monitor**: during the retrieval fill, from {full.sizes[0]:,}
  samples on, eight windows of {full.watch:,} updates each, ABBA ABBA: not watched,
  a monitor (columns request) on `OUT:<pv>`, the same, not watched; the collector's CPU per
  update, with the collector pinned to one CPU and the source and the benchmark process to
  another. A watched OUT is rebuilt every publish period (1 s) while its data change. Where
  the extra goes (a trial, CPU per thread from /proc/PID/task over eight such windows): three
  quarters of the collector's CPU is pvxs's client TCP thread receiving the updates, on both
  sides; watching added about 9 %: the publishing thread's rebuilds (about 34 ms each at
  100k-500k samples, 28 ms of it making the 10,000 `history` structures, all of them new each
  period for a PV this fast, though this monitor asks only for the columns), pvxs's server
  TCP thread sending each 2-8 MB value (about 26 ms a post), and a little more receiving.
  With `history_limit` 1 the same windows gave 1.09x, so the columns alone, sent whole at
  every period, are most of it.
- **collector windows** (ingest, polling and spooling): the collector is enabled, and after
  {collector.SETTLE:g} s (its channels connected) its CPU is taken over the window; then it is
  disabled. So no window holds subscribing or unsubscribing (for 200 PVs about 40 ms of CPU
  that varies, which made the earlier enable-to-disable windows differ by 10 %). The updates
  of a window are the samples of an export (EXPORT, .npz, after it) stamped inside it.
- **ingest while polling**: the ingest's {full.ingest_pvs} IOC records (the issue's "ingest
  slowed by at most 10 % while a client polls OUT PVs" is about that ingest), a collector with
  `max_samples` {full.poll_samples} recording in windows of {full.poll_seconds:g} s, pinned as
  the watched OUT above. The windows begin once every buffer is full, so each polled OUT
  carries a {full.poll_samples}-sample history throughout (in earlier runs the history grew
  from window to window, and so did the polled windows' cost). First ABBA ABBA: no poller, a
  poller thread in the benchmark process getting `OUT:<pv>` (every field, history too) of 5 of
  the PVs once every publish period ({collector.PUBLISH_PERIOD:g} s, how often OUT changes: a
  client refreshing its plots), the same, none; then two windows with the poller in a tight
  loop, a stress figure without a target (polling faster than OUT changes gets the same
  values again, and the collector's CPU goes to answering gets, not to ingest). CPU per
  update received. "CPU per OUT get": the CPU of a tight-loop window above what its updates
  cost unpolled (the lower unpolled figure), per get, against the CPU a bare p4p SharedPV (an
  NTScalarArray of as many doubles in `bench.bare_source`) spends per get of the same poller.
  What a polled OUT costs, measured alone: a rebuild of its 1000-sample history about 0.75 ms
  (p4p copies every structure into the new value; freeing the previous one is about 0.1 ms),
  and a get about 0.3 ms (pvxs serialises every structure). So one OUT polled at 1 Hz costs
  about what recording 4 PVs at 10 Hz costs, whatever the number of PVs recorded: with 200
  PVs recorded, 5 such OUT are 10-20 % of the ingest (trials: 1.19x polling every field, 1.13x
  the columns only, 1.08x `OUT:<pv>:TABLE`), with 1000 PVs a few percent. The price is the
  `history` field's (a rebuild cannot tell whether a client will ask for it); with
  `history_limit` low it goes.
- **ingest CPU per update, spooling to HDF5**: {full.spool_pvs} IOC records as above,
  recorded by two collectors in turn, sixteen windows of
  {collector.SPOOL_WINDOW:g} s (ABBA ABBA, then ABBA ABBA): one with CONFIG `spool_file` set,
  spool_interval {collector.SPOOL_INTERVAL:g} s (the default) and the emd-hdf5 spool defaults
  (no compression, 16 KiB chunks), one without; halfway they swap roles (CONFIG), so that what
  differs between the two processes does not count as spooling. The spool's clock starts at
  ENABLE, so each window holds exactly two appends of a whole interval each. The spooling
  collector keeps its file open while disabled, as it does in use; an untimed first window of
  each role connects its channels (and makes the file and its groups). Both collectors are
  pinned to one CPU, the IOC and the benchmark process to another. Per interval the spool
  appends to four datasets of every PV (set the extent, hand HDF5 the column's last chunk,
  kept in memory: about 8-10 us each here, nearly all of it HDF5's own per-call cost, whatever
  the chunk size) and flushes the file (SWMR; about 2-3 ms for 200 PVs), so with 10 Hz PVs
  the cost per update falls as the interval grows.
- **CA ingest** (1000 PVs at {collector.RATE:g} Hz for 30 s): as the collector ingest above,
  with the same counting records served by EPICS base's softIoc without any PVAccess server
  (`IocProcess(ca_only=True)`), recorded as `ca://` inputs; the baseline is
  `python -m bench.bare_ca_monitor aioca` (aioca `camonitor`, DBR_TIME, `all_updates=True`, a
  callback that counts and notes value jumps). The collector reads CA through `CaFeed`, on libca
  itself (epicscorelibs' `ca.cadef`, the layer under aioca): libca's thread copies each update
  into a tuple and queues it for the drain thread, with no Python value object and no asyncio
  hop per update; through aioca's `camonitor` (as the first version did) the collector cost
  1.25x the bare monitor. **CA lossless rate**: a producer in the benchmark process puts 0, 1,
  2, ... to one longout (aioca puts that do not wait) for {ca_sources.LOSSLESS_SECONDS:g} s at
  each of {", ".join(map(str, ca_sources.RATES))} Hz (0: unpaced, as fast as the producer puts,
  3.7-5.7 kHz here); the collector must store every value, in order; the highest put rate
  achieved that was. Unpaced, one run stored all 8000, another lost 6: the IOC merged them
  under CA flow control, which no CA client can see (DBR_TIME carries no sequence number).
- **HDF5 export** ({hdf5.pvs} PVs x {hdf5.samples:,} samples, median of {hdf5.runs} runs per
  side): a `Recording` built in the benchmark process from NumPy arrays (per PV float64 value,
  int64 time_ns, int16 severity and status, as the collector stores them; no EPICS), exported
  with `emd_hdf5.Hdf5Exporter().export()` (compression gzip level {hdf5_export.LEVEL}, lzf or
  none, `chunk_bytes` {hdf5_export.CHUNK_BYTES:,}), against plain h5py writing, to a file of its
  own, one group per PV with the datasets that carry the data: time, value, alarm_severity
  and alarm_status, with
  the exporter's chunk rows (`chunk_bytes` // item size), compression and shuffle. Once per
  compression, untimed, both files are written and compared dataset by dataset (shape, dtype,
  chunks, filters, data); then the two sides alternate, each file removed after its run (all
  in a temporary directory). Wall time of the whole export, file closed (no fsync); the
  exporter's time includes its NeXus metadata, cues, statistics and its atomic rename.
  Without compression the writes run at page-cache speed (about 2.5 GB/s here) and the
  exporter's fixed work shows: about 25 ms for 10 PVs (some 220 attributes at about 30 us each
  in HDF5, 90 small datasets, 20 groups). Two things pay for it: uncompressed numeric columns
  go to HDF5 a whole chunk at a time (H5Dwrite_chunk, about 20 % faster than h5py's
  whole-array write, which the baseline uses), and a second thread computes the next PV's time
  column and min/max/mean while this one writes. With gzip (the default) and lzf, compression
  dominates and h5py's writes are used. The exporter writes to a new temporary file:
  when it truncated one (mkstemp, then h5py's "w"), ext4 flushed the whole file to disk at
  close (auto_da_alloc) and the uncompressed export took 2x.
- **processing latency**: a `bench.Relay` ProcessingDevice (one input `x`, one output
  `Y = x`, default CONFIG: trigger `any`, `queue_size` 64; loaded from `bench/_relay_device.py`
  through `EMD_PLUGINS`) run with `emd device run`, against `python -m bench.bare_relay` (a
  `p4p.client.thread.Context('pva', nt=False)` monitor of its source with the same request,
  `record[queueSize=64,pipeline=true]`, whose callback posts the value with the update's
  timestamp and alarm on a SharedPV of the same type). The benchmark process serves one source
  PV (NTScalar double) per side and monitors both outputs; one sample posts the next number on
  a source, stamped now, and waits for the output update carrying it (checked: same value and
  timestamp); latency is from just before the post to the output monitor's callback. One
  sample at a time, in alternating blocks. With two or more CPUs the benchmark process is
  pinned to one CPU and both relay processes to another (unpinned, the scheduler's placement
  of their threads favoured one side or the other for a few hundred ms at a time: run ratios
  from 0.88x to 1.26x). Where the device's extra time goes (some 45-55 us; timestamps taken
  in the device process): the hand-off from p4p's monitor worker to the device's work queue,
  a thread wake-up of 15-25 us (against a bare relay given the same hand-off to a
  `ThreadedWorkQueue` the device measured 1.07-1.09x), and the processing bookkeeping
  (InputSample, trigger and alarm checks, `_evaluate`, `DevicePV` wrap): about 6 us more than
  the bare callback in a hot loop, some 25 us in place, where each paced update runs on cold
  caches. `SharedPV.post` costs the same on both sides.
- **fly-scan collect**: a `collect.Collector` (`emd device run`) records one PV of
  `python -m bench.bare_source` in an ACQUIRE run that `emd_ophyd.Collector.kickoff` starts
  and that ends at `acquire_samples` {bluesky.SAMPLES:,} (the source posts them as fast as it
  can). Then, alternating: a bare `p4p.client.asyncio.Context` get of `OUT:<pv>:TABLE` on a
  channel kept open, and `collect_pages()` of the emd-ophyd Collector from the run's first row
  (a get of the run's `OUT:<pv>:ROWS:<first>`, the channel kickoff opened, with the columns a
  page needs: row, time, value, severity, status, the same 32 bytes a row as the TABLE's five
  columns; and the event page made of them, NumPy arrays). What made it 1.0x: the page's
  times are the ROWS `time` column, which the collector computes as EPICS clients do
  (`secondsPastEpoch + nanoseconds * 1e-9`), where the first version divided `time_ns` in the
  client (int64 divmod, about 1.1 ms per 100,000 rows: 1.5x); lists instead of arrays cost
  about 10 ms more, and a new channel per collect (one search) about 12 ms.
- **CONFIG field put**: one `ping.Ping` device (not enabled); `p4p.client.thread` puts with
  wait of `CONFIG:delay` (an NTScalar, as ophyd-async's CONFIG signals write) against puts of
  `CONFIG` with `{{"delay": ...}}`, the value changing at each put, in alternating blocks.

## Targets

{TARGETS}{soak}""")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="fewer iterations; do not write docs/performance.md"
    )
    parser.add_argument(
        "--only", nargs="+", choices=BENCHMARKS, metavar="NAME",
        help=f"run only these ({', '.join(BENCHMARKS)}); their rows replace theirs in "
             "docs/performance.md, the rest of it is kept",
    )
    args = parser.parse_args()
    only = [name for name in BENCHMARKS if name in (args.only or BENCHMARKS)]
    pings, warmup, starts, devices = (300, 50, 3, 5) if args.quick else (2000, 100, 10, 20)
    collecting = collector.QUICK if args.quick else collector.FULL
    exporting = hdf5_export.QUICK if args.quick else hdf5_export.FULL
    relays, relay_warmup, relay_blocks = (1000, 100, 20) if args.quick else (5000, 200, 50)
    collects, config_puts = (5, 200) if args.quick else (20, 1000)
    # name -> (what it does, for the report and the progress lines; how to run it)
    plan: dict[str, tuple[str, Callable[[], list[Result]]]] = {
        "ping": (f"{pings} pings per side after {warmup} warm-up",
                 lambda: [ping_roundtrip.run(pings, warmup)]),
        "access": (f"{pings} pings per side after {warmup} warm-up, with and without an ACF",
                   lambda: [access.run(pings, warmup)]),
        "start": (f"{starts} starts per side", lambda: device_start.run(starts)),
        "factory": (f"{devices} factory devices", lambda: factory.run(devices)),
        "collector": (str(collecting), lambda: collector.run(collecting)),
        "ca": ("1000 CA PVs at 10 Hz, and one CA PV at rising rates" if not args.quick else "200 CA PVs",
               lambda: ca_sources.run(args.quick)),
        "hdf5": (str(exporting), lambda: hdf5_export.run(exporting)),
        "processing": (f"{relays} relayed updates per side after {relay_warmup} warm-up",
                       lambda: [processing.run(relays, relay_warmup, relay_blocks)]),
        "bluesky": (f"{bluesky.SAMPLES:,} samples collected {collects} times per side, "
                    f"{config_puts} CONFIG puts per side",
                    lambda: [bluesky.run_collect(collects), bluesky.run_config(config_puts)]),
    }
    settings = ", ".join(plan[name][0] for name in only)

    began = time.perf_counter()
    results: list[Result] = []
    for name in only:
        text, run = plan[name]
        print(f"{name}: {text} ...", flush=True)
        results += run()
    seconds = time.perf_counter() - began

    rows = [r.cells() for r in results]
    print()
    print(table(rows, markdown=False))
    report = REPORT.relative_to(ROOT)
    if args.quick:
        print(f"\n--quick: {report} left as it was ({seconds:.0f} s)")
    elif args.only:
        try:
            head, rows = merged(only, results, settings, seconds)
        except (OSError, ValueError) as error:
            print(f"\n{report} left as it was: cannot put these rows in it ({error})")
            raise SystemExit(1)
        write_report(head, rows)
        print(f"\nrows of {', '.join(only)} replaced in {report} ({seconds:.0f} s)")
    else:
        write_report(heading(settings, seconds), rows)
        print(f"\nwritten to {report} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
