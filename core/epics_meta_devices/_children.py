"""Child device processes of a factory: one 'spawn' process per device, how the factory stops
them within deadlines, and how a child dies with its factory.

Nothing here can block the factory on a child: the factory asks a child to close by closing its
end of a pipe (closing never blocks, even when the child is stopped or deadlocked), then sends
SIGTERM, then SIGKILL, each with a timeout. (`multiprocessing.Event.set()` blocks while a process
waiting on it is stopped, which wedged DELETE and the factory's own SIGTERM.)"""

from __future__ import annotations

import ctypes
import datetime
import logging
import multiprocessing
import multiprocessing.spawn
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Iterable

from ._host import HostSettings
from ._state import DeviceError

# 'spawn', not fork: EPICS threads after fork() are undefined behaviour (children hang).
SPAWN = multiprocessing.get_context("spawn")
CHILD_NAME_PREFIX = "emd:"

TERMINATE_TIMEOUT = 3.0
"""Seconds a child has to end after SIGTERM (sent when it did not close when asked)."""
KILL_TIMEOUT = 2.0
"""Seconds to wait for the OS to report a child's end after SIGKILL."""
START_POLL = 0.2
"""Seconds between checks, while a child starts, of whether the factory is closing."""
RESTART_POLICIES = ("never", "on-failure")
"""``restart`` of a CREATE: never restart (default), or restart a child that crashed."""
RESTART_DELAY = 1.0
"""Seconds between a crash and the restart of an "on-failure" device (and between attempts)."""
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


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


@dataclass
class ChildDevice:
    """One device process of a factory, and what the factory knows about it."""

    prefix: str
    device_type: str
    process: BaseProcess
    control: Connection
    """The factory's end of the child's control pipe: closing it asks the child to close."""
    started_at: datetime.datetime = field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc)
    )
    state: str = "starting"
    creator: str = ""
    """account@host of the client whose CREATE started it ("" when the factory's process did)."""
    restart: str = "never"
    """Restart policy from CREATE: "never" or "on-failure"."""
    restart_limit: int = 0
    """Restarts allowed under "on-failure"; after that many, a crash is final."""
    restarts: int = 0
    """How often this device's process was started again after a crash."""
    last_config: dict[str, Any] | None = None
    """The child's last accepted CONFIG (from its CONFIG PV): what a restart applies."""
    enabled: bool = False
    """Whether the child was running (enabled): a restart enables it again."""
    last_beat: float = field(default_factory=time.monotonic)
    """time.monotonic() of the last HEARTBEAT update seen."""
    unresponsive: bool = False
    stopping: bool = False
    """The factory asked it to end (DELETE, factory close): its end is not a crash."""
    subscriptions: list[Any] = field(default_factory=list)
    _reaping: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _exit_code: int | None = None
    _released: bool = False

    @property
    def shown_state(self) -> str:
        """The state DEVICES shows: the child's own STATE, unless its heartbeat stopped."""
        return "unresponsive" if self.unresponsive and self.state not in ("starting", "restarting") else self.state

    def ask_to_close(self) -> None:
        """Ask the child to close cleanly. Never blocks, whatever the child does."""
        self.stopping = True
        self.control.close()

    def join(self, timeout: float | None) -> int | None:
        """Wait for the process to end; its exit code, or None if it still runs. One thread at a
        time: two threads reaping one process would lose its exit code."""
        with self._reaping:
            if not self._released:
                self.process.join(timeout)
                self._exit_code = self.process.exitcode
            return self._exit_code

    def send_signal(self, signum: int) -> None:
        """Signal the process if it still runs (never a pid the OS may have reused: the exit
        code is checked, which reaps an ended process, under the reaping lock)."""
        with self._reaping:
            if self._released or self.process.exitcode is not None:
                return
            try:
                os.kill(self.process.pid or 0, signum)
            except ProcessLookupError:
                pass

    def release(self) -> None:
        """Free the ended process's resources (its file descriptors) now, not at some later
        garbage collection; `join` keeps answering with the exit code."""
        self.control.close()
        with self._reaping:
            if not self._released:
                self.process.join()
                self._exit_code = self.process.exitcode
                self.process.close()
                self._released = True


def start_child(device_type: str, prefix: str, config: dict[str, Any] | None, timeout: float,
                acf: str | None = None, enable: bool = False, host: HostSettings | None = None,
                abort: threading.Event | None = None) -> ChildDevice:
    """Start a device process and return once it serves its PVs. If it fails to start (bad
    config, prefix served elsewhere, a crash), raise DeviceError with its reason, leaving no
    process behind. `acf`: the access security file the device enforces (the factory's);
    `enable`: enable it once configured (a restart of a child that was running); `host`: the
    host's limits (the factory's), so a child never falls back to settings of its own;
    `abort`: once set (the factory closes), stop waiting and end the starting process, so a
    close never waits out a slow start.

    On Linux the child dies (SIGKILL) when the thread that called this ends (PR_SET_PDEATHSIG
    follows the creating thread): call it from threads that live as long as the factory."""
    report, report_child_end = SPAWN.Pipe(duplex=False)
    control_child_end, control = SPAWN.Pipe(duplex=False)
    process = SPAWN.Process(
        target=run_child,
        args=(device_type, prefix, config, control_child_end, report_child_end,
              logging.getLogger().level, acf, os.getpid(), enable, host),
        name=f"{CHILD_NAME_PREFIX}{prefix}",
        # Not daemon: multiprocessing's exit handler would SIGTERM daemonic children and then
        # join them without a timeout (forever, for a stopped child). The factory stops its
        # children itself, within deadlines; they die with it otherwise.
        daemon=False,
    )
    process.start()
    report_child_end.close()  # so a child that dies shows as end-of-file on `report`
    control_child_end.close()
    child = ChildDevice(prefix, device_type, process, control)
    try:
        deadline = time.monotonic() + timeout
        while not report.poll(min(START_POLL, max(0.0, deadline - time.monotonic()))):
            if abort is not None and abort.is_set():
                raise DeviceError(f"{prefix}: the factory closed while it was starting")
            if time.monotonic() >= deadline:
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
        stop_children([child], ask_timeout=0)
        child.release()
        raise
    finally:
        report.close()
    child.state = "created"
    return child


def stop_children(children: Iterable[ChildDevice], ask_timeout: float) -> dict[str, int | None]:
    """End `children` together, whatever they do (running, stopped, deadlocked, ignoring
    SIGTERM): ask each to close and wait `ask_timeout` s, then SIGTERM those still running and
    wait TERMINATE_TIMEOUT s, then SIGKILL the rest and wait KILL_TIMEOUT s. Returns within
    ask_timeout + TERMINATE_TIMEOUT + KILL_TIMEOUT s; each prefix's exit code (None: the OS
    never reported its end, e.g. a process stuck in the kernel)."""
    children = list(children)
    remaining = children
    for child in remaining:
        child.ask_to_close()
    for signum, timeout in ((signal.SIGTERM, ask_timeout), (signal.SIGKILL, TERMINATE_TIMEOUT), (None, KILL_TIMEOUT)):
        deadline = time.monotonic() + timeout
        remaining = [c for c in remaining if c.join(max(0.0, deadline - time.monotonic())) is None]
        if not remaining or signum is None:
            break
        for child in remaining:  # a stopped child keeps SIGTERM pending; SIGKILL still ends it
            child.send_signal(signum)
    return {c.prefix: c.join(0) for c in children}


def stop_child(child: ChildDevice, timeout: float) -> int | None:
    """`stop_children` for one child: its exit code."""
    return stop_children([child], timeout)[child.prefix]


def _die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its factory dies (even when this process is
    stopped: SIGKILL ends stopped processes), and end now if the factory already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the factory died before prctl took effect
        os._exit(1)


def run_child(
    device_type: str,
    prefix: str,
    config: dict[str, Any] | None,
    control: Connection,
    report: Connection,
    log_level: int,
    acf: str | None,
    parent: int,
    enable: bool = False,
    host: HostSettings | None = None,
) -> None:
    """The body of a device process: build the device, report, serve until closed or until the
    factory closes the control pipe (or dies: the pipe's end of file, and on Linux a SIGKILL)."""
    _die_with_parent(parent)
    from ._logging import configure_logging
    from ._plugins import plugin_manager
    from ._device import handle_signals, serve_until_closed
    from ._registry import registry

    configure_logging(log_level or logging.WARNING)
    try:
        plugin_manager()
        device = registry.get(device_type).cls(prefix, config=config, acf=acf, host=host)
        handle_signals(device)  # before reporting: the factory may forward a SIGHUP at once
    except Exception as exc:
        report.send(("error", f"cannot create {prefix}: {exc}"))
        report.close()
        sys.exit(1)
    if enable:  # a restart of a child that was running
        try:
            device.set_enabled(True)
        except DeviceError as exc:
            device.log.error("not enabled again after the restart: %s", exc)
    report.send(("ok", ""))
    report.close()

    def close_when_asked() -> None:
        try:
            control.recv_bytes()  # the factory never writes: this returns at end of file
        except (EOFError, OSError):
            pass
        device.log.info("asked to close by the factory (pid %d)", parent)
        device.shutdown()

    threading.Thread(target=close_when_asked, name="close-watch", daemon=True).start()
    serve_until_closed(device)
