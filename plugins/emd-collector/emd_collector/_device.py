"""collect.Collector: records input PVs on demand and serves their history back as PVs."""

from __future__ import annotations

import json
import os
import queue
import re
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from p4p import Type, Value
from p4p.client.raw import Context as RawContext
from p4p.nt import NTTable
from p4p.server import DynamicProvider
from p4p.server.thread import SharedPV

import epics_meta_devices as emd

from ._buffer import sample_bytes
from ._output import DEFAULT_KIND, HistoryElements, out_value, select, status_value, table_value
from ._recorder import COUNTERS, Processing, PVRecorder
from ._paths import confined, open_regular, relative_parts
from ._recording import Annotation, RecordedPV, Recording
from ._acquire import Acquisition
from ._spooling import FAILURES_FOR_MAJOR, SpoolState, Spooler, can_spool

# EPICS record names (and .FIELD): the characters IOCs accept, no spaces.
MAX_SAMPLES_LIMIT = 100_000_000
MAX_HISTORY = 100_000  # a structure array this long takes ~0.1 s to build and to get; columns scale
SCALAR_SAMPLE_BYTES = sample_bytes("float64")  # 20: value 8 + time_ns 8 + severity 2 + status 2
MAX_INPUT_PVS = 20_000
"""PVs one collector records at most (its CONFIG is refused beyond): bounds what one put costs."""
MAX_ANNOTATIONS = 100_000
"""The host's ceiling of max_annotations."""
MAX_ANNOTATION_KEY, MAX_ANNOTATION_VALUE = 128, 4096
"""Characters of an annotation's key and value at most."""
MAX_EXPORTS = 4
MAX_UPLOAD_OPTIONS = 4096
"""Characters of CONFIG upload_options at most."""
MAX_ROW_READS = 64
"""OUT:<pv>:ROWS:<first> PVs served at once (each is rebuilt while read): a ceiling for clients
that open many and keep them."""
"""EXPORTs running or waiting at once (two run together); more are refused as busy: each holds
a copy of the recording in memory."""
DRAIN_DELAY = 0.02  # s the drain thread lets updates gather (see _drain_loop)

TOTALS_TYPE = Type(
    [("pvs", "L"), ("connected", "L"), ("samples", "L"), ("memory_bytes", "L")]
    + [(name, "L") for name in COUNTERS],
    id="emd:collector:status:1.0",
)
EXPORT_TYPE = Type([("path", "s"), ("format", "s"), ("options", "s")], id="emd:collector:export:1.0")
EXPORT_STATUS_TYPE = Type([("path", "s"), ("format", "s"), ("options", "s"), ("samples", "L"), ("time", "d")],
                          id="emd:collector:export_status:1.0")
"""EXPORT: ``options`` is JSON text of the exporter's options, e.g. '{"compression": "lzf"}'."""
UPLOAD_TYPE = Type([("path", "s"), ("target", "s"), ("options", "s")], id="emd:collector:upload:1.0")
UPLOAD_STATUS_TYPE = Type(
    [("state", "s"), ("target", "s"), ("path", "s"), ("location", "s"), ("attempt", "l"),
     ("bytes_done", "L"), ("bytes_total", "L"), ("message", "s"), ("queued", "L")],
    id="emd:collector:uploadstatus:1.0",
)
"""UPLOAD_STATUS: state is idle, queued, running, retrying, done or failed."""
SECRET_WORDS = ("password", "token", "secret", "credential")
ANNOTATE_TYPE = Type([("key", "s"), ("value", "s"), ("time", "d")], id="emd:collector:annotate:1.0")
ANNOTATIONS_TABLE = NTTable([("time", "d"), ("key", "s"), ("value", "s")])


def installed_uploader(target: str) -> Any:
    """The uploader named `target`; ValueError naming the installed ones when there is none."""
    uploaders = emd.uploaders()
    if target not in uploaders:
        installed = ", ".join(sorted(uploaders)) or "none (install emd-dms)"
        raise ValueError(f"no uploader {target!r} installed (installed: {installed})")
    return uploaders[target]


def upload_options(text: str, source: str) -> dict[str, Any]:
    """Options of an upload from JSON text ("": none); ValueError saying what is wrong. Options
    travel through PVs, so they must not carry credentials: those come from the host."""
    if not text.strip():
        return {}
    try:
        options = emd.config_from_json(text, source)
    except emd.DeviceError as exc:
        raise ValueError(str(exc)) from None
    secret = [name for name in options if any(word in name.lower() for word in SECRET_WORDS)]
    if secret:
        raise ValueError(f"{source} must not carry credentials ({', '.join(secret)}): "
                         "they come from the environment or config file where the collector runs")
    return options


@dataclass
class CollectorConfig:
    input_pvs: list[str] = field(default_factory=list)
    """PVs to record: ca://NAME (Channel Access), pva://NAME or NAME (PVAccess)."""
    max_samples: int = 100_000
    """Samples kept per PV (a ring buffer: the oldest are dropped, and counted, when full)."""
    history_limit: int = 10_000
    """Samples in OUT:<pv>.history, the newest (1 to 100,000); the columns and TABLE hold all."""
    publish_period: float = 1.0
    """Seconds between refreshes of the OUT and STATUS PVs."""
    queue_size: int = 1000
    """Monitor queue per PV (with pipelining), so bursts are not squashed."""
    data_dir: str = ""
    """Where EXPORT writes and UPLOAD reads, relative to the host's data root (--data-root,
    EMD_DATA_ROOT; "" = the root itself); every path is confined to it, reached without
    following symbolic links."""
    memory_limit_mb: float = 2048.0
    """Guard: max_samples x PVs must fit (waveform buffers are limited to their share); at most
    the host's ceiling (--max-memory-mb, EMD_MAX_MEMORY_MB)."""
    max_events: int = 1000
    """Connection events kept per PV, the newest (1 to 100,000); the counters count all."""
    max_annotations: int = 10_000
    """Annotations kept at most (1 to 100,000); ANNOTATE is refused beyond, until CLEAR."""
    decimate: int = 1
    """N-to-1 decimation of numeric scalars (1: off), as the EPICS compress record."""
    decimate_mode: Literal["mean", "min", "max", "last"] = "mean"
    """mean, min, max or last."""
    deadband: float = 0.0
    """Store a numeric scalar only when it moved more than this since the last stored (0: off)."""
    stale_after: float = 0.0
    """Seconds a connected PV may go without an update before it is marked stale (a "stale"
    event, a gap marker row, STATUS stale=true, until its next update); 0: never."""
    pv_options: list[str] = field(default_factory=list)
    """Per-PV settings: "<pv> decimate=10 mode=max deadband=0.5 stale_after=5"."""
    upload_retries: int = 3
    """Retries of an upload that failed in a way worth retrying (timeouts, server errors)."""
    upload_backoff: float = 1.0
    """Seconds before the first retry; doubled for each next one."""
    upload_target: str = ""
    """The uploader a put to UPLOAD:path uses (an installed one: directory, webdav, s3, nomad);
    "": UPLOAD:path is refused. UPLOAD names its target in each request."""
    upload_options: str = ""
    """Options of UPLOAD:path's uploads, a JSON object (an endpoint the host configures, a
    remote path); credentials are refused, they come from the host."""
    spool_file: str = ""
    """While recording, append new samples to this file in the data directory every
    spool_interval seconds, for readers to follow and so a crash loses at most one interval
    ("": off). Its suffix picks a format that can spool: .h5 (emd-hdf5, SWMR)."""
    acquire_time: float = 0.0
    """Seconds an ACQUIRE=1 run records before it ends by itself (0: no time limit)."""
    acquire_samples: int = 0
    """New samples of every input PV after which an ACQUIRE=1 run ends by itself (0: no limit)."""
    spool_interval: float = 10.0
    """Seconds between appends to spool_file. An append costs HDF5 a fixed amount per PV (about
    65 us for a scalar's four datasets), so a longer interval costs less per update."""

    def __post_init__(self) -> None:
        names = self.input_pvs
        if len(names) > MAX_INPUT_PVS:  # before any per-name work: a huge list costs nothing more
            raise ValueError(f"input_pvs: {len(names)} PVs, more than the {MAX_INPUT_PVS} one collector records")
        sources, bad = [], []
        for name in names:
            try:
                sources.append(emd.parse_input(name))
            except emd.InputNameError as exc:
                bad.append(str(exc))
        if bad:
            raise ValueError("; ".join(bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else ""))
        # one PV reached two ways is still one PV (its OUT and STATUS PVs are named without the scheme)
        duplicates = sorted(name for name, count in Counter(s.name for s in sources).items() if count > 1)  # linear
        if duplicates:
            raise ValueError(f"duplicate input PV(s) {', '.join(duplicates)}")
        if not 1 <= self.max_samples <= MAX_SAMPLES_LIMIT:
            raise ValueError(f"max_samples must be between 1 and {MAX_SAMPLES_LIMIT}, got {self.max_samples}")
        if not self.memory_limit_mb > 0:
            raise ValueError(f"memory_limit_mb must be > 0, got {self.memory_limit_mb}")
        needed = self.max_samples * len(names) * SCALAR_SAMPLE_BYTES / 2**20
        if needed > self.memory_limit_mb:
            raise ValueError(
                f"max_samples={self.max_samples} for {len(names)} PVs needs at least {needed:.1f} MB, "
                f"more than memory_limit_mb={self.memory_limit_mb:g}"
            )
        if not 0.05 <= self.publish_period <= 3600:
            raise ValueError(f"publish_period must be between 0.05 and 3600 s, got {self.publish_period}")
        if not 0 <= self.upload_retries <= 100 or not 0 <= self.upload_backoff <= 3600:
            raise ValueError("upload_retries must be 0-100 and upload_backoff 0-3600 s")
        if self.upload_target:
            try:
                installed_uploader(self.upload_target)
            except ValueError as exc:
                raise ValueError(f"upload_target: {exc}") from None
        if len(self.upload_options) > MAX_UPLOAD_OPTIONS:
            raise ValueError(f"upload_options: at most {MAX_UPLOAD_OPTIONS} characters")
        upload_options(self.upload_options, "upload_options")  # raises on bad options
        if not 0.05 <= self.spool_interval <= 3600:
            raise ValueError(f"spool_interval must be between 0.05 and 3600 s, got {self.spool_interval}")
        if not 1 <= self.history_limit <= MAX_HISTORY:
            raise ValueError(f"history_limit must be between 1 and {MAX_HISTORY}, got {self.history_limit} "
                             "(the columns, TABLE and HISTORY hold every sample)")
        if not 1 <= self.max_events <= 100_000:
            raise ValueError(f"max_events must be between 1 and 100000, got {self.max_events}")
        if not 0 <= self.acquire_time <= 86400 or not 0 <= self.acquire_samples <= MAX_SAMPLES_LIMIT:
            raise ValueError(f"acquire_time must be between 0 and 86400 s and acquire_samples between 0 and "
                             f"{MAX_SAMPLES_LIMIT}, got {self.acquire_time:g} and {self.acquire_samples}")
        if not 1 <= self.max_annotations <= MAX_ANNOTATIONS:
            raise ValueError(f"max_annotations must be between 1 and {MAX_ANNOTATIONS}, got {self.max_annotations}")
        if not 4 <= self.queue_size <= 1_000_000:
            raise ValueError(f"queue_size must be between 4 and 1000000, got {self.queue_size}")
        Processing(self.decimate, self.decimate_mode, self.deadband)  # raises on bad settings
        self._options_for("")  # raises on a bad stale_after
        for entry in self.pv_options:
            self.processing_for(entry.split()[0] if entry.split() else "")  # raises on bad options

    def sources(self) -> dict[str, emd.InputPV]:
        """The input PVs by name without the scheme (the name of their OUT and STATUS PVs)."""
        return {source.name: source for source in map(emd.parse_input, self.input_pvs)}

    def processing_for(self, name: str) -> Processing:
        options = self._options_for(name)
        options.pop("stale_after")
        return Processing(**options)

    def stale_after_for(self, name: str) -> float:
        return float(self._options_for(name)["stale_after"])

    def _options_for(self, name: str) -> dict[str, Any]:
        """The settings of PV `name`: the global ones, replaced by its pv_options entries."""
        options: dict[str, Any] = {"decimate": self.decimate, "mode": self.decimate_mode, "deadband": self.deadband,
                                   "stale_after": self.stale_after}
        for entry in self.pv_options:
            pv, *pairs = entry.split()
            if emd.without_scheme(pv) != name:  # "ca://X ..." names X too
                continue
            for pair in pairs:
                key, _, text = pair.partition("=")
                if key not in options or not text:
                    raise ValueError(f"pv_options {entry!r}: use decimate=N, mode=mean|min|max|last, deadband=X, "
                                     "stale_after=S")
                options[key] = text if key == "mode" else (int(text) if key == "decimate" else float(text))
        if not 0 <= options["stale_after"] <= 86400:
            raise ValueError(f"stale_after must be between 0 and 86400 s, got {options['stale_after']:g}")
        return options



@emd.register_device_type(name="collect.Collector")
class Collector(emd.MetaDevice):
    """Records PVs on demand and serves their history back as PVs."""

    Config = CollectorConfig
    client_class = "emd_collector:CollectorClient"

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self.cap_default("memory_limit_mb", self.host.max_memory_mb)
        self.recorders: dict[str, PVRecorder] = {}
        self.annotations: list[Annotation] = []
        self._ready: queue.SimpleQueue[PVRecorder | None] = queue.SimpleQueue()
        self._context: RawContext | None = None
        self._drain_thread: threading.Thread | None = None
        self._publisher: threading.Thread | None = None
        self._closing = threading.Event()
        self._workers = ThreadPoolExecutor(2, thread_name_prefix=f"export:{prefix}")
        # uploads run one after the other, in the background: recording never waits for them
        self._uploads = ThreadPoolExecutor(1, thread_name_prefix=f"upload:{prefix}")
        self._queued_uploads = 0
        self._spooler: Spooler | None = None
        self._spool: Any = None  # the open spool file: kept open while disabled
        self._spool_path: Path | None = None
        self._spool_cursors: dict[str, tuple[int, int]] = {}  # kept, so enabling again continues the file
        self._spool_state = SpoolState()  # of the current spool file, kept across enable/disable
        self.outputs = OutputPVs(self)
        self.add_provider(DynamicProvider(f"emd:{prefix}:outputs", self.outputs))
        self.status_pv = self.add_pv("STATUS", self._totals(), type=TOTALS_TYPE, nt_fields=True)
        self.clear_pv = self.add_pv("CLEAR", False, on_put=self._on_clear, access_group=emd.CONTROL_GROUP)
        # Command PVs keep no request (a read-modify-write client must not resend an old one):
        # what an EXPORT wrote goes to EXPORT_STATUS.
        self.export_pv = self.add_pv("EXPORT", {}, type=EXPORT_TYPE, on_put=self._on_export)
        self.export_status_pv = self.add_pv("EXPORT_STATUS", {}, type=EXPORT_STATUS_TYPE, nt_fields=True)
        # the same as a put-to-execute NT PV (ophyd-async, screens): a put of a path exports to it
        self.add_pv("EXPORT:path", "", on_put=lambda path: self._on_export(Value(EXPORT_TYPE, {"path": path})))
        self._exports = threading.BoundedSemaphore(MAX_EXPORTS)
        self._annotations_changed = False
        self.upload_pv = self.add_pv("UPLOAD", {}, type=UPLOAD_TYPE, on_put=self._on_upload)
        # put-to-execute for plans and screens: a put of a path uploads it (CONFIG upload_target)
        self.add_pv("UPLOAD:path", "", on_put=self._on_upload_path)
        self.upload_status_pv = self.add_pv("UPLOAD_STATUS", {"state": "idle"}, type=UPLOAD_STATUS_TYPE,
                                            nt_fields=True)
        self.annotate_pv = self.add_pv("ANNOTATE", {}, type=ANNOTATE_TYPE, on_put=self._on_annotate)
        # put-to-execute for plans and screens: a put of text is an annotation "note" at that time
        self.add_pv("ANNOTATE:note", "", on_put=lambda text: self._on_annotate(
            Value(ANNOTATE_TYPE, {"key": "note", "value": text, "time": 0.0})))
        self.annotations_pv = self.add_pv("ANNOTATIONS", [], nt=ANNOTATIONS_TABLE)
        self.history_pv = self.add_pv("HISTORY", {}, type=Type([]), on_rpc=self._on_history)
        # a run as one put (busy-record style): the put of 1 completes when the run ends
        self.acquisition = Acquisition(self)
        self.acquire_pv = self.add_pv("ACQUIRE", 0, on_put=self.acquisition.put, access_group=emd.CONTROL_GROUP)
        # the spool's health, with an alarm severity an alarm handler or a screen shows
        self.spool_pv = self.add_pv("SPOOL", self._spool_state.message)
        self.spool_count_pvs = {name: self.add_pv(f"SPOOL:{name}", 0)
                                for name in ("rows_spooled", "rows_pending", "rows_lost", "failures")}

    def pvi_extra(self) -> dict[str, str]:
        """PVI lists OUT:<pv>:TABLE (an NTTable) of every input PV; the base class rebuilds
        PVI after each CONFIG, so it follows input_pvs. OUT:<pv> and STATUS:<pv> are plain
        structures, which PVI leaves out."""
        return {f"OUT:{name}:TABLE": "r" for name in self.config.sources()}

    # -- life cycle -------------------------------------------------------------------------------

    def configure(self, config: CollectorConfig) -> None:
        ceiling = self.host.max_memory_mb
        if config.memory_limit_mb > ceiling:  # a guard any client could lift is no guard
            raise emd.DeviceError(f"memory_limit_mb={config.memory_limit_mb:g} is above this host's ceiling "
                                  f"of {ceiling:g} MB (--max-memory-mb)")
        self.data_path(config)  # refuses a data_dir leading out of the data root
        # refuses a path or a format that cannot spool
        spool_path = self._spool_exporter(config)[1] if config.spool_file else None
        if spool_path != self._spool_path:
            self._close_spool()  # spooling off, or to another file: let go of this one
        max_bytes = int(config.memory_limit_mb * 2**20 / max(1, len(config.input_pvs)))
        for name, source in config.sources().items():
            recorder = self.recorders.get(name)
            if recorder is None:
                self.recorders[name] = PVRecorder(name, config.max_samples, max_bytes, config.processing_for(name),
                                                  config.max_events, source.protocol)
                self.recorders[name].stale_after = config.stale_after_for(name)
            else:  # kept with its data; new limits apply to buffers made from now on (and after CLEAR)
                recorder.protocol = source.protocol  # from the next ENABLE
                recorder.processing = config.processing_for(name)
                recorder.stale_after = config.stale_after_for(name)
                recorder.max_samples, recorder.max_bytes = config.max_samples, max_bytes
                recorder.keep_events(config.max_events)
        if self._publisher is None:
            self._publisher = threading.Thread(target=self._publish_loop, name=f"publish:{self.prefix}", daemon=True)
            self._publisher.start()

    def start(self) -> None:
        if self.config.spool_file:  # first: a file that cannot be opened refuses ENABLE
            self._start_spooling()
        self._ready = queue.SimpleQueue()  # fresh: a stop marker left by an earlier run must not end this one
        self._context = RawContext("pva", useenv=True, nt=False)
        self._drain_thread = threading.Thread(target=self._drain_loop, name=f"drain:{self.prefix}", daemon=True)
        self._drain_thread.start()
        for name in self.config.sources():
            self.recorders[name].subscribe(self._context, self.config.queue_size, self._ready)
        self.log.info("recording %d PVs", len(self.config.input_pvs))

    def stop(self) -> None:
        # first the drain thread records what has arrived (it may be waiting for more to
        # gather), then the monitors close: updates received before the disable are kept
        self._ready.put(None)
        if self._drain_thread is not None and self._drain_thread is not threading.current_thread():
            self._drain_thread.join(10)
        self._drain_thread = None
        for recorder in self.recorders.values():
            recorder.unsubscribe()
        if self._context is not None:
            self._context.close()
            self._context = None
        if self._spooler is not None:
            spooler, self._spooler = self._spooler, None
            spooler.stop()
        self._publish()

    def close(self) -> None:
        self.acquisition.end()
        self._close_spool()
        self._closing.set()
        if self._publisher is not None:
            self._publisher.join(10)
        self._workers.shutdown(wait=True)
        self._uploads.shutdown(wait=True, cancel_futures=True)
        self.outputs.close()

    def _drain_loop(self) -> None:
        """Record what the monitors queued, until the stop marker (None).

        Once a PV is ready this thread waits DRAIN_DELAY before draining, so that a burst of
        updates (an IOC scan of many records) is recorded in one wake-up, not one wake-up and
        one GIL hand-over per update; that cuts the CPU per update by about a third
        (performance.md). The monitor queues hold the updates meanwhile."""
        ready = self._ready
        while (recorder := ready.get()) is not None:
            time.sleep(DRAIN_DELAY)
            while recorder is not None:
                try:
                    recorder.drain()
                except Exception as exc:  # a bug, not bad data: stop and say so
                    self.report_error(exc)
                    return
                try:
                    recorder = ready.get_nowait()
                except queue.Empty:
                    break
            if recorder is None:
                return

    def _publish_loop(self) -> None:
        while not self._closing.wait(self.config.publish_period):
            try:
                self._publish()
            except Exception:
                self.log.exception("publishing failed")

    def _publish(self) -> None:
        if self._annotations_changed:
            self._annotations_changed = False
            self.annotations_pv.post([asdict(a) for a in list(self.annotations)])
        now = time.monotonic()
        for recorder in list(self.recorders.values()):
            if recorder.check_stale(now):
                self.log.warning("%s is stale: no update for %g s", recorder.name, recorder.stale_after)
            if recorder.check_unanswered(now):
                self.log.warning("%s", recorder.events[-1].message)
        self.status_pv.post(self._totals())  # first: cheap, and never behind a big OUT rebuild
        self.outputs.refresh()

    def _totals(self) -> dict[str, int]:
        recorders = list(self.recorders.values())
        totals = {name: sum(r.counters[name] for r in recorders) for name in COUNTERS}
        return {
            "pvs": len(recorders),
            "connected": sum(r.connected for r in recorders),
            "samples": sum(r.buffer.count for r in recorders if r.buffer is not None),
            "memory_bytes": sum(r.nbytes for r in recorders),
            **totals,
        }

    # -- commands ---------------------------------------------------------------------------------

    def _on_clear(self, value: bool) -> None:
        if not value:
            return
        inputs = self.config.sources()
        for name in [n for n in self.recorders if n not in inputs]:
            self.outputs.forget(self.recorders.pop(name))  # no longer an input: goes with CLEAR
        for recorder in self.recorders.values():
            recorder.clear()
        self.annotations.clear()
        self.annotations_pv.post([])
        self._publish()
        self.log.info("cleared")

    def _on_annotate(self, request: Value) -> None:
        """Keep the annotation; ANNOTATIONS shows it at the next publish_period (posting the
        whole table on every put would make each put cost more than the one before)."""
        key, value = request["key"].strip(), request["value"]
        if not key:
            raise emd.DeviceError("ANNOTATE needs a key")
        if len(key) > MAX_ANNOTATION_KEY or len(value) > MAX_ANNOTATION_VALUE:
            raise emd.DeviceError(f"ANNOTATE: a key has at most {MAX_ANNOTATION_KEY} characters and a value "
                                  f"at most {MAX_ANNOTATION_VALUE} (got {len(key)} and {len(value)})")
        if len(self.annotations) >= self.config.max_annotations:
            raise emd.DeviceError(f"ANNOTATE: {len(self.annotations)} annotations already, the most this collector "
                                  "keeps (max_annotations); CLEAR starts again")
        self.annotations.append(Annotation(request["time"] or time.time(), key, value))
        self._annotations_changed = True

    def _on_history(self, arguments: Value) -> Value:
        fields = arguments["query"] if "query" in arguments.keys() else arguments  # NTURI or plain

        def argument(name: str, default: Any) -> Any:
            return fields[name] if name in fields.keys() else default

        name = str(argument("pv", ""))
        recorder = self.recorders.get(name)
        if recorder is None:
            raise emd.DeviceError(f"{name!r} is not recorded here (recorded: {', '.join(self.recorders) or 'none'})")
        try:
            start, end = float(argument("start", 0) or 0), float(argument("end", 0) or 0)
            max_points = int(argument("max_points", 0) or 0)
        except ValueError as exc:
            raise emd.DeviceError(f"HISTORY arguments: {exc}") from None
        if max_points < 0:
            raise emd.DeviceError(f"max_points must be >= 0, got {max_points}")
        columns, _ = recorder.snapshot()
        chosen = select(columns, recorder.kind or DEFAULT_KIND, start, end, max_points)
        return table_value(recorder, chosen, timestamp=time.time())

    def _on_export(self, request: Value) -> Future:
        path = self.data_file(request["path"])
        exporter = self.exporter_for(request["format"].strip(), path)
        text = request["options"].strip()
        options = emd.config_from_json(text, "EXPORT options") if text else {}
        if not self._exports.acquire(blocking=False):
            raise emd.DeviceError(f"busy: {MAX_EXPORTS} EXPORTs are running or waiting; try again when one is done")
        try:
            recording = self.recording()
            if recording.samples == 0:
                raise emd.DeviceError(f"{self.prefix} has recorded nothing yet: nothing to export")
            done = self._workers.submit(self.export, exporter, recording, path, options)
        except BaseException:
            self._exports.release()
            raise
        done.add_done_callback(lambda _: self._exports.release())
        return done

    def export(self, exporter: Any, recording: Recording, path: Path, options: dict[str, Any]) -> None:
        """Write `recording` with `exporter`; DeviceError with the reason if it cannot."""
        try:
            exporter.export(recording, path, options)
        except OSError as exc:
            raise emd.DeviceError(f"cannot write {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise emd.DeviceError(f"{exporter.name} export: {exc}") from None
        self.export_status_pv.post({"path": str(path), "format": exporter.name, "options": json.dumps(options),
                                    "samples": recording.samples, "time": time.time()})
        self.log.info("exported %d samples to %s", recording.samples, path)

    def _on_upload(self, request: Value) -> None:
        """Check the request, queue the upload and answer at once; UPLOAD_STATUS follows it."""
        self._queue_upload(request)

    def _on_upload_path(self, path: str) -> Future:
        """UPLOAD:path: upload `path` to CONFIG's upload_target with its upload_options; the
        put completes when the upload ended, refused with the reason if it failed."""
        config = self.config
        if not config.upload_target:
            raise emd.DeviceError("UPLOAD:path uploads to CONFIG upload_target, which is not set")
        job = self._queue_upload(Value(UPLOAD_TYPE, {"path": path, "target": config.upload_target,
                                                     "options": config.upload_options}))
        ended: Future = Future()

        def settle(job: Future) -> None:
            failure = "the collector closed" if job.cancelled() else job.result()
            if failure:
                ended.set_exception(emd.DeviceError(f"upload of {path} to {config.upload_target} failed: {failure}"))
            else:
                ended.set_result(None)

        job.add_done_callback(settle)
        return ended

    def _queue_upload(self, request: Value) -> Future:
        """Check an UPLOAD request (DeviceError saying why not) and queue it; the future gives
        None when the upload is done, or the message of its failure."""
        path = self.data_file(request["path"], create=False)
        target = request["target"].strip()
        try:
            uploader = installed_uploader(target)
        except ValueError as exc:
            raise emd.DeviceError(str(exc)) from None
        # opened as the uploader will (no link followed, a FIFO does not block): refused now if not a regular file
        os.close(open_regular(self.host.root, self._parts(request["path"]), f"cannot upload {path}"))
        try:
            options = upload_options(request["options"], "UPLOAD options")
        except ValueError as exc:
            raise emd.DeviceError(str(exc)) from None
        check = getattr(uploader, "check", None)
        if check is not None:  # bad options refuse the put now, not later in UPLOAD_STATUS
            try:
                check(path, options)
            except ValueError as exc:
                raise emd.DeviceError(f"{target} upload: {exc}") from None
        self._queued_uploads += 1
        self._upload_status("queued", target, path)
        return self._uploads.submit(self._upload, uploader, target, path, options)

    def _upload(self, uploader: Any, target: str, path: Path, options: dict[str, Any]) -> str | None:
        """Upload with retries (doubling backoff) for failures worth retrying; None when done,
        else the failure's message (also in UPLOAD_STATUS)."""
        self._queued_uploads -= 1
        delay = self.config.upload_backoff
        attempts = self.config.upload_retries + 1
        last_post = 0.0

        def progress(done: int, total: int) -> None:
            nonlocal last_post
            if time.monotonic() - last_post > 0.2 or done == total:  # a few posts a second at most
                last_post = time.monotonic()
                self._upload_status("running", target, path, attempt=attempt, bytes_done=done, bytes_total=total)

        for attempt in range(1, attempts + 1):
            self._upload_status("running", target, path, attempt=attempt)
            try:
                location = uploader.upload(path, options, progress)
            except emd.UploadError as exc:
                retry, message = exc.retry, str(exc)
            except (OSError, TimeoutError) as exc:
                retry, message = True, f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # bad options, or a bug in the uploader: retrying will not help
                retry, message = False, f"{type(exc).__name__}: {exc}"
            else:
                size = path.stat().st_size if path.exists() else 0
                self._upload_status("done", target, path, attempt=attempt, location=str(location),
                                    bytes_done=size, bytes_total=size)
                self.log.info("uploaded %s to %s (%s)", path.name, target, location)
                return None
            if not retry or attempt == attempts:
                self._upload_status("failed", target, path, attempt=attempt, message=message)
                self.log.error("upload of %s to %s failed after %d attempt(s): %s", path.name, target, attempt, message)
                return message
            self._upload_status("retrying", target, path, attempt=attempt, message=f"{message}; retrying in {delay:g} s")
            if self._closing.wait(delay):
                self._upload_status("failed", target, path, attempt=attempt, message="collector closed")
                return "collector closed"
            delay *= 2
        return None  # not reached: the last attempt returns

    def _upload_status(self, state: str, target: str, path: Path, **fields: Any) -> None:
        self.upload_status_pv.post({"state": state, "target": target, "path": str(path),
                                    "queued": max(0, self._queued_uploads), "location": "", "message": "",
                                    "attempt": 0, "bytes_done": 0, "bytes_total": 0, **fields})

    def data_path(self, config: CollectorConfig | None = None) -> Path:
        """The data directory (of `config`, default the current one): data_dir below the
        host's data root; DeviceError for a data_dir that is absolute, has '..' or goes through
        a symbolic link."""
        root = self.host.root
        text = (config or self.config).data_dir
        if not text.strip():
            return root
        parts = relative_parts(text, f"data_dir {text!r}", f"the data root {root}")
        return confined(root, parts, f"data_dir {text!r}")

    def _parts(self, text: str, config: CollectorConfig | None = None) -> tuple[str, ...]:
        """`text` (a path in the data directory) as parts below the data root."""
        config = config or self.config
        directory = self.data_path(config)
        return directory.relative_to(self.host.root).parts + relative_parts(
            text, f"path {text!r}", f"the data directory {directory}")

    def data_file(self, text: str, config: CollectorConfig | None = None, create: bool = True) -> Path:
        """`text` as a path inside the data directory (of `config`, default the current one),
        its directories made if missing (with `create`); DeviceError for anything leading out,
        symbolic links included (no directory on the way, nor the file, may be one)."""
        return confined(self.host.root, self._parts(text, config), f"path {text!r}", create=create)

    def exporter_for(self, name: str, path: Path) -> Any:
        """The installed exporter called `name`, or the one for `path`'s suffix."""
        exporters = emd.exporters()
        installed = ", ".join(sorted(exporters))
        if name:
            if name not in exporters:
                raise emd.DeviceError(f"unknown export format {name!r} (installed: {installed})")
            return exporters[name]
        for exporter in exporters.values():
            if path.suffix in exporter.suffixes:
                return exporter
        raise emd.DeviceError(f"cannot tell the export format of {path.name!r}: give a format (installed: {installed})")

    def _spool_exporter(self, config: CollectorConfig) -> tuple[Any, Path]:
        path = self.data_file(config.spool_file, config)
        exporter = self.exporter_for("", path)
        if not can_spool(exporter):
            raise emd.DeviceError(f"spool_file: the {exporter.name} format cannot spool; use a .h5 file (emd-hdf5)")
        return exporter, path

    def _start_spooling(self) -> None:
        exporter, path = self._spool_exporter(self.config)
        if path != self._spool_path:  # a new file gets everything recorded so far
            self._close_spool()
            self._spool_path, self._spool_cursors, self._spool_state = path, {}, SpoolState()
        if self._spool is None:
            try:
                self._spool = exporter.open_spool(path, {})
            except Exception as exc:
                raise emd.DeviceError(f"cannot spool to {path}: {exc}") from None
        self._spooler = Spooler(self._spool, self.recorders, self._identity(), emd.config_to_dict(self.config),
                                self._spool_cursors, self.config.spool_interval, self.log, self._report_spool,
                                self._spool_state)
        self._report_spool(self._spool_state)
        self._spooler.start()
        self.log.info("spooling to %s every %g s", path, self.config.spool_interval)

    def _report_spool(self, state: SpoolState) -> None:
        """Post SPOOL (message and alarm severity) and its counts; after FAILURES_FOR_MAJOR
        failures in a row, INFO.last_error says so too."""
        self.spool_pv.post(state.message, severity=state.severity, message=state.last_error if state.failures else "")
        for name, pv in self.spool_count_pvs.items():
            pv.post(getattr(state, name))
        if state.failures == FAILURES_FOR_MAJOR:
            self.show_problem(f"spooling to {self._spool_path} failed {state.failures} times in a row, "
                              f"recording goes on in memory: {state.last_error}")

    def _close_spool(self) -> None:
        if self._spool is not None:
            self._spool_state.state = "off"
            self._report_spool(self._spool_state)
            spool, self._spool = self._spool, None
            try:
                spool.close()
            except Exception as exc:  # the rows appended before are in the file already
                self.log.error("closing the spool file failed: %s", exc)

    def _identity(self) -> dict[str, Any]:
        """Who recorded: kept with exports and spool files."""
        info = self._info()
        return {"prefix": self.prefix, "type": self.device_type, "uuid": self.uuid, "host": info["host"],
                "pid": info["pid"], "versions": {"emd-collector": info["plugin_version"],
                                                 "epics-meta-devices": info["core_version"]}}

    def recording(self) -> Recording:
        """A consistent snapshot of everything recorded, for exporters."""
        pvs = {}
        for name, recorder in list(self.recorders.items()):
            columns, events = recorder.snapshot()
            kind = recorder.kind or DEFAULT_KIND
            pvs[name] = RecordedPV(name, kind.kind, kind.code, columns, list(recorder.choices),
                                   recorder.units, dict(recorder.counters), events)
        return Recording(self._identity(), emd.config_to_dict(self.config), pvs, list(self.annotations), time.time())


class _Connections:
    """p4p handler of an OUT PV: counts clients, so only watched PVs are rebuilt."""

    def __init__(self) -> None:
        self.watched = False

    def onFirstConnect(self, pv: SharedPV) -> None:
        self.watched = True

    def onLastDisconnect(self, pv: SharedPV) -> None:
        self.watched = False


@dataclass
class _Output:
    recorder: PVRecorder
    what: str  # "out", "table" or "status"
    pv: SharedPV
    connections: _Connections
    version: int = -1
    kind: Any = None
    history: HistoryElements | None = None  # OUT only, while watched
    first: int = 0  # ROWS only: the first row asked for
    unclaimed: bool = True  # ROWS only: no publish has passed since it was made
    building: threading.Lock = field(default_factory=threading.Lock)


class OutputPVs:
    """Serves OUT:<pv>, OUT:<pv>:TABLE and STATUS:<pv> on demand (a p4p DynamicProvider
    handler): built when a client first asks, so a get always sees current data, then rebuilt
    at the publish period only while a client is connected, so idle histories cost nothing."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.outputs: dict[str, _Output] = {}
        self.lock = threading.Lock()

    def _resolve(self, name: str) -> tuple[PVRecorder, str, int] | None:
        """The recorder `name` serves, what of it ("out", "table", "rows" or "status") and,
        for ROWS, the first row asked for."""
        recorders = self.collector.recorders
        out, status = f"{self.collector.prefix}:OUT:", f"{self.collector.prefix}:STATUS:"
        if name.startswith(out):
            rest = name[len(out):]
            if rest.endswith(":TABLE") and rest[:-6] in recorders:
                return recorders[rest[:-6]], "table", 0
            source, rows, first = rest.rpartition(":ROWS:")
            if rows and source in recorders and re.fullmatch(r"-?[0-9]{1,18}", first):
                return recorders[source], "rows", int(first)
            if rest in recorders:
                return recorders[rest], "out", 0
        elif name.startswith(status) and name[len(status):] in recorders:
            return recorders[name[len(status):]], "status", 0
        return None

    def testChannel(self, name: str) -> Any:
        if self._resolve(name):
            return True
        prefix = self.collector.prefix
        if name.startswith((f"{prefix}:OUT:", f"{prefix}:STATUS:")):
            return DynamicProvider.NotYet  # not cached as absent: input_pvs may name it later
        return False

    def makeChannel(self, name: str, peer: str) -> SharedPV:
        target = self._resolve(name)  # checked again: p4p may ask for names testChannel refused
        if target is None:
            raise KeyError(f"{name} is not served by {self.collector.prefix}")
        recorder, what, first = target
        with self.lock:
            output = self.outputs.get(name)
            if output is None or output.recorder is not recorder:
                if what == "rows" and sum(o.what == "rows" for o in self.outputs.values()) >= MAX_ROW_READS:
                    raise KeyError(f"{self.collector.prefix} serves at most {MAX_ROW_READS} ROWS PVs at once")
                connections = _Connections()
                output = _Output(recorder, what, SharedPV(handler=connections), connections, first=first)
                self.outputs[name] = output
        self._refresh(output)  # current data for this client's first get (unless unchanged)
        return output.pv

    def refresh(self) -> None:
        watched = []
        with self.lock:
            for name, output in list(self.outputs.items()):
                if output.connections.watched:
                    watched.append(output)
                elif output.what == "rows":  # one per read: gone when its reader is
                    if output.unclaimed:  # made a moment ago: its reader may not have attached yet
                        output.unclaimed = False
                    else:
                        self.outputs.pop(name).pv.close()
                else:
                    output.history = None  # its structures cost memory (~0.7 kB each)
        for output in watched:  # built outside the lock: a slow build holds up no new client
            self._refresh(output)

    def _refresh(self, output: _Output) -> None:
        with output.building:  # one build per output at a time (publisher and new clients)
            self._build_and_post(output)

    def _build_and_post(self, output: _Output) -> None:
        recorder = output.recorder
        if output.what == "status":
            value = status_value(recorder)
            kind = recorder.kind or DEFAULT_KIND
        else:
            if output.version == recorder.version and output.pv.isOpen():
                return  # nothing new since the last build: the served value is current
            output.version = recorder.version
            if output.what == "rows":
                columns, first_row = recorder.rows(output.first)
                kind = recorder.kind or DEFAULT_KIND  # read after the columns: the kind they are of
                value = table_value(recorder, columns, first_row, timestamp=time.time())
            elif output.what == "out":
                columns, cursor = recorder.stored()
                kind = recorder.kind or DEFAULT_KIND
                limit = self.collector.config.history_limit
                history = output.history  # one read: refresh() may let go of it meanwhile
                if history is None or (history.kind, history.limit) != (kind, limit):
                    history = output.history = HistoryElements(kind, limit)
                value = out_value(recorder, columns, history.update(columns, cursor))
            else:
                columns, _ = recorder.stored()
                kind = recorder.kind or DEFAULT_KIND
                value = table_value(recorder, columns, timestamp=time.time())
        if not output.pv.isOpen():
            output.pv.open(value)
        elif kind != output.kind:  # first data fixed the type: clients reconnect to the new one
            output.pv.close()
            output.pv.open(value)
        else:
            output.pv.post(value)
        output.kind = kind

    def forget(self, recorder: PVRecorder) -> None:
        """Stop serving a recorder's PVs (clients see them disconnect)."""
        with self.lock:
            for name in [n for n, o in self.outputs.items() if o.recorder is recorder]:
                self.outputs.pop(name).pv.close()

    def close(self) -> None:
        with self.lock:
            for output in self.outputs.values():
                output.pv.close()
            self.outputs.clear()


__all__ = ["Collector", "CollectorConfig"]
