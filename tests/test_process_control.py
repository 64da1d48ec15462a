"""Process control with deadlines and liveness (issue 18): a factory's children that are stopped
(SIGSTOP), deadlocked in a put handler, ignoring SIGTERM or crash-looping, as a user sees them
through DEVICES, DELETE, HEARTBEAT and the process table. The factory runs in its own process
(`emd factory run`), its devices in processes of their own."""

from __future__ import annotations

import json
import os
import queue
import signal
import threading
import time
from typing import Any, Iterator

import pytest
from p4p.client.thread import Context, RemoteError

import epics_meta_devices as emd
from epics_meta_devices._children import KILL_TIMEOUT, TERMINATE_TIMEOUT
from epics_meta_devices.testing import DeviceProcess, wait_until
from test_factory import alive, child_pids

ASK_TIMEOUT = 2.0
"""The factories here wait this long for a clean close (delete_timeout) before SIGTERM."""
DEADLINE = ASK_TIMEOUT + TERMINATE_TIMEOUT + KILL_TIMEOUT
"""The documented bound of a DELETE and of a factory's close, whatever the children do."""
MARGIN = 1.5
"""Seconds allowed above a deadline for the put's round trip and a loaded 2-core machine."""
UNRESPONSIVE_WITHIN = emd.factory.FactoryConfig.unresponsive_after + 2.0
"""unresponsive_after, plus the watcher's 1 s period and a beat period."""
PLUGINS = "emd_test_devices,emd_process_control_devices"


@pytest.fixture
def factory(prefix: str) -> Iterator[tuple[emd.FactoryClient, DeviceProcess]]:
    """A running factory process that can create the hanging and crashing test devices."""
    process = DeviceProcess("factory.DeviceFactory", prefix, env={"EMD_PLUGINS": PLUGINS},
                            cli=["factory", "run", prefix, "--config", json.dumps({"delete_timeout": ASK_TIMEOUT})])
    process.start()
    client = emd.FactoryClient(prefix)
    client.wait_for_state("running", timeout=10)
    yield client, process
    client.disconnect()
    process.stop()
    assert not alive(process.process.pid)


def device(client: emd.FactoryClient, prefix: str) -> dict[str, Any]:
    """The DEVICES row of `prefix` ({} when the factory does not list it)."""
    return next((d for d in client.devices() if d["prefix"] == prefix), {})


def shows(client: emd.FactoryClient, prefix: str, state: str, timeout: float) -> float:
    """Wait until DEVICES shows `prefix` in `state`; the seconds it took."""
    started = time.monotonic()
    wait_until(lambda: device(client, prefix).get("state") == state, timeout, f"{prefix} {state} in DEVICES")
    return time.monotonic() - started


def timed_delete(client: emd.FactoryClient, prefix: str) -> float:
    started = time.monotonic()
    client.delete(prefix)
    return time.monotonic() - started


def test_heartbeat_counts_every_second(prefix, ctxt, run_device):
    run_device("ping.Ping", prefix)
    first = ctxt.get(f"{prefix}:HEARTBEAT").value
    wait_until(lambda: ctxt.get(f"{prefix}:HEARTBEAT").value >= first + 2, 4, "two more heartbeats")


def test_stopped_child_is_unresponsive_then_deleted_within_deadline(prefix, factory):
    client, process = factory
    name = f"{prefix}:stopped"
    client.create("ping.Ping", name).disconnect()
    pid, state = device(client, name)["pid"], device(client, name)["state"]
    os.kill(pid, signal.SIGSTOP)
    print(f"marked unresponsive after {shows(client, name, 'unresponsive', UNRESPONSIVE_WITHIN):.1f} s")
    assert "is unresponsive: no HEARTBEAT" in process.output()
    os.kill(pid, signal.SIGCONT)  # it comes back
    shows(client, name, state, 5)
    # Connect DELETE first, as a session would be: a stopped process on this host may swallow a
    # new search (unicast UDP goes to one of the host's servers; see docs/factory.md, Liveness).
    client.get_pv("DELETE")
    os.kill(pid, signal.SIGSTOP)
    elapsed = timed_delete(client, name)
    assert elapsed < DEADLINE + MARGIN, f"DELETE of a stopped child took {elapsed:.1f} s"
    assert not alive(pid) and client.devices() == []
    print(f"DELETE of a stopped child: {elapsed:.1f} s (deadline {DEADLINE} s)")


@pytest.mark.parametrize("hang_on_close", [False, True], ids=["hung-handler", "ignores-SIGTERM"])
def test_child_deadlocked_in_a_put_handler(prefix, factory, hang_on_close):
    """A put handler that never returns stops HEARTBEAT (it is posted by the same worker), and
    DELETE ends the process in time, even when its close hangs too (SIGTERM closes the device,
    so that process ignores SIGTERM and needs SIGKILL)."""
    client, process = factory
    name = f"{prefix}:hung"
    hung = client.create("test.Hang", name, {"hang_on_close": hang_on_close})
    pid = device(client, name)["pid"]
    with pytest.raises(emd.DeviceError):
        hung.put("HANG", 1, timeout=1.0)
    hung.disconnect()
    shows(client, name, "unresponsive", UNRESPONSIVE_WITHIN)
    elapsed = timed_delete(client, name)
    assert elapsed < DEADLINE + MARGIN, f"DELETE of a deadlocked child took {elapsed:.1f} s"
    assert not alive(pid) and client.devices() == []
    if hang_on_close:
        assert f"deleted {name} (exit code -9)" in process.output()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_stopped_child_then_factory_signalled(prefix, factory, signum):
    """No process is left after the deadline, even a stopped one, however the factory ends."""
    client, process = factory
    for n in range(2):
        client.create("ping.Ping", f"{prefix}:{n}").disconnect()
    pids = child_pids(process.process.pid)
    stopped = device(client, f"{prefix}:0")["pid"]
    os.kill(stopped, signal.SIGSTOP)
    started = time.monotonic()
    process.process.send_signal(signum)
    process.process.wait(DEADLINE + MARGIN + 2)
    wait_until(lambda: not any(alive(p) for p in pids), 3, "every child process gone")
    elapsed = time.monotonic() - started
    print(f"factory {signal.Signals(signum).name} with a stopped child: all gone after {elapsed:.1f} s")
    assert elapsed < DEADLINE + MARGIN
    if signum == signal.SIGTERM:
        assert process.process.returncode == 0


def test_factory_ends_within_deadline_while_a_create_waits(prefix, factory):
    """A CREATE of a device that never finishes starting (its configure hangs) does not hold
    up the factory's end: SIGTERM ends the factory and the starting process in time, and the
    CREATE fails instead of waiting out create_timeout (30 s)."""
    client, process = factory
    outcome: queue.SimpleQueue = queue.SimpleQueue()

    def create() -> None:
        try:
            client.create("test.Hang", f"{prefix}:slow", {"hang_on_configure": True})
            outcome.put("created")
        except emd.DeviceError as exc:
            outcome.put(str(exc))

    threading.Thread(target=create, daemon=True).start()
    wait_until(lambda: child_pids(process.process.pid), 10, "the starting device's process")
    pids = child_pids(process.process.pid)
    started = time.monotonic()
    process.process.send_signal(signal.SIGTERM)
    process.process.wait(DEADLINE + MARGIN + 2)
    elapsed = time.monotonic() - started
    wait_until(lambda: not any(alive(p) for p in pids), 3, "the starting process gone")
    print(f"factory SIGTERM during a CREATE: ended after {elapsed:.1f} s")
    assert elapsed < DEADLINE + MARGIN, f"the factory took {elapsed:.1f} s to end during a CREATE"
    assert process.process.returncode == 0
    assert outcome.get(timeout=15) != "created"


def test_crashed_child_restarts_with_its_config_and_enable_state(prefix, factory):
    client, process = factory
    name = f"{prefix}:crashy"
    crashy = client.create("test.Crashy", name, restart="on-failure")
    crashy.configure(label="kept")
    crashy.enable()
    pid = device(client, name)["pid"]
    started = time.monotonic()
    with pytest.raises(emd.DeviceError):
        crashy.put("CRASH", True, timeout=2.0)
    wait_until(lambda: device(client, name).get("restarts") == 1 and device(client, name)["state"] == "running",
               30, f"{name} restarted and running")  # a restart is a process start: slow on a loaded CI machine
    print(f"crash to running again: {time.monotonic() - started:.1f} s")
    assert device(client, name)["pid"] != pid and not alive(pid)
    # A new client: the old one's channels find the new process only after their search
    # backoff (seconds once a few searches went unanswered while nothing served the PV).
    with emd.DeviceClient(name) as restarted:
        assert restarted.get_pv("CONFIG")["label"] == "kept"
    assert "crashed (exit code 4): restart 1 of 3" in process.output()
    crashy.disconnect()


def test_crash_loop_stops_after_the_limit(prefix, factory):
    client, process = factory
    name = f"{prefix}:loop"
    rows: queue.Queue = queue.Queue()
    ctxt = Context("pva", nt=False)
    subscription = ctxt.monitor(f"{client.prefix}:DEVICES", rows.put)
    try:
        client.create("test.Crashy", name, {"crash_after": 0.5}, restart="on-failure", restart_limit=2).disconnect()
        seen: list[int] = []
        deadline = time.monotonic() + 30
        while True:
            table = rows.get(timeout=max(0.1, deadline - time.monotonic())).value
            listed = dict(zip(table.prefix, table.restarts))
            if name not in listed and seen:
                break
            if name in listed:
                seen.append(int(listed[name]))
    finally:
        subscription.close()
        ctxt.close()
    assert max(seen) == 2, f"restarts seen in DEVICES: {seen}"
    assert f"{name} crashed (exit code 5) after 2 restarts: not restarted again" in process.output()
    assert child_pids(process.process.pid) == set() and client.devices() == []


@pytest.mark.parametrize("fields, reason", [
    ({"restart": "always"}, "unknown restart policy 'always' (known: never, on-failure)"),
    ({"restart": "on-failure", "restart_limit": 11},
     "restart_limit must be between 0 and 10 (this factory's max_restart_limit), got 11"),
])
def test_bad_restart_policy_is_refused(prefix, ctxt, factory, fields, reason):
    client, process = factory
    with pytest.raises(RemoteError) as refused:
        ctxt.put(f"{prefix}:CREATE", {"device_type": "ping.Ping", "device_prefix": f"{prefix}:p", **fields})
    assert str(refused.value) == reason
    assert client.devices() == [] and child_pids(process.process.pid) == set()
