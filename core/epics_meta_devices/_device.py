"""MetaDevice: the base class that turns a Python class into an EPICS (PVAccess) device."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import os
import re
import signal
import socket
import threading
import uuid
from typing import Any, Callable, ClassVar, Mapping, Sequence

from p4p import Type, Value
from p4p.client.raw import Disconnected
from p4p.client.thread import Context, Subscription
from p4p.nt import NTScalar
from p4p.server import Server, StaticProvider

from ._access import CONTROL_GROUP, DEFAULT_GROUP, AccessPolicy
from ._access_provider import GuardedProvider
from ._handler_queue import HandlerQueue
from ._host import HostSettings
from ._inputs import CaValues, channel_access, is_disconnect, parse_input
from ._config import (
    ConfigField,
    EmptyConfig,
    changes_from_put,
    config_fields,
    config_pv_type,
    config_to_dict,
    merge_config,
)
from ._logging import device_logger
from ._pvi import device_pvi, pvi_entries
from ._pvs import DevicePV, PutHandler
from ._registry import registry
from ._state import STATE_NAMES, DeviceError, DeviceState, check_transition

# EPICS record names allow these characters; a prefix must not end in the ':' we join with.
_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_\-+\[\]<>;.]+(:[A-Za-z0-9_\-+\[\]<>;.]+)*$")
MAX_PREFIX_LENGTH = 200
HEARTBEAT_PERIOD = 1.0
"""Seconds between increments of a device's HEARTBEAT counter."""

NT_SCALAR_CODES = "?bBhHiIlLfds"
"""PVAccess type codes an NTScalar (or, with "a", an NTScalarArray) holds: the fields of a
structure that ``add_pv(nt_fields=True)`` serves on their own."""
INFO_TYPE = Type(
    [
        ("description", "s"),
        ("version", "s"),
        ("plugin", "s"),
        ("plugin_version", "s"),
        ("core_version", "s"),
        ("host", "s"),
        ("pid", "l"),
        ("start_time", "s"),
        ("last_error", "s"),
    ],
    id="emd:info:1.0",
)


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it can prefix EPICS PV names, else raise DeviceError saying why."""
    if not isinstance(prefix, str) or not prefix:
        raise DeviceError("device prefix must be a non-empty string")
    if len(prefix) > MAX_PREFIX_LENGTH:
        raise DeviceError(f"device prefix is longer than {MAX_PREFIX_LENGTH} characters")
    if not _PREFIX_PATTERN.match(prefix):
        raise DeviceError(
            f"invalid device prefix {prefix!r}: use letters, digits and _-+[]<>;. "
            "in parts joined by single ':' (no spaces, no leading or trailing ':')"
        )
    return prefix


def _version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution) if distribution else ""
    except importlib.metadata.PackageNotFoundError:
        return ""


class _ServeAfterInit(type):
    """Start serving once the whole ``__init__`` chain has run, so a client never sees a device
    whose own PVs are still missing (subclasses call ``add_pv`` after ``super().__init__``)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        device = super().__call__(*args, **kwargs)
        device._serve()
        return device


class MetaDevice(metaclass=_ServeAfterInit):
    """Base class of every device.

    A device serves the default PVs TYPE, STATE, UUID, CONFIG, INFO, ENABLE and CLOSE under its
    prefix, HEARTBEAT (a counter that proves it is alive, see `_beat`), plus any PVs it adds
    with `add_pv`. ``host=`` holds the host's limits (`HostSettings`; default: from the
    environment), e.g. the largest put it accepts. With ``acf=`` (an EPICS access security file)
    every put, RPC and new channel is checked against the rules of the PV's access group
    (CONFIG, ENABLE and CLOSE are in CONTROL); without it any client may do anything, as on an
    IOC without access security. Constructing it starts serving and returns;
    `wait_closed` blocks until it is closed. Subclasses override the hooks `configure`,
    `start`, `stop` and `close`; the base class calls them when CONFIG, ENABLE and CLOSE are put
    and enforces the state machine around them, so a hook that raises refuses the put and leaves
    state and configuration as they were.
    """

    device_type: ClassVar[str] = ""
    """``<group>.<Class>``, set by `register_device_type`."""
    Config: ClassVar[type] = EmptyConfig
    """The dataclass declaring this device type's CONFIG fields and their defaults."""
    description: ClassVar[str] = ""
    """One line for INFO; defaults to the first line of the class docstring."""
    version: ClassVar[str] = ""
    """Version of this device type for INFO; defaults to its plugin's version."""
    client_class: ClassVar[str] = ""
    """``module:Class`` of the typed client for this device type (empty: DeviceClient)."""
    prefix_probe_timeout: ClassVar[float] = 0.3
    """Seconds to look for another server of the same prefix before serving (loopback: ~20 ms)."""

    def __init__(
        self,
        prefix: str,
        *,
        config: Mapping[str, Any] | None = None,
        server_conf: Mapping[str, str] | None = None,
        acf: str | os.PathLike[str] | None = None,
        host: HostSettings | None = None,
    ) -> None:
        self.prefix = validate_prefix(prefix)
        self.host = host if host is not None else HostSettings.from_environment()
        """What the host allows (data root, largest put, ceilings): never changed by a put."""
        self.acf_path = os.fspath(acf) if acf else None
        """The access security file this device enforces (None: open to every client)."""
        self.access = AccessPolicy(self.acf_path) if self.acf_path else None
        self.log = device_logger(self.device_type or type(self).__name__, prefix)
        self.config = self.Config()
        self.uuid = str(uuid.uuid4())
        self._state = DeviceState.created
        self._last_error = ""
        self._initial_config = dict(config) if config is not None else None
        self._server_conf = dict(server_conf) if server_conf is not None else None
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._server: Server | None = None
        self._client_context: Context | None = None
        self._subscriptions: list[Subscription] = []
        self._pvs: dict[str, DevicePV] = {}
        self._nt_groups: list[str] = []  # structure PVs served field by field too (nt_fields)
        self._pvi_pvs: dict[str, DevicePV] = {}  # PVI and CONFIG:PVI, made in _serve
        self._provider: StaticProvider | GuardedProvider = (
            StaticProvider(f"emd:{prefix}") if self.access is None
            else GuardedProvider(f"emd:{prefix}", self.access)
        )
        self._providers: list[Any] = [self._provider]
        # Handlers of this device run on its own queue: one at a time, and never on p4p's shared
        # queues, where a blocking client call could deadlock (see P4P notes). Bounded: a flood
        # is refused as busy. CLOSE (and a factory's DELETE) run on a queue of their own, so
        # they never wait behind queued work.
        self._queue = HandlerQueue(f"emd:{prefix}", self.log)
        self._urgent_queue = HandlerQueue(f"emd:{prefix}:urgent", self.log)
        self._started_at = datetime.datetime.now(datetime.timezone.utc)

        self._type_pv = self.add_pv("TYPE", self.device_type or type(self).__name__)
        self._state_pv = self.add_pv("STATE", 0, choices=STATE_NAMES)
        self._uuid_pv = self.add_pv("UUID", self.uuid)
        self._config_type = config_pv_type(self.Config)
        self._config_pv = self.add_pv(
            "CONFIG", config_to_dict(self.config), type=self._config_type, on_put=self._put_config,
            access_group=CONTROL_GROUP,
        )
        # each field also as its own NT PV (CONFIG:<field>), for ophyd-async and screens
        self._config_fields = config_fields(self.Config)
        self._config_field_pvs = {field.name: self._add_config_field(field) for field in self._config_fields}
        self._info_pv = self.add_pv("INFO", self._info(), type=INFO_TYPE, nt_fields=True)
        self._enable_pv = self.add_pv("ENABLE", False, on_put=self.set_enabled, access_group=CONTROL_GROUP)
        self._close_pv = self.add_pv("CLOSE", False, on_put=self._put_close, access_group=CONTROL_GROUP,
                                     urgent=True)
        self._heartbeat_pv = self.add_pv("HEARTBEAT", 0)
        self._beats = 0
        self._beat_queued = False

    # -- hooks for subclasses -----------------------------------------------------------------

    def configure(self, config: Any) -> None:
        """Apply `config` (an instance of ``Config``); raise to refuse it. ``self.config`` still
        holds the previous configuration while this runs."""

    def start(self) -> None:
        """Called when ENABLE is set True in state ready; raise to refuse."""

    def stop(self) -> None:
        """Called when ENABLE is set False while running, and before close or error."""

    def close(self) -> None:
        """Called once when the device closes, before its PVs and monitors are released."""

    # -- helpers for subclasses ---------------------------------------------------------------

    def add_pv(
        self,
        name: str,
        initial: Any = 0.0,
        *,
        on_put: PutHandler | None = None,
        writable: bool = False,
        type: Type | None = None,
        choices: Sequence[str] | None = None,
        nt: Any = None,
        on_rpc: Callable[[Value], Any] | None = None,
        access_group: str = DEFAULT_GROUP,
        urgent: bool = False,
        nt_fields: bool = False,
        display: bool = False,
    ) -> DevicePV:
        """Serve ``PREFIX:name``. The PV type follows `initial` (float, int, bool, str, list,
        NumPy array), is an NTEnum when `choices` are given, a structure with ``type=``, or
        any p4p Normative Type with ``nt=`` (e.g. ``NTTable([...])``, initial being its rows).

        ``on_put(value)`` handles puts (raise DeviceError to refuse with a message; post to
        show the new value; return a Future to complete the put later); ``writable=True`` stores
        puts as they are; otherwise read-only. ``on_rpc(arguments)`` answers RPC calls with the
        Value it returns (raise DeviceError to refuse).

        `access_group` is the access security group (ASG) whose rules decide who may read, put
        and call the PV when the device runs with an ACF; a group the file does not define
        falls back to DEFAULT. Controls that change what the device does belong in CONTROL.

        `urgent`: handle puts on a second queue that never waits behind the device's queued
        work (for puts that end work, such as CLOSE); its handler may run while another one
        does, so it must take the device's lock for what it changes.

        `nt_fields` (a structure PV, ``type=``): also serve each of its scalar and array fields
        as a read-only Normative Type PV ``PREFIX:<name>:<field>``, posted whenever the structure
        is, for clients that read only Normative Types (ophyd-async, screens). PVI lists them in
        a group of their own, so ophyd-async shows ``device.<name>.<field>``.

        `display`: a numeric NT PV carries a display structure (units, precision, limits, as
        QSRV serves it); set what it shows with ``pv.show_units(units, precision)``.
        """
        full_name = f"{self.prefix}:{name}"
        if full_name in self._pvs:
            raise DeviceError(f"{full_name} is already served by this device")
        if nt_fields and type is not None and self._pvi_pvs:  # before anything is served
            raise DeviceError(f"{full_name}: nt_fields PVs are added before the device serves")
        pv = DevicePV(
            self, full_name, initial, on_put=on_put, writable=writable, type=type,
            choices=choices, nt=nt, on_rpc=on_rpc, queue=self._urgent_queue if urgent else self._queue,
            access_group=access_group, display=display,
        )
        self._pvs[full_name] = pv
        if isinstance(self._provider, GuardedProvider):
            self._provider.add(full_name, pv._pv, access_group)
        else:
            self._provider.add(full_name, pv._pv)
        if nt_fields and type is not None:
            self._nt_groups.append(name)
            current = pv.value
            pv.field_pvs = {
                field: self.add_pv(f"{name}:{field}", current[field], nt=NTScalar(code), access_group=access_group)
                for field, code in ((f, type[f]) for f in type.keys())
                if isinstance(code, str) and len(code.lstrip("a")) == 1 and code.lstrip("a") in NT_SCALAR_CODES
            }
        self.refresh_pvi()
        return pv

    def remove_pv(self, pv: DevicePV) -> None:
        """Stop serving a PV added with `add_pv` (clients see it disconnect)."""
        self._provider.remove(pv.name)
        self._pvs.pop(pv.name, None)
        self.refresh_pvi()

    def pvi_extra(self) -> dict[str, str]:
        """PVs served outside `add_pv` (by a provider added with `add_provider`) that PVI
        should list: {suffix: access mode}. Called whenever PVI is rebuilt, which is after each
        CONFIG is applied, so a subclass whose PVs follow CONFIG overrides this."""
        return {}

    def refresh_pvi(self) -> None:
        """Rebuild ``PREFIX:PVI`` (and ``PREFIX:CONFIG:PVI``) from the PVs served now; clients
        reconnect when the list changed. Call it after changing what `pvi_extra` returns."""
        if not self._pvi_pvs:  # not serving yet: _serve builds them
            return
        for suffix, value in self._pvi_values().items():
            pv = self._pvi_pvs[suffix]
            if pvi_entries(pv.value) != pvi_entries(value):
                pv.retype(value)

    def _pvi_values(self) -> dict[str, Value]:
        start = len(self.prefix) + 1
        # PVI lists the NT PVs (PVI PVs themselves are structures, so never listed)
        modes = {name[start:]: pv.access_mode for name, pv in self._pvs.items() if pv.access_mode}
        modes.update(self.pvi_extra())
        return device_pvi(self.prefix, modes, groups=("CONFIG", *self._nt_groups),
                          description=self._info()["description"])

    def _add_config_field(self, field: ConfigField) -> DevicePV:
        """Serve ``CONFIG:<field>``: a put is a CONFIG put of that one field (same validation,
        same messages, same access group), and it shows what was applied."""
        return self.add_pv(
            f"CONFIG:{field.name}", field.to_pv(getattr(self.config, field.name)),
            nt=None if field.choices else NTScalar(field.code), choices=field.choices,
            on_put=lambda value: self.apply_config({field.name: field.from_pv(value)}),
            access_group=CONTROL_GROUP,
        )

    def _post_config_fields(self, before: Any, after: Any) -> None:
        for field in self._config_fields:
            new = getattr(after, field.name)
            if new != getattr(before, field.name):
                self._config_field_pvs[field.name].post(field.to_pv(new))

    def cap_default(self, name: str, ceiling: float) -> None:
        """Lower CONFIG field `name` to `ceiling` if its default is above it (call in
        ``__init__``): a host ceiling (e.g. ``--max-memory-mb``) that CONFIG puts may not
        exceed must not make the type's own default a refused configuration."""
        before = self.config
        if getattr(before, name) > ceiling:
            self.config = dataclasses.replace(before, **{name: type(getattr(before, name))(ceiling)})
            self._config_pv.post(config_to_dict(self.config))
            self._post_config_fields(before, self.config)

    def add_provider(self, provider: Any) -> None:
        """Serve a p4p DynamicProvider alongside this device's PVs, for PVs made on demand
        (call in ``__init__``). Its names should start with the device prefix."""
        if self._server is not None:
            raise DeviceError("add_provider must be called before the device serves")
        self._providers.append(provider)

    def monitor(
        self,
        pv_name: str,
        callback: Callable[[Value], Any],
        *,
        request: str | None = None,
        on_disconnect: Callable[[Exception], Any] | None = None,
    ) -> Any:
        """Call ``callback(value)`` on every update of an external PV, until the device closes.

        `pv_name` may be ``ca://NAME`` (Channel Access), ``pva://NAME`` or a bare NAME
        (PVAccess); either way `callback` gets an NT Value (NTScalar, NTScalarArray or NTEnum),
        with the IOC's timestamp, alarm and (CA: from DBR_CTRL) units and precision.
        An exception in `callback` moves the device to error. ``on_disconnect(exc)`` is called
        when the PV disconnects. Callbacks run on client threads: do not block in them.
        `request` (a pvRequest) applies to PVAccess only: CA monitors deliver every update.
        """
        source = parse_input(pv_name)
        connected = False

        def deliver(value: Any) -> None:
            nonlocal connected
            try:
                if isinstance(value, Exception):
                    # p4p reports every new subscription as disconnected first: skip that one
                    if connected and on_disconnect is not None:
                        on_disconnect(value)
                    connected = False
                else:
                    connected = True
                    callback(value)
            except Exception as exc:
                self.report_error(exc)

        subscription: Any
        if source.protocol == "ca":
            values = CaValues()

            def convert(update: Any) -> None:
                try:
                    value = values.value_of(update)
                except Exception as exc:  # an update that cannot be converted: say so, keep monitoring
                    self.report_error(f"{pv_name}: {type(exc).__name__}: {exc}")
                    return
                deliver(value)

            def from_ca(update: Any) -> None:  # both on the CA loop's thread
                if is_disconnect(update):
                    values.disconnected()
                    deliver(Disconnected(str(update)))
                else:
                    for ready in values.take(update):  # held until the units and choices came
                        convert(ready)

            def on_control(control: Any) -> None:
                for update in values.control(control):
                    convert(update)

            subscription = channel_access().monitor(source.name, from_ca, on_control)
        else:
            subscription = self.pva_client().monitor(
                source.name, deliver, request=request, notify_disconnect=True
            )
        self._subscriptions.append(subscription)
        return subscription

    def pva_client(self) -> Context:
        """The device's PVAccess client (a thread Context, ``nt=False``), made at first use and
        closed with the device."""
        if self._client_context is None:
            self._client_context = Context("pva", nt=False)
        return self._client_context

    def close_monitor(self, subscription: Any) -> None:
        """Stop a monitor opened with `monitor` before the device closes (e.g. in ``stop``), and
        drop its channel from the client's cache so long-lived devices do not accumulate them."""
        subscription.close()
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
        if isinstance(subscription, Subscription) and self._client_context is not None and not any(
            other.name == subscription.name for other in self._subscriptions
        ):
            self._client_context.disconnect(subscription.name)

    def require_state(self, *states: DeviceState) -> None:
        """Raise DeviceError unless the device is in one of `states` (for put handlers)."""
        if self._state not in states:
            wanted = " or ".join(s.value for s in states)
            raise DeviceError(f"{self.prefix} must be {wanted} for this (it is {self._state.value})")

    def report_error(self, error: BaseException | str) -> None:
        """Move the device to error with `error` in INFO.last_error (stopping it if running).
        For failures outside a put, e.g. in a monitor callback or a worker thread."""
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        with self._lock:
            if self._state is DeviceState.closed:
                return
            self.log.error("moving to error: %s", message)
            if self._state is DeviceState.running:
                self._call_quietly(self.stop)
            self._last_error = message
            self._info_pv.post(self._info())
            self.state = DeviceState.error

    def show_problem(self, message: str) -> None:
        """Show `message` in INFO.last_error without leaving the current state: for a problem
        the device works through (a spool file it cannot write while it records on in memory).
        The next accepted CONFIG clears it, as it clears an error."""
        with self._lock:
            self._last_error = message
            self._info_pv.post(self._info())

    @property
    def state(self) -> DeviceState:
        return self._state

    @state.setter
    def state(self, new: DeviceState) -> None:
        """Move to `new` (raises IllegalTransition if the state machine forbids it) and post it."""
        new = DeviceState(new)
        with self._lock:
            check_transition(self._state, new)
            self._state = new
            self._state_pv.post(STATE_NAMES.index(new.value))
            self._enable_pv.post(new is DeviceState.running)

    def reload_access(self) -> None:
        """Read the access security file again (what SIGHUP does); a bad file is logged and the
        rules in force stay. Nothing to do for a device without a file."""
        if self.access is None:
            return
        try:
            self.access.reload()
        except DeviceError as exc:
            self.log.error("%s; keeping the rules in force", exc)
        else:
            self.log.info("access security reloaded from %s", self.acf_path)

    # -- life cycle ---------------------------------------------------------------------------

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the device is closed; True if it is, False if `timeout` passed first."""
        return self._closed.wait(timeout)

    def shutdown(self) -> None:
        """Close the device from the process that runs it (same as a put of CLOSE=True)."""
        self._close_device()
        self._teardown()

    def __enter__(self) -> MetaDevice:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def _serve(self) -> None:
        try:
            self._refuse_if_served_elsewhere()
            if self._initial_config is not None:
                self.apply_config(self._initial_config)
            pvi_pvs = {suffix: self.add_pv(suffix, value, type=value.type())
                       for suffix, value in self._pvi_values().items()}
            self._pvi_pvs = pvi_pvs  # from now on, add_pv and CONFIG keep them current
        except BaseException:
            for pv in self._pvs.values():  # never served: release them all the same
                pv.close()
            raise
        self._queue.start()
        self._urgent_queue.start()
        self._server = Server(providers=self._providers, conf=self._server_conf, useenv=True)
        threading.Thread(target=self._beat_while_serving, name=f"heartbeat:{self.prefix}", daemon=True).start()
        self.log.info("serving %s (pid %d)", self.device_type, os.getpid())

    def _refuse_if_served_elsewhere(self) -> None:
        probe = Context("pva", nt=False, conf=self._server_conf, useenv=True)
        try:
            other = probe.get(f"{self.prefix}:TYPE", timeout=self.prefix_probe_timeout)
        except TimeoutError:
            return
        finally:
            probe.close()
        raise DeviceError(
            f"prefix {self.prefix!r} is already served by another device "
            f"(type {other['value']!r}); choose another prefix or close that device"
        )

    def _info(self) -> dict[str, Any]:
        # The plugin is the distribution whose entry point registered this type ("" for a
        # type defined in a script).
        plugin = registry.get(self.device_type).plugin if self.device_type in registry else ""
        plugin_version = _version_of(plugin)
        doc = (type(self).__doc__ or "").strip().splitlines()
        return {
            "description": self.description or (doc[0] if doc else ""),
            "version": self.version or plugin_version,
            "plugin": plugin,
            "plugin_version": plugin_version,
            "core_version": _version_of("epics-meta-devices"),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start_time": self._started_at.isoformat(timespec="seconds"),
            "last_error": self._last_error,
        }

    def _beat_while_serving(self) -> None:
        # Only queues the beat: the handlers' worker posts it, so HEARTBEAT stops when a handler
        # hangs. At most one beat waits in the queue, so a hung worker does not pile them up.
        while not self._closed.wait(HEARTBEAT_PERIOD):
            if not self._beat_queued:
                self._beat_queued = True
                try:
                    self._queue.push(self._beat)
                except Exception:  # the queue stopped: the device is closing
                    return

    def _beat(self) -> None:
        """Count one heartbeat. Runs on the worker that runs this device's put and RPC
        handlers, so a HEARTBEAT that goes on counting proves the process, its PV server and
        its handlers are alive, not merely one thread of it."""
        self._beat_queued = False
        with self._lock:  # _teardown closes the PVs under this lock
            if not self._closed.is_set():
                self._beats += 1
                self._heartbeat_pv.post(self._beats)

    def _call_quietly(self, hook: Callable[[], Any]) -> None:
        try:
            hook()
        except Exception:
            self.log.exception("%s() failed", hook.__name__)

    # -- default PV handlers (run on the device's queue) -------------------------------------

    def apply_config(self, changes: Mapping[str, Any]) -> None:
        """Configure from the process that runs the device: the same as a CONFIG put."""
        with self._lock:
            if self._state in (DeviceState.running, DeviceState.closed):
                raise DeviceError(
                    f"cannot configure {self.prefix} while {self._state.value}"
                    + (": disable it first (ENABLE=False)" if self._state is DeviceState.running else "")
                )
            new_config = merge_config(self.config, changes)
            before = self._state
            try:
                self.configure(new_config)
            except Exception as exc:
                if self._state is not before:  # the hook moved the state itself: undo that
                    self._state = before
                    self._state_pv.post(STATE_NAMES.index(before.value))
                raise self._refusal("configure", exc) from exc
            before_config, self.config = self.config, new_config
            self._config_pv.post(config_to_dict(new_config))
            self._post_config_fields(before_config, new_config)
            self.refresh_pvi()
            if self._last_error:  # a successful configure clears the last error
                self._last_error = ""
                self._info_pv.post(self._info())
            if self._state in (DeviceState.created, DeviceState.error):
                self.state = DeviceState.ready
            self.log.info("configured: %s", config_to_dict(new_config))

    def _put_config(self, value: Value) -> None:
        self.apply_config(changes_from_put(value))

    def set_enabled(self, enable: Any) -> None:
        """Enable or disable from the process that runs the device: the same as an ENABLE put."""
        with self._lock:
            if bool(enable) and self._state is not DeviceState.running:
                if self._state is not DeviceState.ready:
                    hint = {
                        DeviceState.created: "configure it first (put CONFIG)",
                        DeviceState.error: "configure it to clear the error (put CONFIG)",
                    }.get(self._state, "it is closed")
                    raise DeviceError(f"cannot enable {self.prefix} while {self._state.value}: {hint}")
                try:
                    self.start()
                except Exception as exc:
                    raise self._refusal("start", exc) from exc
                self.state = DeviceState.running
                self.log.info("enabled")
            elif not bool(enable) and self._state is DeviceState.running:
                try:
                    self.stop()
                except Exception as exc:
                    raise self._refusal("stop", exc) from exc
                self.state = DeviceState.ready
                self.log.info("disabled")
            else:  # already where the put asks to be: nothing to do, show the truth
                self._enable_pv.post(self._state is DeviceState.running)

    def _put_close(self, close: Any) -> None:
        if not bool(close):
            self._close_pv.post(False)
            return
        self._close_device()
        # The put's reply is sent after this handler returns; tear down after that.
        threading.Thread(target=self._teardown_after_reply, name=f"close:{self.prefix}").start()

    def _refusal(self, hook: str, exc: Exception) -> DeviceError:
        message = str(exc) if isinstance(exc, DeviceError) else f"{hook} failed: {type(exc).__name__}: {exc}"
        self.log.warning("refused: %s", message)
        self._last_error = message
        self._info_pv.post(self._info())
        return DeviceError(message)

    def _close_device(self) -> None:
        with self._lock:
            if self._state is DeviceState.closed:
                return
            if self._state is DeviceState.running:
                self._call_quietly(self.stop)
            self._call_quietly(self.close)
            self.state = DeviceState.closed
            self._close_pv.post(True)
            self.log.info("closed")

    def _teardown_after_reply(self) -> None:
        self._urgent_queue.sync(timeout=5.0)  # CLOSE's own reply first (it runs on this queue)
        self._queue.sync(timeout=5.0)
        self._teardown()

    def _teardown(self) -> None:
        """Release everything the device opened: monitors, client context, server, PVs."""
        with self._lock:
            if self._closed.is_set():
                return
            for subscription in self._subscriptions:
                subscription.close()
            self._subscriptions.clear()
            if self._client_context is not None:
                self._client_context.close()
                self._client_context = None
            if self._server is not None:
                self._server.stop()
                self._server = None
            for pv in self._pvs.values():
                pv.close()
            self._closed.set()
        for queue in (self._queue, self._urgent_queue):
            if threading.current_thread() not in queue._T:
                queue.stop()


def handle_signals(device: MetaDevice) -> None:
    """From the main thread: close `device` cleanly on SIGINT or SIGTERM, and re-read its
    access security file on SIGHUP (only when it has one: otherwise SIGHUP keeps its default
    meaning, a hang-up ends the process)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: device.shutdown())
    if device.access is not None:
        signal.signal(signal.SIGHUP, lambda *_: device.reload_access())


def serve_until_closed(device: MetaDevice, poll: float = 0.5) -> None:
    """Block until `device` is closed, handling signals as `handle_signals` says (from the
    main thread). `poll` bounds how long a signal waits to be handled."""
    handle_signals(device)
    while not device.wait_closed(timeout=poll):
        pass
    device.shutdown()
