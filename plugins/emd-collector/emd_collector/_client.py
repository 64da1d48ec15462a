"""CollectorClient (the typed client of collect.Collector) and CollectorManagement, the v1
convenience API: ``CollectorManagement().add_collector(["circle:x", "circle:y"])``."""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from p4p import Type, Value

import epics_meta_devices as emd

from ._frames import DurationLike, PVSelection, TimeLike, in_range, time_ns, to_pandas, to_xarray
from ._output import epics_seconds, expand_alarms
from ._recording import RecordedPV, Recording

COLUMNS = "value,time_ns,alarm_row,alarm_severity,alarm_status,length,width,choices,kind"
HISTORY_ARGS = Type([("pv", "s"), ("start", "d"), ("end", "d"), ("max_points", "l")])


class CollectorClient(emd.DeviceClient):
    """Drive a collector and read what it recorded."""

    def start(self) -> None:
        self.enable()

    def stop(self) -> None:
        self.disable()

    def clear(self) -> None:
        self.put("CLEAR", True)

    def record(self, *pvs: str, **config: Any) -> None:
        """Configure the PVs to record (and other CONFIG fields), then start."""
        self.configure(input_pvs=list(pvs), **config)
        self.start()

    def get(self, pv: str, request: str | None = None) -> Value:
        """``OUT:<pv>``: ``.history`` holds the recorded updates as the source served them.
        (For the collector's own PVs use `get_pv`.)"""
        return self.get_pv(f"OUT:{pv}", request=request)

    def data(self, pv: str, start: TimeLike | None = None, end: TimeLike | None = None) -> dict[str, np.ndarray]:
        """The recorded columns of `pv` as NumPy arrays: value, time_ns (ns since the epoch),
        time (s since the epoch, float), severity and status (per sample); waveforms as 2-D
        ``value`` with ``length``. `start` and `end` (epoch seconds, datetime or ISO 8601
        text; None = open) keep the samples with start <= time <= end."""
        columns = dict(self.recorded(pv, start, end).columns)
        columns["time"] = epics_seconds(columns["time_ns"])
        return columns

    def recorded(self, pv: str, start: TimeLike | None = None, end: TimeLike | None = None) -> RecordedPV:
        """`pv`'s recording (columns, kind, units, choices) between `start` and `end`, as an
        exporter gets it; without events and counters, which OUT does not serve."""
        first, last = time_ns(start, "start"), time_ns(end, "end")  # bad times: before any transfer
        pv = emd.without_scheme(pv)
        try:
            out = self.get_pv(f"OUT:{pv}", request=f"field({COLUMNS},units)")
        except emd.DeviceTimeout:
            recorded = self.config["input_pvs"]
            if pv in [emd.parse_input(name).name for name in recorded]:
                raise
            raise emd.DeviceError(f"{self.prefix} does not record {pv!r} "
                                  f"(input_pvs: {', '.join(recorded) or 'none'})") from None
        columns = {"value": np.asarray(out["value"]), "time_ns": np.asarray(out["time_ns"], dtype=np.int64)}
        columns["severity"], columns["status"] = expand_alarms(
            out["alarm_row"], out["alarm_severity"], out["alarm_status"], len(columns["time_ns"]))
        if out["kind"] == "waveform" and out["width"]:
            columns["value"] = columns["value"].reshape(-1, out["width"])
            columns["length"] = np.asarray(out["length"])
        code = out.type().aspy("value").lstrip("a")
        whole = RecordedPV(pv, out["kind"], code, columns, list(out["choices"]), out["units"])
        return in_range(whole, first, last)

    def recording(self, pvs: PVSelection = None, start: TimeLike | None = None,
                  end: TimeLike | None = None) -> Recording:
        """A snapshot of what the collector recorded of `pvs` (default: its input_pvs; others
        are refused) between `start` and `end`, as a `Recording` (what frames and plots are
        made of, as for files)."""
        inputs = [emd.parse_input(name).name for name in self.config["input_pvs"]]  # without ca:// etc.
        asked = inputs if pvs is None else [pvs] if isinstance(pvs, str) else list(pvs)
        names = [emd.without_scheme(name) for name in asked]
        unknown = [name for name in names if name not in inputs]
        if unknown:  # said at once: a get of an OUT PV that is not served waits for the timeout
            raise emd.DeviceError(f"{self.prefix} does not record {', '.join(map(repr, unknown))} "
                                  f"(input_pvs: {', '.join(inputs) or 'none'})")
        return Recording({"prefix": self.prefix}, {}, {name: self.recorded(name, start, end) for name in names},
                         [], time.time())

    def to_pandas(self, pvs: PVSelection = None, start: TimeLike | None = None, end: TimeLike | None = None,
                  align: str | None = None, tolerance: DurationLike | None = None, on: str | None = None) -> Any:
        """pandas DataFrames of the recording (needs pandas): a dict of one DataFrame per PV
        (the DataFrame itself for one PV name), or with `align` ('asof' or 'nearest', within
        `tolerance` seconds) one DataFrame on a common time axis (every PV's timestamps, or
        those of the PV `on`). Times are datetime64[ns, UTC]."""
        return to_pandas(self, pvs, start, end, align, tolerance, on)

    def to_xarray(self, pvs: PVSelection = None, start: TimeLike | None = None, end: TimeLike | None = None,
                  align: str | None = None, tolerance: DurationLike | None = None, on: str | None = None) -> Any:
        """An xarray Dataset of the recording (needs xarray): one variable per PV with its
        units, datetime64[ns] (UTC) time coordinates; `align` as for `to_pandas`."""
        return to_xarray(self, pvs, start, end, align, tolerance, on)

    def history(self, pv: str, start: float = 0.0, end: float = 0.0, max_points: int = 0) -> dict[str, np.ndarray]:
        """Range query (HISTORY RPC): samples between `start` and `end` (epoch seconds; 0 = open),
        min/max-decimated to at most about `max_points`."""
        arguments = Value(HISTORY_ARGS, {"pv": emd.without_scheme(pv), "start": start, "end": end, "max_points": max_points})
        try:
            table = self._context.rpc(self.pv_name("HISTORY"), arguments, timeout=self.timeout)
        except TimeoutError:
            raise emd.DeviceTimeout(f"{self.pv_name('HISTORY')} did not answer within {self.timeout} s") from None
        except Exception as exc:
            raise emd.DeviceError(f"{self.pv_name('HISTORY')}: {exc}") from None
        return {name: np.asarray(table["value"][name]) for name in table["value"].keys()}

    def status(self, pv: str | None = None) -> dict[str, Any]:
        """Counters and connection state of one input PV, or the totals."""
        return self.get_pv(f"STATUS:{emd.without_scheme(pv)}" if pv else "STATUS").todict()

    def annotate(self, key: str, value: str, at: float | None = None) -> None:
        self.put("ANNOTATE", {"key": key, "value": value, "time": at or 0.0})

    def export(self, path: str, format: str = "", timeout: float = 300.0, **options: Any) -> str:
        """Export to `path` inside the collector's data directory (format from its suffix unless
        given; `options` go to the exporter); returns the file it wrote."""
        self.put("EXPORT", {"path": path, "format": format, "options": json.dumps(options) if options else ""},
                 timeout=timeout)
        return self.get_pv("EXPORT_STATUS")["path"]

    def to_hdf(self, path: str, timeout: float = 300.0, **options: Any) -> str:
        """Export as NeXus/HDF5 (needs the emd-hdf5 plugin where the collector runs)."""
        return self.export(path, "hdf5", timeout, **options)

    def upload(self, path: str, target: str, **options: Any) -> None:
        """Queue an upload of `path` (in the data directory) to `target`; it runs in the
        background: follow it with `upload_status()` or `wait_for_upload()`."""
        self.put("UPLOAD", {"path": path, "target": target, "options": json.dumps(options) if options else ""})

    def upload_status(self) -> dict[str, Any]:
        return self.get_pv("UPLOAD_STATUS").todict()

    def wait_for_upload(self, timeout: float = 300.0) -> dict[str, Any]:
        """Block until the last upload is done or failed (with nothing queued); its status."""
        import queue as queue_module

        updates: queue_module.Queue[Any] = queue_module.Queue()
        subscription = self._context.monitor(self.pv_name("UPLOAD_STATUS"), updates.put)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    status = updates.get(timeout=max(0.0, deadline - time.monotonic())).todict()
                except queue_module.Empty:
                    raise emd.DeviceTimeout(f"{self.prefix}: upload not finished within {timeout} s") from None
                if status["state"] in ("done", "failed") and not status["queued"]:
                    return status
        finally:
            subscription.close()


def local_factory_prefix() -> str:
    """The prefix of this user's local factory on this host."""
    return f"emd:{socket.gethostname()}:{getpass.getuser()}:factory"


class CollectorManagement:
    """The v1 API: collectors on a local factory (started on demand) or on a named remote one.

        client = CollectorManagement()
        coll = client.add_collector(["circle:x", "circle:y"])
        rcoll = client.add_collector(["circle:p"], type="remote", url="collect-host:factory")
    """

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout

    def add_collector(
        self,
        pvs: Sequence[str],
        type: str = "local",
        url: str | None = None,
        prefix: str | None = None,
        **config: Any,
    ) -> CollectorClient:
        """Create a collector recording `pvs`, enabled; `url` is the remote factory's prefix."""
        if type == "local":
            factory = url or local_factory_prefix()
            self._ensure_local_factory(factory)
        elif type == "remote":
            if not url:
                raise emd.DeviceError("a remote collector needs url=<factory prefix>")
            factory = url
        else:
            raise emd.DeviceError(f"type must be 'local' or 'remote', not {type!r}")
        with emd.FactoryClient(factory, timeout=self.timeout) as factory_client:
            name = prefix or f"{factory}:collector:{uuid.uuid4().hex[:8]}"
            factory_client.create("collect.Collector", name, {"input_pvs": list(pvs), **config})
        collector = CollectorClient(name, timeout=self.timeout)
        collector.start()
        return collector

    def _ensure_local_factory(self, factory: str) -> None:
        with emd.DeviceClient(factory, timeout=1.0) as probe:
            try:
                probe.state
                return
            except emd.DeviceTimeout:
                pass
        log = Path(tempfile.gettempdir()) / f"emd-factory-{os.getuid()}.log"
        with open(log, "ab") as out:  # detached: it outlives this Python session, like a service
            subprocess.Popen([sys.executable, "-m", "epics_meta_devices", "factory", "run", factory],
                             stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        with emd.DeviceClient(factory, timeout=self.timeout) as client:
            client.wait_for_state("running", timeout=max(1.0, deadline - time.monotonic()))
