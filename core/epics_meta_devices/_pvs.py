"""DevicePV: one PV a device serves, with its type chosen from an initial value and a put policy."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from p4p import Type, Value
from p4p.nt import NTEnum, NTScalar, NTTable
from p4p.server.thread import SharedPV

from ._access import DEFAULT_GROUP, PUT, RPC, Client, handling
from ._host import put_bytes
from ._inputs import DISPLAY
from ._state import DeviceError

if TYPE_CHECKING:
    from p4p.util import WorkQueue

    from ._device import MetaDevice

PutHandler = Callable[[Any], Any]

_SCALAR_CODES: list[tuple[type, str]] = [(bool, "?"), (int, "l"), (float, "d"), (str, "s")]


def nt_for(initial: Any, choices: Sequence[str] | None = None, display: bool = False) -> NTScalar | NTEnum:
    """The Normative Type that serves `initial`: NTEnum when `choices` are given, else NTScalar
    (or NTScalarArray) with a value type taken from the Python or NumPy value; with `display`,
    numeric ones carry a display structure (units, precision, limits) as QSRV serves it."""
    if choices is not None:
        return NTEnum()
    code = _code_of(initial)
    numeric = code.lstrip("a") not in ("s", "?")
    return NTScalar(code, extra=[DISPLAY] if display and numeric else [])


def _code_of(initial: Any) -> str:
    for kind, code in _SCALAR_CODES:
        if isinstance(initial, kind):  # bool before int: bool is an int subclass
            return code
    if isinstance(initial, np.generic):
        return np.asarray(initial).dtype.char if initial.dtype.kind != "b" else "?"
    if isinstance(initial, np.ndarray):
        return "a" + _array_code(initial.dtype)
    if isinstance(initial, (list, tuple)):
        if all(isinstance(item, str) for item in initial) and initial:
            return "as"
        return "a" + _array_code(np.asarray(initial if initial else [], dtype=float).dtype)
    raise TypeError(
        f"cannot infer a PV type from {initial!r}; pass type= (a p4p Type) for structures"
    )


_NUMPY_TYPES = {"l": "int64", "L": "uint64", "?": "bool"}
"""p4p type codes whose NumPy names differ (``b B h H i I f d`` are the same)."""


def _array_code(dtype: np.dtype) -> str:
    codes = {"f8": "d", "f4": "f", "i8": "l", "i4": "i", "i2": "h", "i1": "b",
             "u8": "L", "u4": "I", "u2": "H", "u1": "B", "b1": "?"}
    key = f"{dtype.kind}{dtype.itemsize}"
    if key not in codes:
        raise TypeError(f"unsupported array dtype {dtype}")
    return codes[key]


class DevicePV:
    """A PV served by a device under its prefix.

    Normative-type PVs (made from a Python value) are posted with plain values and get a
    timestamp on every post; structure PVs (made with ``type=``) are posted with dicts or Values.
    Puts go to ``on_put`` (which posts if it wants the new value shown), are stored as they are
    when ``writable=True``, and are refused with a clear message otherwise. A handler that
    returns a `concurrent.futures.Future` completes the put when the future does, so slow work
    (e.g. starting a process) need not hold up the device's other PVs.

    Every put and RPC is checked against the device's access policy for `access_group` (when
    the device runs with an ACF) and logged with the client's account@host: at INFO for PVs of
    a group other than DEFAULT (the controls), at DEBUG for the rest; refusals by access
    security at WARNING.
    """

    def __init__(
        self,
        device: MetaDevice,
        name: str,
        initial: Any,
        *,
        on_put: PutHandler | None,
        on_rpc: Callable[[Value], Any] | None,
        writable: bool,
        type: Type | None,
        choices: Sequence[str] | None,
        nt: Any,
        queue: WorkQueue,
        access_group: str = DEFAULT_GROUP,
        display: bool = False,
    ) -> None:
        self.device = device
        self.name = name
        self.access_group = access_group
        self._audit = logging.INFO if access_group != DEFAULT_GROUP else logging.DEBUG
        self._on_put = on_put
        self._on_rpc = on_rpc
        self._writable = writable
        self._choices = list(choices) if choices is not None else None
        self._nt = nt if nt is not None else None if type is not None else nt_for(initial, choices, display)
        self._display: dict[str, Any] = {}  # display fields (see show_units), set in the next post
        self._display_changed = False
        self._type = type
        self._pv = SharedPV(handler=self, queue=queue)
        self._pv.open(self._wrap(initial, None))
        self.field_pvs: dict[str, DevicePV] = {}
        """Of a structure PV: its fields served as NT PVs (``add_pv(nt_fields=True)``)."""

    # -- serving ------------------------------------------------------------------------------

    def _wrap(self, value: Any, timestamp: float | None, **kws: Any) -> Value:
        stamp = time.time() if timestamp is None else timestamp
        if self._nt is None:
            V = value if isinstance(value, Value) else Value(self._type, value)
            if "timeStamp" in V.keys():
                sec = int(stamp)
                V["timeStamp.secondsPastEpoch"] = sec
                V["timeStamp.nanoseconds"] = int((stamp - sec) * 1e9)
            return V
        if self._choices is not None and not isinstance(value, (dict, Value)):
            value = {"index": int(value), "choices": self._choices}
        V = self._nt.wrap(value, timestamp=stamp, **kws)
        if self._display_changed:  # once: a post keeps the fields it does not mark
            self._display_changed = False
            if "display" in V:  # strings and booleans have no display
                for field, shown in self._display.items():
                    V[f"display.{field}"] = shown
        if isinstance(self._nt, NTTable):
            # NTTable.wrap leaves empty columns unmarked and post() keeps unmarked fields, so an
            # empty table would still show the old rows: mark every column.
            for label in self._nt.labels:
                if not V.changed(f"value.{label}"):
                    V[f"value.{label}"] = []
        return V

    def post(self, value: Any, timestamp: float | None = None, **kws: Any) -> None:
        """Publish a new value (stamped now unless `timestamp` is given). Extra keywords go to
        the Normative Type wrapper, e.g. ``severity=2, message='...'``."""
        wrapped = self._wrap(value, timestamp, **kws)
        self._pv.post(wrapped)
        for field, pv in self.field_pvs.items():
            if wrapped.changed(field):
                pv.post(wrapped[field], timestamp)

    def show_units(self, units: str, precision: int | None = None) -> None:
        """Serve `units` (and `precision`) in the display structure from the next post on (a
        PV added with ``display=True``): what ophyd-async's describe() and screens show."""
        shown = self._display
        if shown.get("units") == units and (precision is None or shown.get("precision") == precision):
            return  # the usual case: a processor shows the same units at every computation
        self._show({"units": units} if precision is None else {"units": units, "precision": precision})

    def show_description(self, description: str) -> None:
        """Serve `description` in the display structure from the next post on (what a screen
        shows as the PV's tooltip, as a record's DESC)."""
        self._show({"description": description})

    def _show(self, fields: dict[str, Any]) -> None:
        display = {**self._display, **fields}
        if display != self._display:
            self._display, self._display_changed = display, True

    @property
    def units(self) -> str:
        """The units this PV serves ("" when it has none)."""
        return str(self._display.get("units", ""))

    @property
    def value(self) -> Any:
        """The value last posted: the plain ``value`` field for NT PVs, the Value otherwise."""
        current = self._pv.current()
        if self._nt is None:
            return current
        if self._choices is not None:
            return current["value.index"]
        value = current["value"]
        if value is None:  # p4p gives an empty array field back as None
            code = current.type()["value"]
            return [] if code == "as" else np.zeros(0, dtype=_NUMPY_TYPES.get(code[1:], code[1:]))
        return value

    @property
    def access_mode(self) -> str | None:
        """How PVI lists this PV: ``rw`` when it takes puts, ``r`` when read-only, None when
        PVI leaves it out: a plain structure or RPC-only PV, which ophyd-async cannot read."""
        if self._nt is None:
            return None
        return "rw" if self._on_put is not None or self._writable else "r"

    def retype(self, value: Value) -> None:
        """Serve a structure PV with a new Type, e.g. a PVI whose entries changed: a post must
        use the Type the PV was opened with, so its clients are disconnected and reconnect
        to the new one."""
        if self._nt is not None:
            raise TypeError(f"{self.name} is a Normative Type PV: its type cannot change")
        self._type = value.type()
        self._pv.close()
        self._pv.open(self._wrap(value, None))

    def close(self) -> None:
        self._pv.close()

    # -- p4p handler protocol (runs on the device's work queue) -------------------------------

    def put(self, pv: SharedPV, op: Any) -> None:
        client = Client.of(op)
        if not self._permitted(PUT, client):
            self._answer(op, client, "put", f"put to {self.name} refused by access security for {client}", denied=True)
            return
        if self._on_put is None and not self._writable:
            self._answer(op, client, "put", f"{self.name} is read-only")
            return
        raw = op.value()
        limit = self.device.host.max_put_bytes
        size = put_bytes(raw)
        if size > limit:  # the server has read it already; refusing keeps it from the handler
            self._answer(op, client, "put", f"put to {self.name} refused: {size} bytes is more than "
                                            f"this host accepts in one put ({limit} bytes, --max-put-bytes)")
            return
        value = raw if self._nt is None else (
            raw["value.index"] if self._choices is not None else raw["value"]
        )
        if self._choices is not None and not 0 <= value < len(self._choices):
            self._answer(op, client, "put", f"{self.name}: index {value} is not one of the choices {self._choices}")
            return
        try:
            if self._on_put is None:
                self.post(value)
                result = None
            else:
                with handling(client):
                    result = self._on_put(value)
        except Exception as exc:
            self._answer(op, client, "put", self._refusal(exc))
            return
        if isinstance(result, Future):
            result.add_done_callback(lambda done: self._finish(op, client, done))
        else:
            self._answer(op, client, "put")

    def rpc(self, pv: SharedPV, op: Any) -> None:
        client = Client.of(op)
        if not self._permitted(RPC, client):
            self._answer(op, client, "RPC", f"RPC to {self.name} refused by access security for {client}", denied=True)
            return
        if self._on_rpc is None:
            self._answer(op, client, "RPC", f"{self.name} does not take RPC calls")
            return
        try:
            with handling(client):
                reply = self._on_rpc(op.value())
        except Exception as exc:
            self._answer(op, client, "RPC", self._refusal(exc))
            return
        self._answer(op, client, "RPC", reply=reply)

    def _permitted(self, action: int, client: Client) -> bool:
        policy = self.device.access
        return policy is None or policy.allows(self.access_group, action, client)

    def _finish(self, op: Any, client: Client, done: Future) -> None:
        if done.cancelled():  # e.g. queued CREATEs when a factory closes: answer, never leave hanging
            self._answer(op, client, "put", f"{self.name}: cancelled, {self.device.prefix} is closing")
            return
        exc = done.exception()
        self._answer(op, client, "put", None if exc is None else self._refusal(exc))

    def _answer(self, op: Any, client: Client, verb: str, error: str | None = None, reply: Any = None,
                denied: bool = False) -> None:
        """Complete the operation, and log who did what (the audit trail of controls);
        `denied`: refused by access security, always logged."""
        log = self.device.log
        if error is None:
            if log.isEnabledFor(self._audit):
                log.log(self._audit, "%s to %s by %s", verb, self.name, client)
            op.done(reply) if reply is not None else op.done()
            return
        level = logging.WARNING if denied else self._audit
        if log.isEnabledFor(level):
            log.log(level, "%s to %s by %s refused: %s", verb, self.name, client, error)
        op.done(error=error)

    def _refusal(self, exc: BaseException) -> str:
        if isinstance(exc, DeviceError):
            return str(exc)
        # a handler bug: refuse the put, keep the device as it is
        self.device.log.error("put to %s failed", self.name, exc_info=exc)
        return f"{type(exc).__name__}: {exc}"
