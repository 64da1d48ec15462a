"""Collector: an emd collector as a Bluesky flyer (Preparable, Flyable, EventPageCollectable,
Stoppable) that is also Readable in step scans.

A fly scan is the collector's ACQUIRE run: prepare disables the collector and sets the run's
CONFIG, kickoff puts ACQUIRE=1 without waiting, complete is that put's completion (the run
ends by CONFIG's acquire_time or acquire_samples, or by `stop`, which puts ACQUIRE=0).
kickoff also opens each recorded PV's ``OUT:<pv>:ROWS:<first>`` at the run's first row;
collect_pages gets it and yields the rows after the last it yielded, one event page per PV,
each PV its own stream. Rows carry their number, so a collect that finds rows missing (the
collector's ring dropped them before they were collected) says so instead of passing over it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, AsyncIterator, Mapping

import numpy as np
from bluesky.protocols import EventPageCollectable, Flyable, Preparable, Stoppable
from ophyd_async.core import AsyncStatus, wait_for_value
from p4p.client.asyncio import Context

import epics_meta_devices as emd

from ._device import EmdDevice

log = logging.getLogger(__name__)

GAP_SEVERITY, GAP_STATUS = 3, 7
"""How the collector marks a gap (a disconnect, a stalled source): a row of severity INVALID and
status CLIENT, NaN for numbers (docs/collector.md, "Gaps")."""

PAGE_FIELDS = ("row", "time", "value", "severity", "status")
PAGE_COLUMNS = f"field({','.join('value.' + name for name in PAGE_FIELDS)})"
"""What a page needs of ROWS (``time``: float seconds as EPICS clients make them of the
source's timestamps; ``time_ns`` would be the same again)."""
READ_TIMEOUT = 30.0
"""Seconds a read of the collector may take (a ROWS read of a long run is a few MB)."""

_DTYPES = {"f": "number", "i": "integer", "u": "integer", "b": "boolean", "U": "string", "O": "string"}


def data_key_name(device_name: str, pv: str) -> str:
    """The event-page key of a recorded PV: the device's name, a dash, the PV name with every
    character Bluesky keys should not hold (``:``, ``.``) as ``_``."""
    return f"{device_name}-{re.sub(r'[^A-Za-z0-9_]', '_', pv)}"


class Collector(EmdDevice, Preparable, Flyable, EventPageCollectable, Stoppable):
    """An emd collector under `prefix`: every EmdDevice signal (``config.input_pvs``,
    ``config.acquire_time``, ``acquire``, ...) plus the flyer protocol. Each recorded PV is a
    stream named by its data key with three keys: the value, ``<key>-severity`` (the alarm
    severity per sample) and ``<key>-gap`` (true at the rows that mark a gap in the data).
    `read` gives the newest sample of each PV."""

    def __init__(self, prefix: str, name: str = "", config: Mapping[str, Any] | None = None) -> None:
        super().__init__(prefix, name=name, config=config)
        self._context: Context | None = None
        self._next_rows: dict[str, int] = {}  # per PV, the first row not yet collected
        self._run_rows: dict[str, int] = {}  # per PV, the run's first row (its ROWS PV)
        self._acquiring: AsyncStatus | None = None

    # -- what is recorded -------------------------------------------------------------------------

    def _pvs(self) -> list[str]:
        """The recorded PVs as the collector names its OUT PVs (without ``ca://``/``pva://``)."""
        return list(dict.fromkeys(emd.without_scheme(name) for name in self._input_pvs))

    async def _load_input_pvs(self) -> None:
        self._input_pvs = list(await self.config.input_pvs.get_value())

    def _ctxt(self) -> Context:
        if self._context is None:  # made on the RunEngine's loop, where it is used
            self._context = Context("pva", nt=False)
        return self._context

    async def _rows(self, pv: str, first: int, keep: bool = False) -> Any:
        """A read of ``OUT:<pv>:ROWS:<first>``: the columns a page needs. Its channel is closed
        after (the collector lets a ROWS PV go once its reader has) unless `keep`: a run's
        channel stays open from kickoff to the next, as a new channel costs a search (~12 ms)."""
        name = f"{self.prefix}:OUT:{pv}:ROWS:{first}"
        try:
            return (await asyncio.wait_for(self._ctxt().get(name, PAGE_COLUMNS), READ_TIMEOUT)).value
        finally:
            if not keep:
                self._ctxt().disconnect(name)

    # -- fly scan ---------------------------------------------------------------------------------

    @AsyncStatus.wrap
    async def prepare(self, value: Mapping[str, Any] | None = None) -> None:
        """Ready for a kickoff: stop recording (ENABLE=0; a factory enables what it creates,
        and ACQUIRE runs only from a disabled collector), then put the CONFIG fields of
        `value` (``{"acquire_time": 10}``), each through ``CONFIG:<field>``, so a refusal
        raises with the collector's message."""
        await self.enable.set(False)
        await self.put_config(value or {})

    @AsyncStatus.wrap
    async def kickoff(self) -> None:
        """Start an ACQUIRE run; done once the collector records. Collects from here on yield
        what this run records."""
        await self._load_input_pvs()
        for pv, first in self._run_rows.items():  # the previous run's channels
            self._ctxt().disconnect(f"{self.prefix}:OUT:{pv}:ROWS:{first}")
        self._next_rows, self._run_rows = {}, {}
        for pv in self._pvs():  # the next row of each PV: what the run records starts there
            newest = await self._rows(pv, -1)
            self._next_rows[pv] = int(newest["row"][-1]) + 1 if len(newest["row"]) else 0
            # open now: the collector serves this ROWS PV, refreshed while the run goes on and
            # once more when it ends, until this reader lets it go
            self._run_rows[pv] = self._next_rows[pv]
            await self._rows(pv, self._run_rows[pv], keep=True)
        self._acquiring = self.acquire.set(1, timeout=None)  # completes when the run ends
        await self._until_recording()

    async def _until_recording(self) -> None:
        """Wait until the run started (ACQUIRE reads 1; STATE may be running already when the
        put is refused) or the ACQUIRE put was refused."""
        running = asyncio.ensure_future(wait_for_value(self.acquire, 1, timeout=None))
        done, _ = await asyncio.wait([running, asyncio.ensure_future(self._acquiring.task)],
                                     return_when=asyncio.FIRST_COMPLETED)
        if running not in done:
            running.cancel()
            await self._acquiring  # raises the collector's reason (not configured, acquiring already)
            # a run so short it ended before ACQUIRE was seen at 1: nothing to wait for

    def complete(self) -> AsyncStatus:
        """Done when the run ends (acquire_time, acquire_samples, `stop`, or ACQUIRE=0 from
        anywhere); fails with the collector's message if the run did."""
        if self._acquiring is None:
            raise RuntimeError(f"{self.name or self.prefix}: complete() without kickoff()")
        return self._acquiring

    @AsyncStatus.wrap
    async def stop(self, success: bool = True) -> None:
        """End the ACQUIRE run (ACQUIRE=0); what was recorded stays to collect."""
        await self.acquire.set(0)

    async def describe_collect(self) -> dict[str, dict[str, Any]]:
        """One stream per recorded PV, named as its value key (see `data_key_name`)."""
        if not self._next_rows:
            await self._load_input_pvs()
        streams: dict[str, dict[str, Any]] = {}
        for pv in self._pvs():
            keys = await self._describe_pv(pv)
            streams[next(iter(keys))] = keys
        return streams

    async def _describe_pv(self, pv: str) -> dict[str, Any]:
        key = data_key_name(self.name, pv)
        newest = await self._rows(pv, -1)
        out = await asyncio.wait_for(self._ctxt().get(f"{self.prefix}:OUT:{pv}", "field(units,choices,kind)"),
                                     READ_TIMEOUT)
        source = f"pva://{self.prefix}:OUT:{pv}:ROWS"
        value_key: dict[str, Any] = {"source": source, "shape": [], "units": out["units"],
                                     "dtype": _DTYPES.get(np.asarray(newest["value"]).dtype.kind, "number")
                                     if "value" in newest else "number"}
        if out["kind"] == "enum":
            value_key["choices"] = list(out["choices"])
        return {
            key: value_key,
            f"{key}-severity": {"source": source, "shape": [], "dtype": "integer"},
            f"{key}-gap": {"source": source, "shape": [], "dtype": "boolean"},
        }

    async def collect_pages(self) -> AsyncIterator[dict[str, Any]]:
        """Per recorded PV, the rows stored since the last collect (since kickoff at first), as
        one event page with the times the source stamped them. The run's ROWS PV holds the
        run's rows as of the collector's last publish (and all of them once the run ended):
        rows a collect during the run does not see yet, the next one yields."""
        if not self._run_rows:
            raise RuntimeError(f"{self.name or self.prefix}: collect before kickoff")
        for pv, run_first in self._run_rows.items():
            rows = await self._rows(pv, run_first, keep=True)
            numbers = np.asarray(rows["row"])
            first = self._next_rows[pv]
            new = slice(int(np.searchsorted(numbers, first)), None)  # row numbers ascend
            numbers = numbers[new]
            if not len(numbers):
                continue
            if numbers[0] > first:
                log.warning("%s: rows %d to %d of %s were dropped by the collector's ring before "
                            "they were collected (raise max_samples)", self.prefix, first, numbers[0] - 1, pv)
            self._next_rows[pv] = int(numbers[-1]) + 1
            yield self._page(pv, {column: np.asarray(rows[column])[new] for column in PAGE_FIELDS if column in rows})

    def _page(self, pv: str, rows: Any) -> dict[str, Any]:
        """An event page of `rows` (columns of ROWS). Its columns are NumPy arrays, as
        ophyd-async readings of arrays are: lists would cost more than reading them
        (serialisers of documents, such as event-model's NumpyEncoder, take either)."""
        key = data_key_name(self.name, pv)
        times = np.asarray(rows["time"])  # the floats a reading of the source itself gives
        severity, status = np.asarray(rows["severity"]), np.asarray(rows["status"])
        values = np.asarray(rows["value"]) if "value" in rows else np.full(len(times), None)
        data = {key: values, f"{key}-severity": severity,
                f"{key}-gap": (severity == GAP_SEVERITY) & (status == GAP_STATUS)}
        return {"time": times, "data": data, "timestamps": {name: times for name in data}}

    # -- step scans -------------------------------------------------------------------------------

    async def describe(self) -> dict[str, Any]:
        await self._load_input_pvs()
        keys: dict[str, Any] = {}
        for pv in self._pvs():
            keys.update(await self._describe_pv(pv))
        return keys

    async def read(self) -> dict[str, Any]:
        """The newest sample of each recorded PV (none yet: no reading of it)."""
        await self._load_input_pvs()
        readings: dict[str, Any] = {}
        for pv in self._pvs():
            rows = await self._rows(pv, -1)
            if len(rows["row"]):
                page = self._page(pv, rows)
                readings.update({name: {"value": values[-1].item(), "timestamp": float(page["time"][-1])}
                                 for name, values in page["data"].items()})
        return readings

