"""DeviceFactory: a device that creates and deletes other devices on demand through its PVs,
one process per device; and FactoryClient, the same API for local and remote factories.

    factory = emd.factory.DeviceFactory('myfactory')   # then everything through PVs
"""

from __future__ import annotations

import json
import multiprocessing.connection
import os
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any, Mapping

from p4p import Type, Value
from p4p.nt import NTScalar, NTTable

from ._access import FACTORY_GROUP, current_client
from ._autosave import SavedDevice, StateFile
from ._children import RESTART_DELAY, RESTART_POLICIES, ChildDevice, start_child, stop_child, stop_children
from ._client import DeviceClient, client_for
from ._config import config_from_json
from ._device import MetaDevice, validate_prefix
from ._plugins import plugin_manager
from ._registry import registry
from ._state import STATE_NAMES, DeviceError, DeviceState

CREATE_TYPE = Type(
    [("device_type", "s"), ("device_prefix", "s"), ("config", "s"), ("restart", "s"), ("restart_limit", "i")],
    id="emd:factory:create:1.0",
)
"""CREATE: ``config`` is optional JSON text of CONFIG fields applied at creation; ``restart``
is "never" (default) or "on-failure" (a crashed process is started again, at most
``restart_limit`` times: 0 means the factory's default_restart_limit)."""
DELETE_TYPE = Type([("device_prefix", "s")], id="emd:factory:delete:1.0")
DEVICES_TABLE = NTTable(
    [("prefix", "s"), ("type", "s"), ("pid", "i"), ("state", "s"), ("start_time", "s"), ("creator", "s"),
     ("restarts", "i")]
)
"""DEVICES: ``creator`` is account@host of the client whose CREATE started the device;
``state`` its STATE, or "unresponsive" when its HEARTBEAT stopped, or "restarting";
``restarts`` how often it was restarted after a crash."""


@dataclass
class FactoryConfig:
    create_timeout: float = 30.0
    """Seconds a CREATE waits for the device process to serve its PVs."""
    delete_timeout: float = 10.0
    """Seconds a DELETE (and the factory's close) waits for a clean close before SIGTERM (then
    3 s more) and SIGKILL (then 2 s more): DELETE returns within delete_timeout + 5 s."""
    unresponsive_after: float = 3.0
    """Seconds without a HEARTBEAT update after which DEVICES shows a device as unresponsive."""
    default_restart_limit: int = 3
    """Restarts of an "on-failure" device whose CREATE gives no restart_limit."""
    max_restart_limit: int = 10
    """The highest restart_limit a CREATE may ask for."""
    max_devices: int = 100
    """Devices this factory runs at most."""
    configured: bool = True
    """No effect; lets the seed talk's ``put('myfactory:CONFIG', {'configured': True})`` work."""

    def __post_init__(self) -> None:
        if self.create_timeout <= 0 or self.delete_timeout <= 0 or self.unresponsive_after <= 0:
            raise ValueError("create_timeout, delete_timeout and unresponsive_after must be > 0")
        if not 0 <= self.default_restart_limit <= self.max_restart_limit:
            raise ValueError("default_restart_limit must be between 0 and max_restart_limit")
        if self.max_devices < 1:
            raise ValueError(f"max_devices must be >= 1, got {self.max_devices}")


class DeviceFactory(MetaDevice):
    """Creates and deletes devices of the installed types, one process each."""

    # Not registered as a device type: DEVICETYPES lists what a factory creates, not factories.
    device_type = "factory.DeviceFactory"
    Config = FactoryConfig
    client_class = "epics_meta_devices.factory:FactoryClient"
    worker_threads = 16
    """Threads that wait for CREATEs and DELETEs (started on demand, never more)."""

    def __init__(self, prefix: str, *, state_file: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        """`state_file`: keep this factory's devices in that file and recreate them now (see
        docs/factory.md, "Surviving restarts"). Set by the host, never through a PV. An
        unreadable file raises DeviceError before anything starts."""
        self._state_file = StateFile(state_file) if state_file is not None else None
        saved = self._state_file.load() if self._state_file is not None else []
        if self._state_file is not None:
            try:  # now, not at the first change: a file that cannot be written refuses the start
                self._state_file.save(saved)
            except OSError as exc:
                raise DeviceError(f"state file {self._state_file.path} cannot be written: {exc}") from None
        super().__init__(prefix, **kwargs)
        self.cap_default("max_devices", self.host.max_devices)
        self._saved: dict[str, SavedDevice] = {}  # what the state file holds, by prefix
        self._state_lock = threading.Lock()  # one write at a time, each with the latest entries
        self._children: dict[str, ChildDevice] = {}
        self._starting: set[str] = set()
        self._forgotten: list[ChildDevice] = []  # exited; the watcher releases their processes
        self._children_lock = threading.Lock()
        self._closing = threading.Event()
        # CREATE and DELETE wait for processes in these workers, so they run concurrently and
        # never hold up the factory's other PVs.
        self._workers = ThreadPoolExecutor(self.worker_threads, thread_name_prefix=f"factory:{prefix}")
        self._watcher: threading.Thread | None = None
        self._wake_read, self._wake_write = os.pipe()
        plugin_manager()
        self.create_pv = self.add_pv("CREATE", {}, type=CREATE_TYPE, on_put=self._on_create,
                                     access_group=FACTORY_GROUP)
        self.delete_pv = self.add_pv("DELETE", {}, type=DELETE_TYPE, on_put=self._on_delete,
                                     access_group=FACTORY_GROUP, urgent=True)  # never behind queued CREATEs
        self.devices_pv = self.add_pv("DEVICES", [], nt=DEVICES_TABLE)
        self.devicetypes_pv = self.add_pv("DEVICETYPES", self.creatable_types(), nt=NTScalar("as"))
        if self.access is None:
            self.log.warning("no access security file (--acf): any client that reaches this host "
                             "can create, delete and control devices")
        if self._state_file is not None:
            self._restore(saved)

    def configure(self, config: FactoryConfig) -> None:
        """Refuse a max_devices above the host's ceiling (``--max-devices``): a put must not
        lift a guard the host set."""
        if config.max_devices > self.host.max_devices:
            raise DeviceError(f"max_devices={config.max_devices} is above this host's ceiling of "
                              f"{self.host.max_devices} devices (emd factory run --max-devices)")

    @staticmethod
    def creatable_types() -> list[str]:
        """Registered types a device process can import: a script's own classes (``__main__``)
        exist only in that script, which children do not re-run."""
        return [info.name for info in registry.infos() if info.cls.__module__ != "__main__"]

    # -- CREATE ---------------------------------------------------------------------------------

    def _on_create(self, request: Value) -> Future:
        if self.state is not DeviceState.running:
            raise DeviceError(f"factory {self.prefix} is not enabled ({self.state.value}): put ENABLE=True first")
        device_type, prefix = request["device_type"].strip(), request["device_prefix"].strip()
        creatable = self.creatable_types()
        if device_type not in creatable:  # only registered types, never an import path from the wire
            known = ", ".join(creatable) or "none installed"
            raise DeviceError(f"unknown device type {device_type!r} (known: {known})" if device_type
                              else f"CREATE needs a device_type, one of: {known}")
        validate_prefix(prefix)
        config = config_from_json(request["config"], "CREATE config") if request["config"].strip() else None
        restart, restart_limit = self._restart_policy(request["restart"].strip() or "never", request["restart_limit"])
        with self._children_lock:
            if prefix == self.prefix or prefix in self._children or prefix in self._starting:
                raise DeviceError(f"{prefix!r} is already a device of factory {self.prefix}")
            if len(self._children) + len(self._starting) >= self.config.max_devices:
                raise DeviceError(f"factory {self.prefix} already runs max_devices={self.config.max_devices}")
            self._starting.add(prefix)
        client = current_client()
        return self._workers.submit(self._create, device_type, prefix, config, str(client) if client else "",
                                    restart, restart_limit, False)

    def _restart_policy(self, restart: str, limit: int) -> tuple[str, int]:
        """CREATE's restart fields, checked: the policy and the restart limit it gets."""
        if restart not in RESTART_POLICIES:
            raise DeviceError(f"unknown restart policy {restart!r} (known: {', '.join(RESTART_POLICIES)})")
        ceiling = self.config.max_restart_limit
        if not 0 <= limit <= ceiling:
            raise DeviceError(f"restart_limit must be between 0 and {ceiling} (this factory's max_restart_limit), "
                              f"got {limit}")
        return restart, (limit or self.config.default_restart_limit) if restart == "on-failure" else 0

    def _create(self, device_type: str, prefix: str, config: dict[str, Any] | None, creator: str = "",
                restart: str = "never", restart_limit: int = 0, enable: bool = False) -> None:
        with self._children_lock:  # before the child's STATE and CONFIG can refine it
            self._saved[prefix] = SavedDevice(device_type, prefix, creator, config, enable, restart, restart_limit)
        try:
            child = start_child(device_type, prefix, config, self.config.create_timeout, self.acf_path, enable,
                                host=self.host, abort=self._closing)
        except BaseException:
            with self._children_lock:
                self._saved.pop(prefix, None)
            self._write_state()
            raise
        finally:
            with self._children_lock:
                self._starting.discard(prefix)
        child.creator, child.restart, child.restart_limit = creator, restart, restart_limit
        if not self._adopt(child):
            raise DeviceError(f"factory {self.prefix} closed while {prefix} was starting")
        self._write_state()
        self.log.info("created %s %s (pid %s) for %s", device_type, prefix, child.process.pid, creator or "this process")
        # CREATE itself keeps no request: a client that reads, changes a field and writes
        # (pvapy's put) must not send somebody else's config again. DEVICES shows what was made.
        self._post_devices()

    def _adopt(self, child: ChildDevice, replacing: ChildDevice | None = None) -> bool:
        """Make a started child one of this factory's devices (in place of `replacing`, a
        crashed one) and watch it. False (the child stopped) if the factory is closing or the
        device was deleted meanwhile."""
        with self._children_lock:  # the same lock as close(): no child can slip past it
            adopted = not self._closing.is_set() and self._children.get(child.prefix) is replacing
            if adopted:
                self._children[child.prefix] = child
                if replacing is not None:
                    self._forgotten.append(replacing)
        if not adopted:
            stop_child(child, self.config.delete_timeout)
            child.release()
            return False
        if replacing is not None:
            self._unwatch(replacing)
        self._ensure_watcher()
        child.subscriptions = [
            self.monitor(f"{child.prefix}:{name}", partial(callback, child))
            for name, callback in (("STATE", self._on_child_state), ("CONFIG", self._on_child_config),
                                   ("HEARTBEAT", self._on_child_beat))
        ]
        return True

    def _on_child_state(self, child: ChildDevice, value: Value) -> None:
        child.state = STATE_NAMES[value["value.index"]]
        child.enabled = child.state == "running"
        self._post_devices()
        self._update_saved(child)

    def _on_child_config(self, child: ChildDevice, value: Value) -> None:
        child.last_config = value.todict()
        self._update_saved(child)

    def _on_child_beat(self, child: ChildDevice, value: Value) -> None:
        child.last_beat = time.monotonic()
        if child.unresponsive:
            child.unresponsive = False
            self.log.warning("%s is responsive again (HEARTBEAT %d)", child.prefix, value["value"])
            self._post_devices()

    def _check_heartbeats(self) -> None:
        """Mark children whose HEARTBEAT stopped for unresponsive_after s (stopped, hung in a
        handler, overloaded) as unresponsive in DEVICES, and log it once."""
        now = time.monotonic()
        with self._children_lock:
            stalled = [c for c in self._children.values() if not c.unresponsive and c.state != "restarting"
                       and now - c.last_beat > self.config.unresponsive_after]
            for child in stalled:
                child.unresponsive = True
        for child in stalled:
            self.log.warning("%s (pid %s) is unresponsive: no HEARTBEAT for %.1f s (while it is stopped or "
                             "frozen, new clients searching this host by unicast may not find its other "
                             "servers: see docs/factory.md, Liveness)",
                             child.prefix, child.process.pid, now - child.last_beat)
        if stalled:
            self._post_devices()

    # -- DELETE and cleanup -----------------------------------------------------------------------

    def _on_delete(self, request: Value) -> Future:
        prefix = request["device_prefix"].strip()
        with self._children_lock:
            child = self._children.get(prefix)
            known = ", ".join(sorted(self._children)) or "none"
        if child is None:
            raise DeviceError(f"no device {prefix!r} in factory {self.prefix} (devices: {known})")
        return self._workers.submit(self._delete, child)

    def _delete(self, child: ChildDevice) -> None:
        code = stop_child(child, self.config.delete_timeout)
        self.log.info("deleted %s (exit code %s)", child.prefix, code)
        self._forget(child)

    def _forget(self, child: ChildDevice) -> None:
        with self._children_lock:
            mine = self._children.get(child.prefix) is child
            if mine:
                del self._children[child.prefix]
                self._forgotten.append(child)
                self._saved.pop(child.prefix, None)
        # Posted and written by whichever thread forgets it, DELETE's included, even when the
        # watcher got there first: a DELETE must not complete before DEVICES stops showing the
        # device, nor before the state file stops holding it (the write takes the state lock,
        # so it waits for a write the watcher has begun, and writes the latest entries).
        self._post_devices()
        self._write_state()  # the file never brings it back
        if mine:
            self._unwatch(child)

    def _unwatch(self, child: ChildDevice) -> None:
        """Close a gone child's monitors and let the watcher release its process now."""
        subscriptions, child.subscriptions = child.subscriptions, []
        for subscription in subscriptions:
            self.close_monitor(subscription)
        os.write(self._wake_write, b"x")

    def _release_forgotten(self) -> None:
        """Close the process objects of forgotten children, freeing their file descriptors now
        rather than at some later garbage collection. Only the watcher calls this: it may be
        waiting on those very descriptors."""
        with self._children_lock:
            forgotten, self._forgotten = self._forgotten, []
        for child in forgotten:
            child.release()

    def _ensure_watcher(self) -> None:
        with self._children_lock:
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch_children, name=f"watch:{self.prefix}", daemon=True)
                self._watcher.start()
        os.write(self._wake_write, b"x")  # look at the new child's process too

    def _watch_children(self) -> None:
        """Forget children whose process ended, however it ended (crash and SIGKILL included),
        as soon as the OS reports it."""
        while not self._closing.is_set():
            self._release_forgotten()
            self._check_heartbeats()
            with self._children_lock:
                by_sentinel = {c.process.sentinel: c for c in self._children.values() if c.state != "restarting"}
            for ready in multiprocessing.connection.wait([*by_sentinel, self._wake_read], timeout=1.0):
                if ready == self._wake_read:
                    os.read(self._wake_read, 4096)
                    continue
                child = by_sentinel[ready]
                try:
                    self._on_child_exit(child, child.join(1.0))
                except Exception:  # keep watching the other children whatever happens
                    self.log.exception("cleanup of %s failed", child.prefix)

    def _on_child_exit(self, child: ChildDevice, code: int | None) -> None:
        """Forget a child whose process ended, or restart it: it crashed (ended unasked with a
        non-zero code or a signal) and its restart policy still allows it."""
        if child.stopping or code == 0:
            self.log.info("%s exited", child.prefix)
        elif child.restart == "on-failure" and child.restarts < child.restart_limit:
            self.log.warning("%s crashed (exit code %s): restart %d of %d", child.prefix, code,
                             child.restarts + 1, child.restart_limit)
            with self._children_lock:
                if self._children.get(child.prefix) is not child or self._closing.is_set():
                    return
                child.state = "restarting"
            self._post_devices()
            self._workers.submit(self._restart, child)
            return
        elif child.restart == "on-failure":
            self.log.error("%s crashed (exit code %s) after %d restarts: not restarted again",
                           child.prefix, code, child.restarts)
        else:
            self.log.warning("%s exited unexpectedly with code %s", child.prefix, code)
        self._forget(child)

    def _restart(self, crashed: ChildDevice) -> None:
        """Start a crashed child's device again with its last accepted CONFIG and its enable
        state (runs in a worker: the worker threads live as long as the factory, which its
        children's PR_SET_PDEATHSIG needs)."""
        restarts = crashed.restarts
        while restarts < crashed.restart_limit and not self._closing.wait(RESTART_DELAY):
            restarts += 1
            configured = crashed.last_config if crashed.state not in ("created", "starting") else None
            try:
                child = start_child(crashed.device_type, crashed.prefix, configured, self.config.create_timeout,
                                    self.acf_path, enable=crashed.enabled, host=self.host, abort=self._closing)
            except DeviceError as exc:
                self.log.error("restart %d of %s failed: %s", restarts, crashed.prefix, exc)
                continue
            child.creator, child.restart, child.restart_limit = crashed.creator, crashed.restart, crashed.restart_limit
            child.restarts, child.last_config = restarts, crashed.last_config
            if self._adopt(child, replacing=crashed):
                self.log.info("restarted %s (pid %s)", child.prefix, child.process.pid)
                self._post_devices()
            return
        if not self._closing.is_set():
            self.log.error("%s not restarted: restart limit %d reached", crashed.prefix, crashed.restart_limit)
        self._forget(crashed)

    # -- the state file --------------------------------------------------------------------------

    def _restore(self, saved: list[SavedDevice]) -> None:
        """Recreate the devices of the state file, each in a worker (together, like CREATEs):
        with their saved CONFIG, enabled if they were running. An entry whose type is not
        installed here, or whose device fails to start, is logged and leaves the file."""
        creatable = self.creatable_types()
        for entry in saved:
            if entry.type not in creatable:
                self.log.error("state file: %s not recreated: device type %r is not installed here "
                               "(saved entry: %s)", entry.prefix, entry.type, json.dumps(asdict(entry)))
                continue
            with self._children_lock:
                if entry.prefix in self._starting or entry.prefix == self.prefix:
                    self.log.error("state file: %s is listed twice: the second entry is skipped", entry.prefix)
                    continue
                self._starting.add(entry.prefix)
                self._saved[entry.prefix] = entry  # in the file until it is recreated or fails
            future = self._workers.submit(self._create, entry.type, entry.prefix, entry.config, entry.creator,
                                          entry.restart, entry.restart_limit, entry.enabled)
            future.add_done_callback(partial(self._restored, entry))
        self._write_state()  # at once: a state file that cannot be written shows in the log now

    def _restored(self, entry: SavedDevice, future: Future) -> None:
        error = future.exception()
        if error is None:
            self.log.info("state file: recreated %s %s%s", entry.type, entry.prefix, " (enabled)" if entry.enabled else "")
        else:
            self.log.error("state file: %s not recreated: %s (saved entry: %s)", entry.prefix, error,
                           json.dumps(asdict(entry)))

    def _update_saved(self, child: ChildDevice) -> None:
        """Bring `child`'s entry in the state file up to date with its STATE and CONFIG: the
        CONFIG it last accepted once it is configured (ready or running), and whether it runs.
        Entries of children starting or restarting keep what they had."""
        if self._state_file is None:
            return
        with self._children_lock:
            previous = self._saved.get(child.prefix)
            if previous is None or self._children.get(child.prefix) is not child:
                return
            configured = child.state in ("ready", "running") and child.last_config is not None
            current = replace(previous, config=child.last_config if configured else previous.config,
                              enabled=child.state == "running" if child.state in ("ready", "running", "error")
                              else previous.enabled)
            self._saved[child.prefix] = current
        if current != previous:
            self._write_state()

    def _write_state(self) -> None:
        """Write the state file, unless the factory is closing: a factory stopped (SIGTERM, CLOSE,
        host shutdown) keeps its devices in the file for its next start."""
        if self._state_file is None or self._closing.is_set():
            return
        with self._state_lock:  # the entries are taken inside: the last write has the latest
            with self._children_lock:
                entries = sorted(self._saved.values(), key=lambda e: e.prefix)
            try:
                self._state_file.save(entries)
            except (OSError, TypeError, ValueError) as exc:  # the devices run on; a next start would miss it
                self.log.error("cannot write the state file %s: %s", self._state_file.path, exc)

    def _post_devices(self) -> None:
        # Built and posted under the lock: posts from different threads never overtake each
        # other, so DEVICES never shows a device that was already forgotten.
        with self._children_lock:
            self.devices_pv.post([
                {"prefix": c.prefix, "type": c.device_type, "pid": c.process.pid or 0,
                 "state": c.shown_state, "start_time": c.started_at.isoformat(timespec="seconds"),
                 "creator": c.creator, "restarts": c.restarts}
                for c in sorted(self._children.values(), key=lambda c: c.prefix)
            ])

    def reload_access(self) -> None:
        """Re-read the access security file here and in every device process (SIGHUP to each:
        they enforce the same file)."""
        super().reload_access()
        if self.access is None:
            return
        with self._children_lock:
            pids = [c.process.pid for c in self._children.values() if c.process.pid]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:  # it just exited: the watcher forgets it
                pass

    # -- closing ----------------------------------------------------------------------------------

    def close(self) -> None:
        """End every child before the factory goes, all together: asked to close, then SIGTERM,
        then SIGKILL (within delete_timeout + 5 s, whatever the children do). Children still
        starting stop waiting for their start at once (see start_child's `abort`) and are
        ended the same way, in parallel."""
        with self._children_lock:
            self._closing.set()
            children = list(self._children.values())
        stop_children(children, self.config.delete_timeout)
        for child in children:
            self._forget(child)
        self._workers.shutdown(wait=True, cancel_futures=True)
        os.write(self._wake_write, b"x")
        if self._watcher is not None:
            self._watcher.join(5.0)
        self._release_forgotten()
        os.close(self._wake_read)
        os.close(self._wake_write)


class FactoryClient(DeviceClient):
    """Drive a factory, local or remote alike (only the prefix differs)."""

    create_timeout: float = 60.0

    def create(
        self, device_type: str, device_prefix: str, config: Mapping[str, Any] | None = None,
        *, restart: str = "never", restart_limit: int = 0,
    ) -> DeviceClient:
        """Create a device and return its typed client (DeviceClient when its type names none
        or is not installed here). The client shares this factory client's connection.
        ``restart="on-failure"``: the factory starts the device again when its process
        crashes, at most `restart_limit` times (0: the factory's default)."""
        self.put(
            "CREATE",
            {"device_type": device_type, "device_prefix": device_prefix,
             "config": json.dumps(dict(config)) if config is not None else "",
             "restart": restart, "restart_limit": restart_limit},
            timeout=self.create_timeout,
        )
        return client_for(device_type, device_prefix, timeout=self.timeout, context=self._context)

    def delete(self, device_prefix: str) -> None:
        self.put("DELETE", {"device_prefix": device_prefix}, timeout=self.create_timeout)

    def devices(self) -> list[dict[str, Any]]:
        """The DEVICES table as one dict per device."""
        table = self.get_pv("DEVICES")["value"]
        columns = table.keys()
        # tolist(): plain Python values (int, str), not NumPy scalars
        return [dict(zip(columns, row)) for row in zip(*(_column(table[c]) for c in columns))]

    def types(self) -> list[str]:
        return list(self.get_pv("DEVICETYPES")["value"])


def _column(values: Any) -> list[Any]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


__all__ = ["DeviceFactory", "FactoryClient", "FactoryConfig"]
