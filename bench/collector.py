"""collect.Collector benchmarks: ingest from a real IOC (CPU per update, loss, memory per
sample), retrieval of a long history, and ingest while a client polls OUT PVs.

Every collector runs with ``emd device run`` in a process of its own (DeviceProcess); its CPU
time is read from /proc/PID/stat (utime + stime, all threads) around what is measured. The
IOC is a real softIoc (IocProcess) whose calc records count their own scans, so the values a
collector stored tell exactly how many updates the IOC sent between the first and the last.
"""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emd_collector import load_npz
from p4p.client.thread import Context

from epics_meta_devices import DeviceClient
from epics_meta_devices.testing import DeviceProcess, IocProcess, unique_prefix, wait_until

from ._common import Result, ask, separate_cpus, start_helper, stop_helper
from .factory import rss_mb

RATE = 10.0
"""Updates per second of every IOC record (SCAN .1 second)."""
RECORD = 'record(calc, "$(P)s{n}") {{ field(SCAN, ".1 second") field(CALC, "A+1") ' \
         'field(INPA, "$(P)s{n}.VAL NPP") }}\n'
"""One IOC record: VAL counts the record's scans, so consecutive updates differ by 1."""
CPU_TARGET = 1.0
"""Collector CPU per update at most that of the bare thread-client monitor."""
MEMORY_LIMIT = 48.0
"""Bytes per stored scalar sample (STATUS memory_bytes / samples)."""
SAMPLE_BYTES = 20.0
"""The data of one scalar sample: value 8 + time_ns 8 + severity 2 + status 2."""
RETRIEVAL_TARGET = 2.0
"""Get of the OUT columns at most 2x a plain get of the same bytes (the issue's 2x is against an
NTScalarArray of as many doubles: half the bytes, so the data alone is 2x)."""
POLL_TARGET = 1.1
"""Ingest CPU per update with a poller of OUT PVs at most 10 % above that without."""
PUBLISH_PERIOD = 1.0
"""The collector's default publish_period: how often OUT PVs change, and how often the paced
poller gets them."""
SPOOL_TARGET = 1.1
"""Ingest CPU per update with spooling to HDF5 on, over that with it off (10 % slower)."""
SPOOL_INTERVAL = 10.0
"""The collector's default spool_interval."""
SPOOL_WINDOW = 2 * SPOOL_INTERVAL
"""A spooling window: two appends of a whole interval each (the spool's clock starts at
ENABLE, SETTLE before the window)."""
COLUMNS = "field(value,time_ns,alarm_row,alarm_severity,alarm_status)"
CHUNK = 90_000
"""Updates the retrieval source posts at a time: less than the collector's monitor queue."""


@dataclass(frozen=True)
class Settings:
    """How much the collector benchmarks do."""

    ingest_pvs: int
    ingest_seconds: float
    sizes: tuple[int, ...]
    """Retrieval: samples recorded, in turn (history and watched OUT at the first)."""
    watch: int
    """Updates posted in each of the four windows of the watched-OUT comparison."""
    spool_pvs: int
    poll_seconds: float
    """Each window of the polling benchmark (which records the ingest's PVs)."""
    poll_samples: int
    """Samples a PV in the polling benchmark: every buffer is full before its windows begin."""

    def __str__(self) -> str:
        return (f"collector: {self.ingest_pvs} PVs for {self.ingest_seconds:g} s, "
                f"{'/'.join(f'{n:,}' for n in self.sizes)} samples, {self.ingest_pvs} PVs polled "
                f"in windows of {self.poll_seconds:g} s ({self.poll_samples} samples a PV), "
                f"{self.spool_pvs} PVs spooled")


FULL = Settings(1000, 30.0, (100_000, 1_000_000), 50_000, 200, 8.0, 1000)
QUICK = Settings(200, 5.0, (100_000,), 20_000, 100, 2.5, 50)


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by process `pid`, all threads: utime + stime of /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # fields 14, 15


def ioc(stack: ExitStack, prefix: str, count: int) -> int:
    """Start an IOC serving `count` counting calc records PREFIX:s0... at RATE, closed with
    `stack`: its pid."""
    database = "".join(RECORD.format(n=n) for n in range(count))
    server = IocProcess(database, {"P": f"{prefix}:"}, wait_for=f"{prefix}:s{count - 1}")
    stack.callback(server.close)  # before start: a start that times out leaves it running
    server.start()
    assert server.process is not None
    return server.process.pid


def helper(stack: ExitStack, module: str, *args: str) -> subprocess.Popen[str]:
    """`start_helper`, stopped with `stack`."""
    process = start_helper(module, *args)
    stack.callback(stop_helper, process)
    return process


def device(stack: ExitStack, config: dict[str, object], data_root: str = "") -> tuple[DeviceClient, int]:
    """Start a collect.Collector with `config` (and the host's data root `data_root`) in a
    process of its own, closed with `stack`: its client and pid."""
    process = DeviceProcess("collect.Collector", unique_prefix("bench-coll"), config=config,
                            args=["--data-root", data_root] if data_root else None)
    client = stack.enter_context(process)
    assert process.process is not None
    return client, process.process.pid


class Poller(threading.Thread):
    """Gets every one of `names` (every field), round and round, until `stop`: a client that
    watches a few recordings. A round every `period` seconds (0: as fast as it can). Counts its
    gets."""

    def __init__(self, names: list[str], period: float = 0.0) -> None:
        super().__init__(name="poller")
        self.names = names
        self.period = period
        self.gets = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        with Context("pva", nt=False) as context:
            while not self.stopping.wait(self.period if self.gets else 0.0):
                for name in self.names:
                    context.get(name, timeout=10.0)
                    self.gets += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join()


SETTLE = 2.0
"""Seconds between subscribing and the start of a steady ingest window (1000 channels connect
in well under that), so neither side's window holds its subscribing or unsubscribing."""


@dataclass(frozen=True)
class Window:
    """A collector's steady recording window: its CPU seconds, the updates it recorded in it
    (the exported samples stamped inside it), and that export's arrays (``<pv>/<column>``)."""

    cpu: float
    received: int
    arrays: dict[str, Any]

    @property
    def us_per_update(self) -> float:
        return self.cpu / self.received * 1e6


_exports = itertools.count()  # export file names: one per window, never reused


def window(collector: DeviceClient, pid: int, data: str, names: list[str], seconds: float,
           poller: Poller | None = None) -> Window:
    """Enable the collector; after SETTLE, its CPU seconds over `seconds` (with `poller`
    running meanwhile); then disable it and export (EXPORT, .npz, to its data directory
    `data`) to count the updates of `names` in the window. Like the baseline's windows, it
    holds neither subscribing nor unsubscribing, which cost as much as seconds of recording and
    vary."""
    collector.enable()
    time.sleep(SETTLE)
    if poller:
        poller.start()
    cpu, start = cpu_seconds(pid), time.time()
    time.sleep(seconds)
    cpu, end = cpu_seconds(pid) - cpu, time.time()
    if poller:
        poller.stop()
    collector.disable()
    name = f"window{next(_exports)}.npz"
    collector.put("EXPORT", {"path": name, "format": "npz"}, timeout=120.0)
    arrays = load_npz(Path(data) / name)["arrays"]
    return Window(cpu, stamped_between(arrays, names, start, end), arrays)


def bare_window(names: list[str], seconds: float) -> tuple[float, int]:
    """The baseline of an ingest window: a bench.bare_monitor of its own subscribes to `names`;
    after SETTLE, its CPU seconds over `seconds` and the updates it counted meanwhile. Then it
    is killed (see bench.bare_monitor for why)."""
    process = start_helper("bare_monitor", *names)
    try:
        ask(process, "start")
        time.sleep(SETTLE)
        cpu, count = cpu_seconds(process.pid), int(ask(process, "count"))
        time.sleep(seconds)
        cpu, count = cpu_seconds(process.pid) - cpu, int(ask(process, "count")) - count
        return cpu, count
    finally:
        process.kill()
        stop_helper(process)


def stamped_between(arrays: dict[str, Any], names: list[str], start: float, end: float) -> int:
    """Samples of `names` in an export whose timestamps fall in [start, end)."""
    count = 0
    for name in names:
        stamps = arrays[f"{name}/time_ns"]
        count += int(((stamps >= start * 1e9) & (stamps < end * 1e9)).sum())
    return count


def ingest(pvs: int, seconds: float, rounds: int = 2) -> list[Result]:
    """`pvs` IOC records at RATE: into a bare monitor for `seconds` / 2, into a collector for
    `seconds`, into the bare monitor again for `seconds` / 2, each counted after it settled
    and before it unsubscribes; `rounds` times (a window's CPU varies by 10 % here). CPU per
    update; updates lost and memory per stored sample from the first round."""
    prefix = unique_prefix("bench-ioc")
    names = [f"{prefix}:s{n}" for n in range(pvs)]
    collector_cpu: list[float] = []
    bare_cpu: list[float] = []
    with ExitStack() as stack:
        ioc(stack, prefix, pvs)
        data = stack.enter_context(tempfile.TemporaryDirectory(prefix="emd-bench-"))
        collector, pid = device(stack, {"input_pvs": names, "max_samples": 1000,
                                        "queue_size": 1000}, data)
        rss = rss_mb(pid)
        for round in range(rounds):
            # bare, collector, bare: the collector's recording in one piece (its loss check
            # needs that), the baseline on both sides of it in time. Unpinned, as the target
            # was set.
            first = bare_window(names, seconds / 2)
            recorded = window(collector, pid, data, names, seconds)
            second = bare_window(names, seconds / 2)
            if round == 0:  # the first recording is checked for loss; later rounds append
                rss = rss_mb(pid) - rss
                status = collector.get_pv("STATUS").todict()
                first_arrays = recorded.arrays
            collector_cpu.append(recorded.us_per_update)
            bare_cpu.append((first[0] + second[0]) / (first[1] + second[1]) * 1e6)
            print(f"  round {round + 1}: bare monitor {first[1] + second[1]} updates, "
                  f"{bare_cpu[-1]:.1f} us CPU per update; collector {recorded.received} updates, "
                  f"{collector_cpu[-1]:.1f} us CPU per update", flush=True)
    arrays = first_arrays

    kept, sent, backwards, faults = losses(arrays, names, status)
    expected = pvs * RATE * (seconds + SETTLE)  # the first round: enabled SETTLE before its window
    print("  collector, first round: STATUS " + ", ".join(
        f"{k}={status[k]}" for k in ("received", "stored", "dropped", "gaps", "disconnects",
                                     "samples", "memory_bytes")))
    print(f"  collector: {kept} samples exported, {sent} sent by the IOC between each PV's first "
          f"and last ({status['received'] / expected:.1%} of {expected:.0f}), {backwards} out "
          f"of order; RSS grew {rss:.1f} MB ({rss * 1e6 / max(1, status['samples']):.0f} B per "
          f"sample)")
    name = f"{pvs} PVs at {RATE:g} Hz for {seconds:g} s"
    return [
        Result(f"ingest CPU per update, {name}", collector_cpu, bare_cpu,
               "bare p4p thread-client monitor", target=CPU_TARGET, unit="us"),
        Result(f"ingest updates kept of those sent, {name}"
               + (f" ({'; '.join(faults)})" if faults else ""),
               [kept], [sent], "IOC scans between first and last", unit="updates", floor=sent),
        Result(f"memory per stored scalar sample, {status['samples']} samples",
               [status["memory_bytes"] / status["samples"]], [SAMPLE_BYTES],
               "the sample's data (8+8+2+2 B)", limit=MEMORY_LIMIT, unit="B"),
    ]


def losses(arrays: dict[str, Any], names: list[str], status: dict[str, Any]) -> tuple[int, int, int, list[str]]:
    """Of an export of counting records (`arrays`) and the collector's STATUS: the samples
    kept, the updates the IOC sent between each PV's first and last kept one (its values count
    its scans, so a missing update is a skip), those repeated or out of order, and what went
    wrong, in words (empty: nothing)."""
    kept = sent = backwards = 0
    for name in names:
        values = arrays[f"{name}/value"]
        kept += len(values)
        sent += int(values[-1] - values[0]) + 1 if len(values) else 0
        backwards += int((values[1:] <= values[:-1]).sum())
    faults = [f"{k} {status[k]}" for k in ("dropped", "gaps", "disconnects") if status[k]]
    if not status["received"] == status["stored"] == kept:
        faults.append(f"received {status['received']}, stored {status['stored']}, kept {kept}")
    if backwards:
        faults.append(f"{backwards} repeated or out of order")
    return kept, sent, backwards, faults


def wait_received(collector: DeviceClient, count: int, timeout: float = 60.0) -> int:
    """Wait until the collector's STATUS shows `count` updates received, or shows no progress
    for 3 s (updates were lost), or `timeout` passes; the count received."""
    received, progress, deadline = -1, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = collector.get_pv("STATUS")["received"]
        if now >= count:
            return now
        if now != received:
            received, progress = now, time.monotonic()
        elif time.monotonic() - progress > 3.0:
            break
        time.sleep(0.05)
    return received


def timed_get(context: Context, name: str, request: str | None = None) -> float:
    """Seconds one get of `name` takes."""
    started = time.perf_counter()
    context.get(name, request=request, timeout=60.0)
    return time.perf_counter() - started


def first_gets(out: str, array: str, count: int) -> tuple[list[float], list[float]]:
    """`count` gets of the OUT columns and of the bare array, each from a new Context (a new
    channel: the collector builds the OUT value for it), alternating: seconds of each."""
    device_times: list[float] = []
    bare_times: list[float] = []
    for _ in range(count):
        for name, request, times in ((out, COLUMNS, device_times), (array, None, bare_times)):
            with Context("pva", nt=False) as context:
                times.append(timed_get(context, name, request))
    return device_times, bare_times


def retrieval(sizes: list[int], watch: int, gets: int = 5) -> list[Result]:
    """One PV recorded to each of `sizes` samples, posted by bench.bare_source as fast as it can
    in chunks the monitor queue holds. At each size: gets of the OUT columns against gets of an
    NTScalarArray of as many doubles (alternating, after one of each to connect), and first
    gets on new channels; at the first size also gets of the ``history`` field, and the ingest
    CPU per update while a monitor watches OUT against none (ABBA ABBA, `watch` updates
    each)."""
    source_prefix = unique_prefix("bench-src")
    array, pair = f"{source_prefix}:ARRAY", f"{source_prefix}:PAIR"
    results: list[Result] = []
    with ExitStack() as stack:
        source = helper(stack, "bare_source", source_prefix)
        collector, pid = device(stack, {"input_pvs": [f"{source_prefix}:SOURCE"],
                                        "max_samples": 1_000_000, "queue_size": 100_000})
        out = f"{collector.prefix}:OUT:{source_prefix}:SOURCE"
        collector.enable()
        posted = wait_received(collector, 1)  # subscribed: SOURCE's initial value, update 0

        def fill(count: int) -> float:
            """Post `count` more updates in chunks, each once the previous one is received: the
            collector's CPU seconds per update meanwhile."""
            nonlocal posted
            cpu, target = cpu_seconds(pid), posted + count
            while posted < target:
                n = min(CHUNK, target - posted)
                ask(source, f"post {n}")
                received = wait_received(collector, posted + n)
                if received < posted + n:
                    print(f"  LOST {posted + n - received} of {posted + n} posted: STATUS "
                          f"{collector.get_pv('STATUS').todict()}")
                posted = received
            return (cpu_seconds(pid) - cpu) / count

        rates: list[float] = []  # lossless fills, updates per second
        for size in sizes:
            began, count = time.perf_counter(), size - posted
            per_update = fill(count)
            rate = count / (time.perf_counter() - began)
            status = collector.get_pv("STATUS").todict()
            if status["received"] == posted == size and not status["gaps"] and not status["dropped"]:
                rates.append(rate)
            label = f"{size / 1e6:g}M" if size >= 1e6 else f"{size / 1e3:g}k"
            print(f"  {label}: filled at {rate:.0f} updates/s "
                  f"({per_update * 1e6:.1f} us CPU per update); STATUS received="
                  f"{status['received']} gaps={status['gaps']} samples={status['samples']} "
                  f"memory_bytes={status['memory_bytes']} ({status['memory_bytes'] / size:.1f} "
                  f"B per sample); RSS {rss_mb(pid):.0f} MB")
            ask(source, f"array {size}")
            news, bare_news = first_gets(out, array, 3 if size < 1e6 else 1)
            print(f"  {label}: first gets (new channel) {statistics.median(news) * 1e3:.0f} ms; "
                  f"RSS after them {rss_mb(pid):.0f} MB")
            with Context("pva", nt=False) as context:
                device_times: list[float] = []
                bare_times: list[float] = []
                pair_times: list[float] = []
                for i in range(gets + 1):
                    sides = [(out, COLUMNS, device_times), (array, None, bare_times),
                             (pair, None, pair_times)]
                    for name, request, times in sides[i % 3:] + sides[:i % 3]:
                        times.append(timed_get(context, name, request))
                del device_times[0], bare_times[0], pair_times[0]  # the first: connecting
                history = [timed_get(context, out, "field(history)") for _ in range(gets)] \
                    if size == sizes[0] else []
            # The columns hold a value and an exact time per sample, 16 B against the array's
            # 8: the 2x is the ratio of the data alone, which no transport can beat, so
            # the target applies to a bare get of the same bytes (PAIR) and the array's ratio
            # is shown beside it.
            results.append(Result(f"get OUT columns, {label} samples (data 2x the array's)",
                                  device_times, bare_times,
                                  f"bare p4p NTScalarArray, {label} doubles"))
            results.append(Result(f"get OUT columns, {label} samples", device_times, pair_times,
                                  f"bare p4p structure of {label} doubles and {label} int64 (the "
                                  "same bytes as value and time_ns)", target=RETRIEVAL_TARGET))
            if history:
                results.append(Result(f"get OUT history, {label} samples", history, bare_times,
                                      f"bare p4p NTScalarArray, {label} doubles"))
            results.append(Result(f"first get OUT columns (new channel), {label} samples", news,
                                  bare_news, "bare p4p NTScalarArray, new channel"))
            if size == sizes[0]:
                quiet: list[float] = []
                watched: list[float] = []
                with separate_cpus([pid], [source.pid]):
                    for i in range(8):  # ABBA ABBA: one window varies by 10 % here
                        if i % 4 in (1, 2):
                            with Context("pva", nt=False) as context:
                                monitor = context.monitor(out, lambda value: None, request=COLUMNS)
                                watched.append(fill(watch) * 1e6)
                                monitor.close()
                        else:
                            quiet.append(fill(watch) * 1e6)
                results.append(Result(
                    f"ingest CPU per update, OUT watched by a monitor, {label}-{posted / 1e3:.0f}k "
                    "samples", watched, quiet, "same collector, OUT not watched",
                    target=POLL_TARGET, unit="us"))
                print(f"  watched OUT: RSS after {rss_mb(pid):.0f} MB")
        collector.disable()
        ceiling = producer_rate(stack)
    print(f"  the source alone posts {ceiling:.0f} updates/s")
    results.append(Result(
        f"ingest lossless rate, one PV (updates/s; chunks of {CHUNK:,}, each received in full "
        "before the next)", [max(rates, default=0.0)], [ceiling],
        "bare p4p SharedPV posting alone, no subscriber (the producer's ceiling)", unit="updates"))
    return results


def producer_rate(stack: ExitStack) -> float:
    """Updates per second bench.bare_source posts on its own, no subscriber: the fastest any
    consumer of it could be fed."""
    source = helper(stack, "bare_source", unique_prefix("bench-src"))
    began = time.perf_counter()
    ask(source, f"post {CHUNK}")
    return CHUNK / (time.perf_counter() - began)


def polling(pvs: int, seconds: float, samples: int, polled: int = 5) -> list[Result]:
    """A collector recording `pvs` IOC records in windows of `seconds`: first ABBA without and
    with a Poller of OUT:<pv> for `polled` PVs at the publish period (a client refreshing its
    plots as often as OUT changes), then two windows with the Poller in a tight loop (a stress
    figure: polling faster than OUT changes gets the same values again). CPU per update, and
    the CPU each get added, against a Poller of a bare SharedPV (bench.bare_source's ARRAY).
    The windows begin once every buffer is full (`samples` a PV), so each polled OUT carries a
    history of `samples` structures throughout: a rebuild and a get cost in proportion."""
    prefix, source_prefix = unique_prefix("bench-ioc"), unique_prefix("bench-src")
    names = [f"{prefix}:s{n}" for n in range(pvs)]
    quiet: list[float] = []
    paced: list[float] = []
    tight: list[float] = []
    per_get: list[float] = []
    bare_per_get: list[float] = []
    with ExitStack() as stack:
        ioc_pid = ioc(stack, prefix, pvs)
        source = helper(stack, "bare_source", source_prefix)
        ask(source, f"array {samples}")
        data = stack.enter_context(tempfile.TemporaryDirectory(prefix="emd-bench-"))
        collector, pid = device(stack, {"input_pvs": names, "max_samples": samples,
                                        "publish_period": PUBLISH_PERIOD}, data)
        stack.enter_context(separate_cpus([pid], [ioc_pid, source.pid]))
        collector.enable()
        wait_until(lambda: collector.get_pv("STATUS")["samples"] >= pvs * samples,
                   samples / RATE * 1.5 + 30, f"every buffer full ({samples} samples a PV)")
        collector.disable()
        outs = [f"{collector.prefix}:OUT:{n}" for n in names[:polled]]
        kinds = ("quiet", "paced", "paced", "quiet") * 2 + ("tight", "tight")
        for kind in kinds:
            poller = None if kind == "quiet" else Poller(outs, PUBLISH_PERIOD if kind == "paced" else 0.0)
            recorded = window(collector, pid, data, names, seconds, poller)
            {"quiet": quiet, "paced": paced, "tight": tight}[kind].append(recorded.us_per_update)
            if kind == "tight":  # the CPU above what the updates cost without a poller, per get
                per_get.append((recorded.cpu - recorded.received * min(quiet) * 1e-6) / poller.gets * 1e6)
            print(f"  {kind} window: {recorded.received} received "
                  f"({recorded.received / (pvs * RATE * seconds):.1%} of PVs x rate x window), "
                  f"{recorded.us_per_update:.1f} us CPU per update"
                  + (f", {poller.gets / seconds:.0f} gets/s" if poller else ""))
        for _ in range(2):
            poller = Poller([f"{source_prefix}:ARRAY"])
            cpu = cpu_seconds(source.pid)
            poller.start()
            time.sleep(seconds / 2)
            poller.stop()
            bare_per_get.append((cpu_seconds(source.pid) - cpu) / poller.gets * 1e6)
            print(f"  bare SharedPV: {poller.gets / seconds * 2:.0f} gets/s, "
                  f"{bare_per_get[-1]:.0f} us CPU per get")
    return [
        Result(f"ingest CPU per update, {pvs} PVs, {polled} OUT polled every "
               f"{PUBLISH_PERIOD:g} s (every field: {samples}-sample history and columns)",
               paced, quiet, "same collector, not polled",
               target=POLL_TARGET, unit="us"),
        Result(f"ingest CPU per update, {pvs} PVs, {polled} OUT polled in a tight loop", tight,
               quiet, "same collector, not polled", unit="us"),
        Result(f"CPU per OUT get while recording, {pvs} PVs", per_get, bare_per_get,
               f"bare p4p SharedPV, {samples} doubles", unit="us"),
    ]

def spooling(pvs: int, seconds: float, rounds: int = 16) -> list[Result]:
    """Two collectors recording the same `pvs` IOC records, one spooling to an HDF5 file, one
    not, enabled in turn for `rounds` windows of `seconds` each (ABBA ABBA per half: eight
    windows a side, as a window's CPU varies by 10-20 % here; with four a side two runs of the
    same code gave 1.04x and 1.13x): CPU per update. Halfway the two swap
    roles, so what differs between the two processes themselves does not count as spooling.
    The spooling one keeps its file open while disabled (as a collector does), so after an
    untimed first window of each role (connecting; making the file and its groups), the windows
    measure spooling itself. Both collectors on one CPU, the IOC and this process on another."""
    prefix = unique_prefix("bench-ioc")
    names = [f"{prefix}:s{n}" for n in range(pvs)]
    off: list[float] = []
    on: list[float] = []
    with ExitStack() as stack:
        ioc_pid = ioc(stack, prefix, pvs)
        data = stack.enter_context(tempfile.TemporaryDirectory(prefix="emd-bench-"))
        config = {"input_pvs": names, "max_samples": 100_000, "spool_interval": SPOOL_INTERVAL}
        first, second = device(stack, config, data), device(stack, config, data)
        stack.enter_context(separate_cpus([first[1], second[1]], [ioc_pid]))
        for half, (spooling_one, plain) in enumerate(((first, second), (second, first))):
            plain[0].configure(spool_file="")  # closes the file it spooled to in the first half
            spooling_one[0].configure(spool_file=f"spool{half}.h5")
            # untimed: a first ENABLE connects 200 channels, a first append makes the file and
            # its groups; either costs as much as a window's recording
            window(*plain, data, names, SPOOL_INTERVAL)
            window(*spooling_one, data, names, SPOOL_INTERVAL)
            for i in range(rounds // 2):
                spool = i % 4 in (1, 2)
                recorded = window(*(spooling_one if spool else plain), data, names, seconds)
                (on if spool else off).append(recorded.us_per_update)
                print(f"  spooling {'on ' if spool else 'off'}: {recorded.received} received "
                      f"({recorded.received / (pvs * RATE * seconds):.1%} of PVs x rate x window), "
                      f"{recorded.us_per_update:.1f} us CPU per update")
        size = sum(path.stat().st_size for path in Path(data).glob("spool*.h5")) / 1e6
        print(f"  spool files: {size:.1f} MB")
    return [Result(f"ingest CPU per update, {pvs} PVs, spooling to HDF5 every "
                   f"{SPOOL_INTERVAL:g} s", on, off, "a collector not spooling, same PVs",
                   target=SPOOL_TARGET, unit="us")]

def run(settings: Settings) -> list[Result]:
    """Every collector benchmark, as much as `settings` say."""
    print(f"  ingest: {settings.ingest_pvs} PVs for {settings.ingest_seconds:g} s ...", flush=True)
    results = ingest(settings.ingest_pvs, settings.ingest_seconds)
    print(f"  retrieval: {', '.join(f'{n:,}' for n in settings.sizes)} samples ...", flush=True)
    results += retrieval(list(settings.sizes), settings.watch)
    print(f"  ingest while polling: {settings.ingest_pvs} PVs ...", flush=True)
    results += polling(settings.ingest_pvs, settings.poll_seconds, settings.poll_samples)
    print(f"  ingest while spooling: {settings.spool_pvs} PVs ...", flush=True)
    results += spooling(settings.spool_pvs, SPOOL_WINDOW)
    return results
