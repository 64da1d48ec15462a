"""Continuous spooling: while a collector records, append what is new to a file at a set
interval, so readers can follow the recording and a crash loses at most one interval.

The file format comes from an exporter that can spool (``open_spool``, e.g. emd-hdf5's SWMR
files); this module only decides what is new since the last write and when to write it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Mapping

from ._recorder import PVRecorder
from ._recording import RecordedPV, Recording

Cursor = tuple[int, int]


class Spooler:
    """Every `interval` seconds, hands the samples stored since the last write to `spool`
    (``spool.append(recording)`` with only the new rows). The spool stays the caller's to close:
    a collector keeps its file open while disabled, so enabling again costs no reopening.

    `cursors` (PV name -> position) are the caller's, so a collector enabled again continues
    the same file where it stopped instead of writing its samples twice.
    """

    def __init__(self, spool: Any, recorders: Mapping[str, PVRecorder], identity: dict[str, Any],
                 config: dict[str, Any], cursors: dict[str, Cursor], interval: float,
                 log: logging.LoggerAdapter) -> None:
        self.spool = spool
        self.recorders = recorders
        self.identity = identity  # fixed while spooling: CONFIG cannot change while running
        self.config = config
        self.cursors = cursors
        self.interval = interval
        self.log = log
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="spool", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write what is left (flushed to the file) and stop the interval thread."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(30)
        try:
            self.write()
        except Exception as exc:  # stopping must not fail: the recording is in memory still
            self.log.error("spooling failed at the end: %s", exc)

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.write()
            except Exception as exc:  # the recording goes on; the file misses this interval
                self.log.error("spooling failed: %s", exc)

    def write(self) -> None:
        """Append everything stored since the last write."""
        pvs = {}
        for name, recorder in list(self.recorders.items()):
            columns, dropped, self.cursors[name] = recorder.since(self.cursors.get(name, (0, 0)))
            if dropped:  # max_samples too small for one interval
                self.log.warning("%d samples of %s were dropped before they were spooled", dropped, name)
            if columns and len(columns["time_ns"]) and recorder.kind is not None:
                pvs[name] = RecordedPV(name, recorder.kind.kind, recorder.kind.code, columns,
                                       list(recorder.choices), recorder.units)
        self.spool.append(Recording(self.identity, self.config, pvs, [], time.time()))


def can_spool(exporter: Any) -> bool:
    """Whether an exporter writes spool files (has ``open_spool(path, options)``)."""
    return callable(getattr(exporter, "open_spool", None))


__all__ = ["Spooler", "can_spool"]
