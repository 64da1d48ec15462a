"""Continuous spooling: while a collector records, append what is new to a file at a set
interval, so readers can follow the recording and a crash loses at most one interval.

The file format comes from an exporter that can spool (``open_spool``, e.g. emd-hdf5's SWMR
files); this module decides what is new since the last write, when to write it, and what to
do when a write fails. Nothing is lost silently: rows leave the pending set only once the
spool took them (appended and flushed); a failed append is tried again at the next interval
with everything pending; and the pending rows are bounded by the ring buffers themselves (rows
the ring overwrites before they were spooled are counted as lost, per PV and in total).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ._recorder import PVRecorder
from ._recording import RecordedPV, Recording

Cursor = tuple[int, int]

FAILURES_FOR_MAJOR = 3
"""Consecutive failed appends after which SPOOL's severity goes from MINOR to MAJOR (and the
error goes to INFO.last_error): a full disk that does not clear by itself needs somebody."""


@dataclass
class SpoolState:
    """What SPOOL shows: ``off``, ``ok`` or ``failing``, with the counts behind it."""

    state: str = "off"
    rows_spooled: int = 0
    """Rows the spool took since this collector started spooling to this file."""
    rows_pending: int = 0
    """Rows recorded but not spooled yet (after a failure: waiting for the next attempt)."""
    rows_lost: int = 0
    """Rows the ring buffers overwrote before they could be spooled."""
    failures: int = 0
    """Consecutive failed appends (0 once one succeeds)."""
    last_error: str = ""

    @property
    def severity(self) -> int:
        """EPICS alarm severity: NO_ALARM, MINOR while failing, MAJOR after FAILURES_FOR_MAJOR
        failures in a row."""
        if self.failures >= FAILURES_FOR_MAJOR:
            return 2
        return 1 if self.failures else 0

    @property
    def message(self) -> str:
        if self.state == "failing":
            return (f"spool failing ({self.failures} in a row): {self.last_error}; {self.rows_pending} rows pending, "
                    f"{self.rows_lost} lost")
        return f"spool {self.state}: {self.rows_spooled} rows spooled, {self.rows_lost} lost"


class Spooler:
    """Every `interval` seconds, hands the samples stored since the last successful write to
    `spool` (``spool.append(recording)`` with only those rows; the spool flushes them and
    leaves the file as it was if it raises). The spool stays the caller's to close: a collector
    keeps its file open while disabled, so enabling again costs no reopening.

    `cursors` (PV name -> position of the last row spooled) are the caller's, so a collector
    enabled again continues the same file where it stopped instead of writing rows twice.
    `report(state)` is called after every attempt, successful or not.
    """

    def __init__(self, spool: Any, recorders: Mapping[str, PVRecorder], identity: dict[str, Any],
                 config: dict[str, Any], cursors: dict[str, Cursor], interval: float,
                 log: logging.LoggerAdapter, report: Callable[[SpoolState], None] = lambda state: None,
                 state: SpoolState | None = None) -> None:
        self.spool = spool
        self.recorders = recorders
        self.identity = identity  # fixed while spooling: CONFIG cannot change while running
        self.config = config
        self.cursors = cursors
        self.interval = interval
        self.log = log
        self.report = report
        self.state = state if state is not None else SpoolState()
        self.state.state = "failing" if self.state.failures else "ok"
        self._lost_at_cursor: dict[str, int] = {}  # rows counted lost since each PV's cursor
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="spool", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write what is left (one last attempt) and stop the interval thread."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(30)
        self.write()

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            self.write()

    def write(self) -> bool:
        """Append everything not spooled yet; True if the spool took it. A failure keeps the
        rows pending for the next attempt, and is counted, logged and reported."""
        pvs: dict[str, RecordedPV] = {}
        moved: dict[str, Cursor] = {}
        pending = 0
        for name, recorder in list(self.recorders.items()):
            cursor = self.cursors.get(name, (0, 0))
            columns, dropped, moved[name] = recorder.since(cursor)
            newly_lost = dropped - self._lost_at_cursor.get(name, 0)
            if newly_lost > 0:  # the ring overwrote rows before they could be spooled
                self._lost_at_cursor[name] = dropped
                self.state.rows_lost += newly_lost
                self.log.warning("%d samples of %s were overwritten before they were spooled", newly_lost, name)
            rows = len(columns.get("time_ns", ()))
            if rows and recorder.kind is not None:
                pending += rows
                pvs[name] = RecordedPV(name, recorder.kind.kind, recorder.kind.code, columns,
                                       list(recorder.choices), recorder.units)
        self.state.rows_pending = pending
        try:
            self.spool.append(Recording(self.identity, self.config, pvs, [], time.time()))
        except Exception as exc:  # the recording goes on in memory; the rows stay pending
            self.state.failures += 1
            self.state.state, self.state.last_error = "failing", _reason(exc)
            self.log.error("spooling failed (%d in a row), %d rows pending: %s", self.state.failures, pending,
                           self.state.last_error)
            self.report(self.state)
            return False
        self.cursors.update(moved)  # only now: these rows are in the file
        self._lost_at_cursor.clear()
        if self.state.failures:
            self.log.warning("spooling works again after %d failures: %d rows written", self.state.failures, pending)
        self.state.failures, self.state.state = 0, "ok"
        self.state.rows_spooled += pending
        self.state.rows_pending = 0
        self.report(self.state)
        return True


def _reason(exc: Exception) -> str:
    """A one-line reason: the OS's words for an OS error (HDF5's own message spans lines)."""
    if isinstance(exc, OSError) and exc.errno:
        return f"{type(exc).__name__}: {os.strerror(exc.errno)}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def can_spool(exporter: Any) -> bool:
    """Whether an exporter writes spool files (has ``open_spool(path, options)``)."""
    return callable(getattr(exporter, "open_spool", None))
