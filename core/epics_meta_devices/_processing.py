"""ProcessingDevice: get data from PVs, compute, serve the results as PVs ("EPICS in, EPICS out").

A processing device declares which CONFIG fields name its input PVs (`inputs`), which PVs it
serves as outputs (`outputs`) and a `compute` method. This module does the rest: it monitors the
inputs while the device runs, decides when to compute (`ProcessingConfig.trigger`), propagates
alarms, stamps outputs with the time of the input that triggered them, and turns failures into
INVALID outputs or a device error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Literal

from p4p import Value
from p4p.nt import NTTable

from ._device import MetaDevice
from ._inputs import CA_HINT_AFTER, CaValues, ca_hint, InputNameError, channel_access, parse_input
from ._state import DeviceError, DeviceState

INVALID = 3
"""EPICS alarm severities: 0 NO_ALARM, 1 MINOR, 2 MAJOR, 3 INVALID."""
INPUTS_TABLE = NTTable([("input", "s"), ("pv", "s"), ("connected", "?"), ("severity", "i"),
                        ("message", "s")])


@dataclass
class ProcessingConfig:
    """CONFIG fields every processing device has; a device type's Config subclasses this and
    adds a ``str`` field per input PV (or a ``list[str]`` field for a group of them)."""

    trigger: Literal["any", "all", "period"] = "any"
    """When to compute: ``any`` input updated (once every input has a value), ``all`` inputs
    updated since the last computation, or every ``period`` seconds with the latest values."""
    period: float = 1.0
    """Seconds between computations when ``trigger`` is ``period``."""
    queue_size: int = 64
    """Updates each input monitor may hold (``record[queueSize=N,pipeline=true]``), so bursts
    are computed one by one instead of being squashed by p4p's default queue of 4."""
    units: str = ""
    """Units of the numeric outputs whose units the device type does not fix ("": those of the
    input that triggered the computation): a Calc of ``A*B`` says what its product is in."""


MAX_UNITS = 64
"""Characters of CONFIG units at most (EPICS EGU holds 16)."""


class ProcessingError(Exception):
    """Raised by `compute` for a problem with the data, not with the device (a division by
    zero, a waveform of the wrong shape): the outputs become INVALID with this message and the
    device keeps running. Any other exception from `compute` moves the device to error."""


@dataclass(frozen=True)
class InputSample:
    """The latest update of one input PV."""

    value: Any
    """The PV's ``value`` field: a number, a string, a NumPy array, or an enum's index."""
    timestamp: float
    """Seconds since the epoch, from the PV's timeStamp."""
    severity: int
    message: str
    units: str = ""
    """The PV's ``display.units`` (PVAccess) or EGU (Channel Access), "" when it has none."""
    precision: int | None = None
    """The PV's ``display.precision`` (PREC), when it has one."""


class ProcessingDevice(MetaDevice):
    """Base class of processing devices: declare `inputs`, `outputs` and `compute`.

    ``compute(**inputs)`` gets one keyword per entry of `inputs`: the latest value of that
    input PV, or a list of values for a ``list[str]`` field. It returns a dict of output
    name to new value (None or a missing name: not posted), or the value itself when the device
    has exactly one output. It runs on the device's own work queue, one call at a time and never
    at the same time as a put handler, so it may block briefly (e.g. `put_pv`).

    Alarms: outputs carry the highest severity of the inputs, with that input's message. When an
    input is INVALID, disconnected, or has no value yet, `compute` is not called and every output
    is re-posted INVALID with a message saying which input; a stopped device's outputs are
    INVALID too. Output timestamps are the triggering input's (``all``: the newest input's;
    ``period``: the time of computing).
    """

    Config: ClassVar[type] = ProcessingConfig
    inputs: ClassVar[tuple[str, ...]] = ()
    """Names of Config fields holding input PV names (``str``: one PV; ``list[str]``: several,
    passed to `compute` as a list, and named ``field[i]`` in messages and `latest`)."""
    outputs: ClassVar[Mapping[str, Any]] = {}
    """Output PVs served as ``PREFIX:<name>``, with initial values that set their types (float,
    int, bool, str, list of str, NumPy array)."""
    output_descriptions: ClassVar[Mapping[str, str]] = {}
    """What each output is, for screens (``display.description``, a record's DESC); a device
    may change one with ``self.output_pvs[name].show_description(...)`` (a Calc shows its
    expression)."""
    output_units: ClassVar[Mapping[str, str]] = {}
    """Fixed units of outputs ({"FREQUENCY": "Hz", "COUNT": ""}). Every other numeric output
    carries the units and precision of the input that triggered its computation (the first
    input with units, for ``period``), so describe() in a plan and screens show them."""
    requires_all_inputs: ClassVar[bool] = True
    """False: compute as soon as one input has a valid value, passing None for inputs that are
    missing, disconnected or INVALID (e.g. statistics pooled over several PVs, which should not
    lose one PV's updates while another is away). Outputs then carry the highest severity of
    the valid inputs."""

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self.latest: dict[str, InputSample] = {}
        """The latest sample of every input that has one, by input name (``x``, ``inputs[2]``)."""
        self.triggered_by = ""
        """The input whose update triggered the running `compute` (empty for ``period``)."""
        self._sources: dict[str, str] = {}  # input name -> PV name, while running
        self._monitors: list[Any] = []  # of the inputs: a subclass may monitor other PVs too
        self._connected: set[str] = set()
        self._fresh: set[str] = set()
        self._generation = 0  # updates queued before a stop or restart are ignored
        self._ticker: threading.Event | None = None
        self._hint_due = False  # CA_HINT_AFTER s have passed since start (see _hint)
        self.output_pvs = {name: self.add_pv(name, initial, display=True) for name, initial in self.outputs.items()}
        for name, units in self.output_units.items():
            self.output_pvs[name].show_units(units)
        for name, description in self.output_descriptions.items():
            self.output_pvs[name].show_description(description)
        """The DevicePV of every output, by name."""
        self._inputs_pv = self.add_pv("INPUTS", [], nt=INPUTS_TABLE)
        self._mark_outputs_invalid("not running")

    # -- for subclasses -----------------------------------------------------------------------

    def compute(self, **inputs: Any) -> Any:
        """Compute the outputs from the latest input values (see the class docstring)."""
        raise NotImplementedError(f"{type(self).__name__} must define compute()")

    def put_pv(self, name: str, value: Any, timeout: float = 2.0) -> None:
        """Write `value` to the external PV `name` (``ca://NAME`` for Channel Access, with
        completion as ca_put_callback reports it) for closed loops; raises ProcessingError with
        the server's reason when the write fails or times out."""
        source = parse_input(name)
        if source.protocol == "ca":
            self._call_pv("writing", name, timeout, lambda: channel_access().put(source.name, value, timeout))
        else:
            self._call_pv("writing", name, timeout, lambda: self.pva_client().put(source.name, value, timeout=timeout))

    def get_pv(self, name: str, timeout: float = 2.0) -> Value:
        """Read the external PV `name` once, as an NT Value (``ca://NAME``: by Channel Access);
        raises ProcessingError when it cannot."""
        source = parse_input(name)
        if source.protocol == "ca":
            def get() -> Value:
                values = CaValues()
                values.control(channel_access().get(source.name, timeout, control=True))
                return values.value_of(channel_access().get(source.name, timeout))
            return self._call_pv("reading", name, timeout, get)
        return self._call_pv("reading", name, timeout, lambda: self.pva_client().get(source.name, timeout=timeout))

    def _call_pv(self, doing: str, name: str, timeout: float, call: Any) -> Any:
        if self.state is not DeviceState.running:
            raise ProcessingError(f"{doing} {name} failed: the device is not running")
        try:
            return call()
        except TimeoutError:  # p4p's message is only the PV name
            raise ProcessingError(f"{doing} {name} failed: no answer within {timeout} s "
                                  "(is the PV served?)") from None
        except Exception as exc:
            raise ProcessingError(f"{doing} {name} failed: {exc}") from exc

    # -- MetaDevice hooks ---------------------------------------------------------------------

    def configure(self, config: Any) -> None:
        """Check the trigger, the period and that every input names a PV; subclasses that
        override this call ``super().configure(config)``."""
        if not config.period > 0:
            raise DeviceError(f"period must be a positive number of seconds, not {config.period!r}")
        if not 1 <= config.queue_size <= 100_000:
            raise DeviceError(f"queue_size must be 1 to 100000, not {config.queue_size!r}")
        if len(config.units) > MAX_UNITS or not config.units.isprintable():
            raise DeviceError(f"units: at most {MAX_UNITS} printable characters")
        sources = self._input_sources(config)
        missing = [name for name, pv in sources.items() if not pv.strip()]
        if missing or not sources:
            raise DeviceError(f"give the PV name of every input: {', '.join(missing or self.inputs)}")
        for name, pv in sources.items():
            try:
                parse_input(pv)
            except InputNameError as exc:
                raise DeviceError(f"input {name}: {exc}") from None

    def start(self) -> None:
        self._generation += 1
        generation = self._generation
        self._sources = self._input_sources(self.config)
        self.latest.clear()
        self._connected.clear()
        self._fresh.clear()
        request = f"record[queueSize={self.config.queue_size},pipeline=true]"
        self._monitors = [
            self.monitor(pv_name, partial(self._received, generation, name), request=request,
                         on_disconnect=partial(self._lost, generation, name))
            for name, pv_name in self._sources.items()]
        self._hint_due = False
        if any("://" not in pv for pv in self._sources.values()):  # bare names: PVAccess
            hint = threading.Timer(CA_HINT_AFTER, self._queue.push, [partial(self._hint, generation)])
            hint.daemon = True
            hint.start()
        if self.config.trigger == "period":
            self._ticker = threading.Event()
            threading.Thread(target=self._tick, args=(generation, self._ticker, self.config.period),
                             name=f"period:{self.prefix}", daemon=True).start()
        self._post_inputs()
        self._mark_outputs_invalid(self._waiting_message())

    def stop(self) -> None:
        self._generation += 1
        if self._ticker is not None:
            self._ticker.set()
            self._ticker = None
        for subscription in self._monitors:
            self.close_monitor(subscription)
        self._monitors = []
        self._connected.clear()
        self._post_inputs()
        self._mark_outputs_invalid("not running")

    # -- input updates (monitor callbacks run on p4p's workers: hand over to the queue) --------

    def _received(self, generation: int, name: str, value: Value) -> None:
        # "in" first: a get of a field the type lacks costs ten times more (an exception in p4p)
        units = value["display.units"] if "display" in value else ""
        precision = value["display.precision"] if units and "display.precision" in value else None
        sample = InputSample(_plain_value(value), value["timeStamp.secondsPastEpoch"]
                             + value["timeStamp.nanoseconds"] * 1e-9,
                             value.get("alarm.severity", 0), value.get("alarm.message", ""), units, precision)
        self._queue.push(partial(self._update, generation, name, sample))

    def _lost(self, generation: int, name: str, error: Exception) -> None:
        self._queue.push(partial(self._disconnect, generation, name))

    def _tick(self, generation: int, stopped: threading.Event, period: float) -> None:
        while not stopped.wait(period):
            self._queue.push(partial(self._evaluate_now, generation))

    # -- on the device's queue ----------------------------------------------------------------

    def _update(self, generation: int, name: str, sample: InputSample) -> None:
        if generation != self._generation:
            return
        previous = self.latest.get(name)
        self.latest[name] = sample
        self._fresh.add(name)
        if name not in self._connected or previous is None or previous.severity != sample.severity:
            self._connected.add(name)
            self._post_inputs()
        trigger = self.config.trigger
        if trigger == "any":
            self._evaluate(name, sample.timestamp)
        elif trigger == "all" and len(self._fresh) == len(self._sources):
            self._fresh.clear()
            self._evaluate(name, max(s.timestamp for s in self.latest.values()))

    def _disconnect(self, generation: int, name: str) -> None:
        if generation != self._generation:
            return
        self._connected.discard(name)
        self.latest.pop(name, None)
        self._fresh.discard(name)
        self._post_inputs()
        self._mark_outputs_invalid(f"input {name} ({self._sources[name]}) disconnected")

    def _hint(self, generation: int) -> None:
        """CA_HINT_AFTER s after start: say which bare names no PVAccess server answered."""
        if generation != self._generation:
            return
        self._hint_due = True
        waiting = self._waiting_message()
        if waiting:
            self.log.warning("%s", waiting)
            self._mark_outputs_invalid(waiting)

    def _evaluate_now(self, generation: int) -> None:
        if generation == self._generation:
            self._evaluate("", time.time())

    def _evaluate(self, trigger: str, timestamp: float) -> None:
        valid = {name: sample for name, sample in self.latest.items() if sample.severity < INVALID}
        if self.requires_all_inputs or not valid:
            waiting = self._waiting_message()
            if waiting:
                self._mark_outputs_invalid(waiting, timestamp)
                return
            worst_name, worst = max(self.latest.items(), key=lambda item: item[1].severity)
            if worst.severity >= INVALID:
                reason = worst.message or "INVALID"
                self._mark_outputs_invalid(f"input {worst_name} ({self._sources[worst_name]}): {reason}",
                                           timestamp)
                return
        worst = max(valid.values(), key=lambda sample: sample.severity)
        self.triggered_by = trigger
        try:
            result = self.compute(**self._arguments())
        except (ProcessingError, ArithmeticError) as exc:
            self._mark_outputs_invalid(str(exc) or type(exc).__name__, timestamp)
            return
        except Exception as exc:
            self.report_error(exc)
            return
        if not isinstance(result, Mapping):
            if len(self.output_pvs) != 1:
                self.report_error(f"compute() must return a dict of outputs ({', '.join(self.output_pvs)})")
                return
            result = {next(iter(self.output_pvs)): result}
        unknown = set(result) - set(self.output_pvs)
        if unknown:
            self.report_error(f"compute() returned outputs this device does not have: {', '.join(sorted(unknown))}")
            return
        message = worst.message if worst.severity else ""
        source = self.latest.get(trigger) or next((s for s in self.latest.values() if s.units), worst)
        units = self.config.units or source.units
        for name, value in result.items():
            if name not in self.output_units:
                self.output_pvs[name].show_units(units, source.precision)
            if value is not None:
                self.output_pvs[name].post(value, timestamp=timestamp, severity=worst.severity,
                                           message=message)

    # -- helpers ------------------------------------------------------------------------------

    def _input_sources(self, config: Any) -> dict[str, str]:
        """Input name -> PV name from a config (``x`` or ``group[i]`` names)."""
        sources: dict[str, str] = {}
        for field in self.inputs:
            pvs = getattr(config, field)
            if isinstance(pvs, str):
                sources[field] = pvs
            else:
                sources.update({f"{field}[{i}]": pv for i, pv in enumerate(pvs)})
        return sources

    def _arguments(self) -> dict[str, Any]:
        """compute's keywords: each input's latest valid value (None: missing or INVALID, only
        when `requires_all_inputs` is False)."""

        def value(name: str) -> Any:
            sample = self.latest.get(name)
            return sample.value if sample is not None and sample.severity < INVALID else None

        arguments: dict[str, Any] = {}
        for field in self.inputs:
            if isinstance(getattr(self.config, field), str):
                arguments[field] = value(field)
            else:
                arguments[field] = [value(f"{field}[{i}]") for i in range(len(getattr(self.config, field)))]
        return arguments

    def _waiting_message(self) -> str:
        """Empty when every input has a value; else which inputs are awaited."""
        missing = [name for name in self._sources if name not in self.latest]
        if not missing:
            return ""
        shown = ", ".join(f"{name} ({self._sources[name]})" for name in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        unanswered = [self._sources[name] for name in missing
                      if "://" not in self._sources[name] and name not in self._connected]
        if self._hint_due and unanswered:
            return f"waiting for input {shown}{more}: {ca_hint(unanswered[0])}"
        return f"waiting for input {shown}{more}"

    def _mark_outputs_invalid(self, message: str, timestamp: float | None = None) -> None:
        """Re-post every output's last value as INVALID with `message`."""
        for pv in self.output_pvs.values():
            pv.post(pv.value, timestamp=timestamp, severity=INVALID, message=message)

    def _post_inputs(self) -> None:
        rows = [{"input": name, "pv": pv, "connected": name in self._connected,
                 "severity": self.latest[name].severity if name in self.latest else INVALID,
                 "message": self.latest[name].message if name in self.latest else ""}
                for name, pv in self._sources.items()]
        self._inputs_pv.post(rows)


def _plain_value(value: Value) -> Any:
    """An update's ``value`` field as Python data; an NTEnum gives its index."""
    field = value["value"]
    return field["index"] if isinstance(field, Value) else field


__all__ = ["InputSample", "ProcessingConfig", "ProcessingDevice", "ProcessingError"]
