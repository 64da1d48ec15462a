"""Child device processes of a factory: one 'spawn' process per device, and the bookkeeping the
seed describes (process, close_event: the factory asks the child to close; exit_event: the child
says it has finished)."""

from __future__ import annotations

import datetime
import logging
import multiprocessing
import multiprocessing.spawn
import os
import sys
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from typing import Any

from ._state import DeviceError

# 'spawn', not fork: EPICS threads after fork() are undefined behaviour (children hang).
SPAWN = multiprocessing.get_context("spawn")
CHILD_NAME_PREFIX = "emd:"


def _preparation_data(name: str, _original: Any = multiprocessing.spawn.get_preparation_data) -> dict[str, Any]:
    """Spawn normally re-runs the parent's ``__main__`` in the child. A device child runs only
    `run_child`, and a script such as the seed's factory snippet (no ``if __name__ ==
    '__main__'`` guard) would start a second factory in every child: skip it for our children."""
    data = _original(name)
    if name.startswith(CHILD_NAME_PREFIX):
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


multiprocessing.spawn.get_preparation_data = _preparation_data  # type: ignore[assignment]
PARENT_WATCH_PERIOD = 0.5
"""Seconds between a child's checks that its factory is still alive."""


@dataclass
class ChildDevice:
    """One device process of a factory."""

    prefix: str
    device_type: str
    process: BaseProcess
    close_event: Event
    exit_event: Event
    started_at: datetime.datetime = field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc)
    )
    state: str = "starting"
    creator: str = ""
    """account@host of the client whose CREATE started it ("" when the factory's process did)."""
    subscription: Any = None
    _reaping: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _exit_code: int | None = None
    _released: bool = False

    def join(self, timeout: float | None) -> int | None:
        """Wait for the process to end; its exit code, or None if it still runs. One thread at a
        time: two threads reaping one process would lose its exit code."""
        with self._reaping:
            if not self._released:
                self.process.join(timeout)
                self._exit_code = self.process.exitcode
            return self._exit_code

    def release(self) -> None:
        """Free the ended process's resources (its file descriptors) now, not at some later
        garbage collection; `join` keeps answering with the exit code."""
        with self._reaping:
            if not self._released:
                self.process.join()
                self._exit_code = self.process.exitcode
                self.process.close()
                self._released = True


def start_child(device_type: str, prefix: str, config: dict[str, Any] | None, timeout: float,
                acf: str | None = None) -> ChildDevice:
    """Start a device process and return once it serves its PVs. If it fails to start (bad
    config, prefix served elsewhere, a crash), raise DeviceError with its reason, leaving no
    process behind. `acf`: the access security file the device enforces (the factory's)."""
    report, child_end = SPAWN.Pipe(duplex=False)
    close_event, exit_event = SPAWN.Event(), SPAWN.Event()
    process = SPAWN.Process(
        target=run_child,
        args=(device_type, prefix, config, close_event, exit_event, child_end, logging.getLogger().level, acf),
        name=f"{CHILD_NAME_PREFIX}{prefix}",
        # daemon: when the factory's Python exits, multiprocessing terminates (SIGTERM: a clean
        # close) its devices instead of waiting for them forever
        daemon=True,
    )
    process.start()
    child_end.close()  # so a child that dies shows as end-of-file on `report`
    child = ChildDevice(prefix, device_type, process, close_event, exit_event)
    try:
        if not report.poll(timeout):
            raise DeviceError(f"{prefix} did not start within {timeout} s")
        try:
            status, message = report.recv()
        except EOFError:
            raise DeviceError(
                f"{prefix}: the device process died while starting (exit code {child.join(timeout)})"
            ) from None
        if status != "ok":
            raise DeviceError(message)
    except BaseException:
        stop_child(child, timeout=0)
        raise
    finally:
        report.close()
    child.state = "created"
    return child


def stop_child(child: ChildDevice, timeout: float) -> int | None:
    """Ask a child to close; after `timeout` s terminate it, then kill it. Returns its exit code."""
    child.close_event.set()
    if child.join(timeout) is None:
        child.process.terminate()
        if child.join(5.0) is None:
            child.process.kill()
    return child.join(None)


def run_child(
    device_type: str,
    prefix: str,
    config: dict[str, Any] | None,
    close_event: Event,
    exit_event: Event,
    report: Connection,
    log_level: int,
    acf: str | None = None,
) -> None:
    """The body of a device process: build the device, report, serve until closed."""
    from ._logging import configure_logging
    from ._plugins import plugin_manager
    from ._device import handle_signals, serve_until_closed
    from ._registry import registry

    configure_logging(log_level or logging.WARNING)
    try:
        plugin_manager()
        device = registry.get(device_type).cls(prefix, config=config, acf=acf)
        handle_signals(device)  # before reporting: the factory may forward a SIGHUP at once
    except Exception as exc:
        report.send(("error", f"cannot create {prefix}: {exc}"))
        report.close()
        exit_event.set()
        sys.exit(1)
    report.send(("ok", ""))
    report.close()

    parent = os.getppid()

    def close_when_asked() -> None:
        # Close on DELETE (close_event), or when the factory is gone (we were re-parented), so
        # no device outlives its factory even if the factory was killed.
        while not close_event.wait(PARENT_WATCH_PERIOD):
            if os.getppid() != parent:
                device.log.warning("factory (pid %d) is gone: closing", parent)
                break
        device.shutdown()

    threading.Thread(target=close_when_asked, name="close-watch", daemon=True).start()
    serve_until_closed(device)
    exit_event.set()
