"""Input PVs of either protocol: ``pva://NAME``, ``ca://NAME`` or a bare NAME (PVAccess).

The one place a protocol is added: devices name their inputs with `parse_input`, and
`MetaDevice.monitor`, `get_pv` and `put_pv` (and the collector's recorder) dispatch on
`InputPV.protocol`. Channel Access goes through aioca, the asyncio CA client ophyd-async uses,
on the libca of epicscorelibs that p4p's EPICS libraries already bring (docs/collector.md says
why it was chosen over pyepics). aioca needs an asyncio loop: `channel_access()` runs one in a
thread of its own, shared by every device of the process.
"""

from __future__ import annotations

import asyncio
import ctypes
import re
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Coroutine

import numpy as np
from p4p import Type, Value
from p4p.client.raw import Disconnected

PROTOCOLS = ("pva", "ca")
"""The protocols an input PV may name, the default first."""
PV_NAME = re.compile(r"^[A-Za-z0-9_\-+:\[\]<>;.{}$]+$")
"""The characters of an EPICS PV name (record names and field suffixes)."""
CA_HINT_AFTER = 5.0
"""Seconds a bare (PVAccess) name may go unanswered before a device says it may be CA-only."""


def ca_hint(name: str) -> str:
    """What a device says of a bare (PVAccess) name no server answered within CA_HINT_AFTER s."""
    return (f"no PVAccess server answered {name} within {CA_HINT_AFTER:g} s; "
            f"if it is served by Channel Access only, name it ca://{name}")


class InputNameError(ValueError):
    """An input PV name that cannot be used; the message says why and what would do."""


@dataclass(frozen=True)
class InputPV:
    """An input PV: its name without the scheme and the protocol it is reached by."""

    name: str
    protocol: str = "pva"

    def __str__(self) -> str:
        return f"{self.protocol}://{self.name}"


def parse_input(text: Any, default_protocol: str = "pva") -> InputPV:
    """The InputPV of a name as a user writes it; InputNameError says what is wrong with it."""
    if not isinstance(text, str):
        raise InputNameError(f"an input PV name must be a string, not {type(text).__name__}")
    if not text:
        raise InputNameError("an input PV name is empty")
    scheme, separator, name = text.partition("://")
    if not separator:
        scheme, name = default_protocol, text
    elif scheme not in PROTOCOLS:
        raise InputNameError(f"unknown protocol {scheme!r} in input PV {text!r}: "
                             "write ca://NAME, pva://NAME or a bare NAME (PVAccess)")
    if not name:
        raise InputNameError(f"input PV {text!r} names no PV after {scheme}://")
    if not PV_NAME.match(name):
        raise InputNameError(f"invalid PV name {text!r}: a PV name has no spaces, quotes, commas or "
                             "control characters")
    return InputPV(name, scheme)


def without_scheme(text: str) -> str:
    """A name as a user writes it, without ``ca://`` or ``pva://``: what a collector records
    it as (its OUT and STATUS PVs), and how two spellings of one PV are compared."""
    return text.partition("://")[2] or text


# -- Channel Access ---------------------------------------------------------------------------

# DBR type codes (db_access.h) -> PVAccess type codes of the value (enums: their index, "i")
CA_CODES = {0: "s", 1: "h", 2: "f", 3: "i", 4: "B", 5: "i", 6: "d"}
DBR_ENUM = 3
DISPLAY = ("display", ("S", None, [("limitLow", "d"), ("limitHigh", "d"), ("description", "s"),
                                   ("units", "s"), ("precision", "i")]))
"""The display structure of the NT values of CA inputs: units, precision and limits from DBR_CTRL."""


class ChannelAccess:
    """The process's CA client: aioca on an asyncio loop in a thread of its own. Calls from
    any thread; monitor callbacks run on that loop's thread and must not block."""

    def __init__(self) -> None:
        import aioca  # here: only processes that name a ca:// input load libca

        self.aioca = aioca
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="emd-ca", daemon=True)
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float) -> Any:
        """Run `coroutine` on the CA loop and wait for its result (raises what it raised)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout + 5)

    def get(self, name: str, timeout: float, control: bool = False) -> Any:
        """One DBR_TIME (or with `control`, DBR_CTRL) value of `name`, as aioca gives it."""
        aioca = self.aioca
        return self.call(aioca.caget(name, format=aioca.FORMAT_CTRL if control else aioca.FORMAT_TIME,
                                     count=0, timeout=timeout), timeout)

    def put(self, name: str, value: Any, timeout: float) -> None:
        """Write `value` to `name` and wait until the IOC has processed it (ca_put_callback)."""
        self.call(self.aioca.caput(name, value, wait=True, timeout=timeout), timeout)

    def monitor(self, name: str, callback: Callable[[Any], None],
                on_control: Callable[[Any], None] | None = None) -> CaSubscription:
        """Every DBR_TIME update of `name` (no merging on the client: ``all_updates``), and an
        aioca CANothing on each disconnect, passed to `callback` on the CA loop's thread.
        `on_control` gets the DBR_CTRL value (units, precision, limits, enum choices) at each
        connect and whenever those change (a second subscription, to DBE_PROPERTY events)."""
        subscription = self.properties(name, on_control) if on_control is not None else CaSubscription(name, self._loop)

        async def subscribe() -> None:
            aioca = self.aioca
            subscription.handles.append(aioca.camonitor(
                name, callback, format=aioca.FORMAT_TIME, count=0, all_updates=True, notify_disconnect=True))
        self.call(subscribe(), 10.0)
        return subscription

    def properties(self, name: str, on_control: Callable[[Any], None]) -> CaSubscription:
        """The DBR_CTRL value of `name` (units, precision, limits, enum choices) passed to
        `on_control` at each connect and whenever those change (DBE_PROPERTY events)."""
        subscription = CaSubscription(name, self._loop)

        async def subscribe() -> None:
            aioca = self.aioca
            subscription.handles.append(aioca.camonitor(
                name, on_control, events=aioca.DBE_PROPERTY, format=aioca.FORMAT_CTRL, count=1))
        self.call(subscribe(), 10.0)
        return subscription


class CaFeed:
    """A CA monitor for recording at high rates, on libca itself: epicscorelibs' ``ca.cadef``
    and ``ca.dbr``, the layer aioca is built on. Each DBR_TIME update of the record's native
    type (count 0: the current element count) is copied into a `CaUpdate` tuple on libca's
    thread and queued; a disconnect queues p4p's `Disconnected`. `pop()` takes the oldest (None
    when empty), as from a p4p raw subscription, and ``wake()`` is called when an update finds
    the queue empty, so a consumer is woken once per burst. Unlike aioca's `camonitor`,
    no Python value object is built and nothing goes through the asyncio loop per update, which
    lets a collector record CA PVs at less CPU than a bare aioca monitor costs (performance.md).
    Connection (and reconnection after an IOC restart) is libca's own; the subscription is made
    at the first connect, in the native type of that moment."""

    def __init__(self, access: ChannelAccess, name: str, wake: Callable[[], None]) -> None:
        from epicscorelibs.ca import cadef, dbr

        self._cadef, self._dbr = cadef, dbr
        self.name = name
        self._wake = wake
        self._queue: deque[Any] = deque()
        self._access = access
        self._user = ctypes.py_object(self)  # libca holds a pointer to it: kept alive here
        self._chid = ctypes.c_void_p()
        self._event = ctypes.c_void_p()
        self._dbr_pointer: Any = None
        self._datatype = -1
        self._array = False
        self._closed = False
        access.call(self._open(), 10.0)

    async def _open(self) -> None:  # on the CA loop's thread: in aioca's CA context
        await self._access.aioca.connect(self.name, wait=False)  # makes sure that context exists
        self._cadef.ca_create_channel(self.name, _feed_handlers()[0], self._user, 0, ctypes.byref(self._chid))
        self._cadef.ca_flush_io()

    def _connected(self, up: bool) -> None:  # on libca's thread
        if not up:
            self._push(Disconnected())
            return
        if self._event.value or self._closed:
            return  # libca renews the subscription after a reconnect by itself
        cadef = self._cadef
        datatype = cadef.ca_field_type(self._chid)
        dbrcode = datatype + self._dbr.DBR_TIME_STRING  # DBR_TIME_<type>
        self._dbr_pointer = ctypes.POINTER(self._dbr.DbrCodeToType[dbrcode])
        self._datatype, self._array = datatype, cadef.ca_element_count(self._chid) > 1
        cadef.ca_create_subscription(dbrcode, 0, self._chid, cadef.DBE_VALUE | cadef.DBE_ALARM,
                                     _feed_handlers()[1], self._user, ctypes.byref(self._event))
        cadef.ca_flush_io()

    def _received(self, args: Any) -> None:  # on libca's thread: copy what the dbr holds, queue it
        if args.status != 1:  # not ECA_NORMAL
            return
        raw = ctypes.cast(args.raw_dbr, self._dbr_pointer)[0]
        stamp = raw.raw_stamp
        if self._array:
            value: Any = np.empty(args.count, raw.dtype)
            ctypes.memmove(value.ctypes.data, raw.raw_value, value.nbytes)
        elif self._datatype == 0:  # DBR_STRING
            value = ctypes.string_at(raw.raw_value).decode(errors="replace")
        else:
            value = raw.raw_value[0]
        self._push((value, stamp.secs + EPICS_EPOCH, stamp.nsec, raw.severity, raw.status,
                    self._datatype, self._array))

    def _push(self, item: Any) -> None:
        was_empty = not self._queue
        self._queue.append(item)
        if was_empty:
            self._wake()

    def pop(self) -> Any:
        """The oldest queued update (a CaUpdate, or Disconnected), or None."""
        try:
            return self._queue.popleft()
        except IndexError:
            return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def clear() -> None:
            if self._event.value:
                self._cadef.ca_clear_subscription(self._event)
            if self._chid.value:
                self._cadef.ca_clear_channel(self._chid)
            self._cadef.ca_flush_io()
        try:
            self._access.call(clear(), 5.0)
        except Exception:  # the channel goes with the process anyway
            pass


CaUpdate = tuple
"""A CaFeed update: (value, secs since 1970, nsec, severity, status, DBR type, is_array); the
value a Python int, float or str, or a NumPy array of the record's type for a waveform."""
EPICS_EPOCH = 631152000
"""Seconds from 1970 to 1990, where CA timestamps count from."""


_handlers: list[Any] = []  # libca's callbacks into CaFeed, made once (kept: libca holds them)


def _feed_handlers() -> tuple[Any, Any]:
    """The connection and event handlers of every CaFeed (made at first use: importing
    epicscorelibs.ca loads libca)."""
    if not _handlers:
        from epicscorelibs.ca import cadef

        @cadef.connection_handler
        def on_connection(args: Any) -> None:
            cadef.ca_puser(args.chid)._connected(args.op == cadef.CA_OP_CONN_UP)

        @cadef.event_handler
        def on_event(args: Any) -> None:
            args.usr._received(args)

        _handlers.extend([on_connection, on_event])
    return _handlers[0], _handlers[1]


class CaSubscription:
    """aioca monitors of one PV opened by `ChannelAccess`; `close()` ends them (on the CA loop,
    where aioca wants them closed)."""

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.handles: list[Any] = []
        self._loop = loop

    def close(self) -> None:
        handles, self.handles = self.handles, []
        for handle in handles:
            self._loop.call_soon_threadsafe(handle.close)


_channel_access: ChannelAccess | None = None
_channel_access_lock = threading.Lock()


def channel_access() -> ChannelAccess:
    """The process's ChannelAccess (started at the first call)."""
    global _channel_access
    with _channel_access_lock:
        if _channel_access is None:
            _channel_access = ChannelAccess()
        return _channel_access


def is_disconnect(update: Any) -> bool:
    """Whether a CA monitor update is aioca's notice of a disconnect (a CANothing)."""
    return not getattr(update, "ok", True)


MAX_HELD = 1000
"""CA updates a `CaValues` holds at most while it waits for the DBR_CTRL value of a connect."""


class CaValues:
    """Turns one CA PV's updates into NT Values (NTScalar, NTScalarArray, NTEnum), the form
    every device reads PVAccess inputs in, so devices need no CA code. Units, precision and
    enum choices come from the DBR_CTRL value `control()` gets at each connect.

    That value comes on a subscription of its own, so after a connect the first DBR_TIME
    update may come before it: `take` holds updates until it came, so no value goes out
    without its units or choices (a record that never updates again would keep none)."""

    def __init__(self) -> None:
        self.display: dict[str, Any] = {"units": "", "precision": 0, "limitLow": 0.0, "limitHigh": 0.0}
        self.choices: list[str] = []
        self._types: dict[tuple[str, bool], Type] = {}
        self._controlled = False  # the DBR_CTRL value of this connection has come
        self._held: list[Any] = []

    def control(self, value: Any) -> list[Any]:
        """Take units, precision, display limits and choices from a DBR_CTRL value; returns
        the updates held until it came, oldest first, to convert now."""
        self.display = {"units": str(getattr(value, "units", "") or ""),
                        "precision": int(getattr(value, "precision", 0) or 0),
                        "limitLow": float(getattr(value, "lower_disp_limit", 0) or 0),
                        "limitHigh": float(getattr(value, "upper_disp_limit", 0) or 0)}
        self.choices = [str(choice) for choice in getattr(value, "enums", [])]
        return self._release()

    def take(self, update: Any) -> list[Any]:
        """The updates to convert now, given a new DBR_TIME `update`: none while this
        connection's DBR_CTRL value has not come (`update` is held), else `update`. Beyond
        MAX_HELD held updates they all go out as they are, rather than wait without end."""
        if self._controlled:
            return [update]
        self._held.append(update)
        return self._release() if len(self._held) > MAX_HELD else []

    def disconnected(self) -> None:
        """The next connect brings a new DBR_CTRL value: hold updates until it came."""
        self._controlled = False
        self._held.clear()

    def _release(self) -> list[Any]:
        self._controlled = True
        held, self._held = self._held, []
        return held

    def value_of(self, update: Any) -> Value:
        """The NT Value of a DBR_TIME update."""
        secs, nsec = update.raw_stamp
        alarm = {"severity": int(update.severity), "status": int(update.status), "message": ""}
        stamp = {"secondsPastEpoch": int(secs), "nanoseconds": int(nsec)}
        if update.datatype == DBR_ENUM:
            return Value(self._type("enum", False), {"value": {"index": int(update), "choices": self.choices},
                                                     "alarm": alarm, "timeStamp": stamp})
        code = CA_CODES[update.datatype]
        array = isinstance(update, np.ndarray)
        plain = np.asarray(update) if array else (str(update) if code == "s" else update + 0)
        fields = {"value": plain, "alarm": alarm, "timeStamp": stamp}
        if code != "s":
            fields["display"] = self.display
        return Value(self._type(code, array), fields)

    def _type(self, code: str, array: bool) -> Type:
        key = (code, array)
        if key not in self._types:
            from p4p.nt import NTEnum, NTScalar

            if code == "enum":
                self._types[key] = NTEnum.buildType()
            else:  # display as QSRV serves it (p4p's own NTScalar display has no precision)
                self._types[key] = NTScalar.buildType(("a" if array else "") + code,
                                                      extra=[] if code == "s" else [DISPLAY])
        return self._types[key]


__all__ = ["CA_HINT_AFTER", "ca_hint", "InputNameError", "InputPV", "PROTOCOLS", "PV_NAME", "channel_access",
           "parse_input", "without_scheme"]
