"""ACQUIRE: a collector run as one put, as an EPICS busy record works, so a Bluesky plan (or an
ophyd-async Flyable) starts a run with a put and waits for the put to complete.

A put of 1 enables the collector and completes when the run ends: after CONFIG's
``acquire_time`` seconds, once every input PV has ``acquire_samples`` new samples, or when
somebody puts ACQUIRE=0 (or ENABLE=0). The collector is disabled again at the end; what was
recorded stays (OUT, TABLE, HISTORY, EXPORT), as after any disable."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING

import epics_meta_devices as emd

if TYPE_CHECKING:
    from ._device import Collector

POLL = 0.05
"""Seconds between checks of a running acquisition's end (its time and sample limits)."""


class Acquisition:
    """The collector's current ACQUIRE run, if any: at most one at a time."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self._done: Future | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self._done is not None and not self._done.done()

    def put(self, value: int) -> Future | None:
        """The ACQUIRE put handler: 1 starts a run (the put completes with it), 0 ends one."""
        collector = self.collector
        if not value:
            if self.running:
                self._stop.set()
            return None
        if self.running:
            raise emd.DeviceError(f"{collector.prefix} is acquiring already: put ACQUIRE=0 to end that run first")
        if collector.state is emd.DeviceState.running:
            raise emd.DeviceError(f"{collector.prefix} is recording already (ENABLE=1): disable it, then put ACQUIRE=1")
        config = collector.config
        stored = {name: recorder.counters["stored"] for name, recorder in collector.recorders.items()}
        collector.set_enabled(True)  # refuses with the reason (not configured, a spool that cannot open)
        self._stop.clear()
        done: Future = Future()
        self._done = done
        collector.acquire_pv.post(1)
        threading.Thread(target=self._wait, args=(done, config.acquire_time, config.acquire_samples, stored),
                         name=f"acquire:{collector.prefix}", daemon=True).start()
        return done

    def _wait(self, done: Future, seconds: float, samples: int, stored: dict[str, int]) -> None:
        collector = self.collector
        deadline = time.monotonic() + seconds if seconds > 0 else None
        reason = ""
        while not reason:
            if self._stop.wait(POLL):
                reason = "ACQUIRE=0"
            elif collector.state is not emd.DeviceState.running:
                reason = f"the collector left running ({collector.state.value})"
            elif deadline is not None and time.monotonic() >= deadline:
                reason = f"acquire_time {seconds:g} s"
            elif samples and all(r.counters["stored"] - stored.get(n, 0) >= samples
                                 for n, r in list(collector.recorders.items())):
                reason = f"acquire_samples {samples}"
        try:
            collector.set_enabled(False)
        except emd.DeviceError as exc:
            collector.log.error("ending the acquisition: %s", exc)
        collector.acquire_pv.post(0)
        collector.log.info("acquisition ended: %s", reason)
        if collector.state is emd.DeviceState.error:
            done.set_exception(emd.DeviceError(f"{collector.prefix} went to error while acquiring "
                                               "(INFO.last_error says why)"))
        else:
            done.set_result(None)

    def end(self) -> None:
        """End a running acquisition (the collector closes)."""
        self._stop.set()
