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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Mapping

from p4p import Type, Value
from p4p.nt import NTScalar, NTTable

from ._access import FACTORY_GROUP, current_client
from ._children import ChildDevice, start_child, stop_child
from ._client import DeviceClient, client_for
from ._config import config_from_json
from ._device import MetaDevice, validate_prefix
from ._plugins import plugin_manager
from ._registry import registry
from ._state import STATE_NAMES, DeviceError, DeviceState

CREATE_TYPE = Type(
    [("device_type", "s"), ("device_prefix", "s"), ("config", "s")], id="emd:factory:create:1.0"
)
"""CREATE: ``config`` is optional JSON text of CONFIG fields applied at creation."""
DELETE_TYPE = Type([("device_prefix", "s")], id="emd:factory:delete:1.0")
DEVICES_TABLE = NTTable(
    [("prefix", "s"), ("type", "s"), ("pid", "i"), ("state", "s"), ("start_time", "s"), ("creator", "s")]
)
"""DEVICES: ``creator`` is account@host of the client whose CREATE started the device."""


@dataclass
class FactoryConfig:
    create_timeout: float = 30.0
    """Seconds a CREATE waits for the device process to serve its PVs."""
    delete_timeout: float = 10.0
    """Seconds a DELETE waits for a clean close before terminating, then killing, the process."""
    max_devices: int = 100
    """Devices this factory runs at most."""
    configured: bool = True
    """No effect; lets the seed talk's ``put('myfactory:CONFIG', {'configured': True})`` work."""

    def __post_init__(self) -> None:
        if self.create_timeout <= 0 or self.delete_timeout <= 0:
            raise ValueError("create_timeout and delete_timeout must be > 0")
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

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
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
                                     access_group=FACTORY_GROUP)
        self.devices_pv = self.add_pv("DEVICES", [], nt=DEVICES_TABLE)
        self.devicetypes_pv = self.add_pv("DEVICETYPES", self.creatable_types(), nt=NTScalar("as"))
        if self.access is None:
            self.log.warning("no access security file (--acf): any client that reaches this host "
                             "can create, delete and control devices")

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
        with self._children_lock:
            if prefix == self.prefix or prefix in self._children or prefix in self._starting:
                raise DeviceError(f"{prefix!r} is already a device of factory {self.prefix}")
            if len(self._children) + len(self._starting) >= self.config.max_devices:
                raise DeviceError(f"factory {self.prefix} already runs max_devices={self.config.max_devices}")
            self._starting.add(prefix)
        client = current_client()
        return self._workers.submit(self._create, device_type, prefix, config, str(client) if client else "")

    def _create(self, device_type: str, prefix: str, config: dict[str, Any] | None, creator: str = "") -> None:
        try:
            child = start_child(device_type, prefix, config, self.config.create_timeout, self.acf_path)
        finally:
            with self._children_lock:
                self._starting.discard(prefix)
        with self._children_lock:  # the same lock as close(): no child can slip past it
            closing = self._closing.is_set()
            if not closing:
                self._children[prefix] = child
        child.creator = creator
        if closing:
            stop_child(child, self.config.delete_timeout)
            raise DeviceError(f"factory {self.prefix} closed while {prefix} was starting")
        self._ensure_watcher()
        child.subscription = self.monitor(f"{prefix}:STATE", partial(self._on_child_state, child))
        self.log.info("created %s %s (pid %s) for %s", device_type, prefix, child.process.pid, creator or "this process")
        self.create_pv.post({"device_type": device_type, "device_prefix": prefix,
                             "config": json.dumps(config) if config is not None else ""})
        self._post_devices()

    def _on_child_state(self, child: ChildDevice, value: Value) -> None:
        child.state = STATE_NAMES[value["value.index"]]
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
        self.delete_pv.post({"device_prefix": child.prefix})
        self._forget(child)

    def _forget(self, child: ChildDevice) -> None:
        with self._children_lock:
            if self._children.get(child.prefix) is not child:
                return
            del self._children[child.prefix]
            self._forgotten.append(child)
        if child.subscription is not None:
            self.close_monitor(child.subscription)
            child.subscription = None
        self._post_devices()
        os.write(self._wake_write, b"x")  # let the watcher release the process now

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
            with self._children_lock:
                by_sentinel = {c.process.sentinel: c for c in self._children.values()}
            for ready in multiprocessing.connection.wait([*by_sentinel, self._wake_read], timeout=1.0):
                if ready == self._wake_read:
                    os.read(self._wake_read, 4096)
                    continue
                child = by_sentinel[ready]
                try:
                    code = child.join(1.0)
                    if child.exit_event.is_set() and code == 0:
                        self.log.info("%s exited", child.prefix)
                    else:
                        self.log.warning("%s exited unexpectedly with code %s", child.prefix, code)
                    self._forget(child)
                except Exception:  # keep watching the other children whatever happens
                    self.log.exception("cleanup of %s failed", child.prefix)

    def _post_devices(self) -> None:
        # Built and posted under the lock: posts from different threads never overtake each
        # other, so DEVICES never shows a device that was already forgotten.
        with self._children_lock:
            self.devices_pv.post([
                {"prefix": c.prefix, "type": c.device_type, "pid": c.process.pid or 0,
                 "state": c.state, "start_time": c.started_at.isoformat(timespec="seconds"),
                 "creator": c.creator}
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
        """Close every child (cleanly, then terminate, then kill) before the factory goes."""
        with self._children_lock:
            self._closing.set()
            children = list(self._children.values())
        for child in children:
            child.close_event.set()  # ask all at once, then wait for each
        for child in children:
            stop_child(child, self.config.delete_timeout)
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
        self, device_type: str, device_prefix: str, config: Mapping[str, Any] | None = None
    ) -> DeviceClient:
        """Create a device and return its typed client (DeviceClient when its type names none
        or is not installed here). The client shares this factory client's connection."""
        self.put(
            "CREATE",
            {"device_type": device_type, "device_prefix": device_prefix,
             "config": json.dumps(dict(config)) if config is not None else ""},
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
