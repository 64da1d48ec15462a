"""Helpers of the processor tests: waiting for a PV's value, and the external PVs a PID
writes (an actuator, a first-order plant), served by the test process with p4p."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from p4p import Value
from p4p.nt import NTScalar
from p4p.server import Server
from p4p.server.thread import SharedPV

from epics_meta_devices.testing import wait_until


def wait_for(ctxt: Any, pv: str, predicate: Callable[[Value], Any], timeout: float = 10.0,
             what: str = "") -> Value:
    """Poll `pv` until ``predicate(value)`` holds and return that value; AssertionError with
    the last value seen after `timeout` seconds."""
    seen: list[Value] = []

    def holds() -> bool:
        seen[:] = [ctxt.get(pv, timeout=2.0)]
        return bool(predicate(seen[0]))

    try:
        wait_until(holds, timeout, what or pv)
    except AssertionError as exc:
        last = seen[0].todict() if seen else "nothing"
        raise AssertionError(f"{exc}; last value of {pv}: {last}") from None
    return seen[0]


def invalid(message_part: str) -> Callable[[Value], bool]:
    """Predicate: the PV is INVALID with `message_part` in its alarm message."""
    return lambda v: v["alarm.severity"] == 3 and message_part in v["alarm.message"]


def valid(expected: Any = None, tolerance: float = 1e-9) -> Callable[[Value], bool]:
    """Predicate: the PV has no alarm (and, if given, holds `expected` within `tolerance`)."""
    return lambda v: v["alarm.severity"] == 0 and (expected is None or abs(v["value"] - expected) <= tolerance)


class Actuator:
    """A writable double PV (say a heater's power supply setpoint) that records every write
    with the time it arrived; with `refuse` set, every write is refused with that message."""

    def __init__(self, name: str, initial: float = 0.0, refuse: str = "") -> None:
        self.name = name
        self.refuse = refuse
        self.writes: list[tuple[float, float]] = []
        """(time.monotonic(), value) of every accepted write."""
        self.lock = threading.Lock()
        self.pv = SharedPV(nt=NTScalar("d"), initial=initial, handler=self)
        self.server = Server(providers=[{name: self.pv}])

    def put(self, pv: SharedPV, op: Any) -> None:  # p4p's SharedPV handler
        if self.refuse:
            op.done(error=self.refuse)
            return
        value = float(op.value())  # unwrapped by the NTScalar: a float
        with self.lock:
            self.writes.append((time.monotonic(), value))
        pv.post(value, timestamp=time.time())
        op.done()

    @property
    def value(self) -> float:
        with self.lock:
            return self.writes[-1][1] if self.writes else float(self.pv.current())

    def count(self) -> int:
        with self.lock:
            return len(self.writes)

    def stop(self) -> None:
        self.server.stop()


class FirstOrderPlant:
    """A heater: ``dT/dt = (gain * power - T) / tau``, integrated at `rate` Hz in a thread
    that posts T as the temperature PV; the power is what the PID writes to the actuator."""

    def __init__(self, temperature_pv: str, power_pv: str, *, gain: float = 1.0, tau: float = 1.0,
                 start: float = 20.0, rate: float = 20.0) -> None:
        self.gain, self.tau, self.period = gain, tau, 1.0 / rate
        self.temperature = start
        self.power = Actuator(power_pv)
        self.sensor = SharedPV(nt=NTScalar("d"), initial=start)
        self.server = Server(providers=[{temperature_pv: self.sensor}])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="plant", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.period):
            now = time.monotonic()
            dt, last = now - last, now
            self.temperature += dt / self.tau * (self.gain * self.power.value - self.temperature)
            self.sensor.post(self.temperature, timestamp=time.time())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.server.stop()
        self.power.stop()
