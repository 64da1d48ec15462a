"""DeviceFactory through its PVs and FactoryClient: creating, deleting and watching device
processes, bad input, crashes, signals, concurrency and a soak test. The factory runs in its own
process (`emd factory run`), its devices in processes of their own."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from p4p.client.thread import RemoteError

import epics_meta_devices as emd
from emd_ping import PingClient
from epics_meta_devices.testing import DeviceProcess, script_process, wait_until


def child_pids(pid: int) -> set[int]:
    """The live device processes started by `pid` (from /proc): zombies and multiprocessing's
    own resource tracker (one per spawning process, not a device) left out."""
    pids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids |= {int(p) for p in (task / "children").read_text().split()}
    return {p for p in pids if alive(p) and b"resource_tracker" not in _cmdline(p)}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def factory(prefix):
    """A running, enabled factory process; yields (FactoryClient, DeviceProcess)."""
    process = DeviceProcess("factory.DeviceFactory", prefix, cli=["factory", "run", prefix])
    process.start()
    client = emd.FactoryClient(prefix)
    client.wait_for_state("running", timeout=10)
    yield client, process
    client.disconnect()
    process.stop()
    assert not alive(process.process.pid)


def test_seed_factory_snippet(prefix, ctxt, tmp_path):
    """The seed's "THE DEVICE FACTORY" snippet, as written."""
    with script_process(textwrap.dedent(f"""
        import epics_meta_devices as emd
        factory = emd.factory.DeviceFactory({prefix!r})
        print("serving", flush=True)
        factory.wait_closed()
    """), tmp_path) as process:
        ctxt.put(f"{prefix}:CONFIG", {"configured": True})
        ctxt.put(f"{prefix}:ENABLE", True)
        types = list(ctxt.get(f"{prefix}:DEVICETYPES").value)
        assert types == sorted(types) and {"collect.Collector", "ping.Ping", "test.Probe"} <= set(types)
        ctxt.put(f"{prefix}:CREATE", {"device_type": "ping.Ping", "device_prefix": f"{prefix}:ping"})
        assert ctxt.get(f"{prefix}:ping:TYPE").value == "ping.Ping"
        [pid] = ctxt.get(f"{prefix}:DEVICES").value.pid
        assert pid in child_pids(process.pid)
        ctxt.put(f"{prefix}:DELETE", {"device_prefix": f"{prefix}:ping"})
        assert not alive(pid)
        assert list(ctxt.get(f"{prefix}:DEVICES").value.prefix) == []
        ctxt.put(f"{prefix}:CLOSE", True)
        assert process.wait(10) == 0


def test_factory_client_returns_typed_clients(prefix, factory):
    client, _ = factory
    assert {"ping.Ping", "test.CrashOnStart", "test.Probe"} <= set(client.types())
    ping = client.create("ping.Ping", f"{prefix}:ping", config={"delay": 0.0})
    assert isinstance(ping, PingClient) and ping.state is emd.DeviceState.ready
    ping.enable()
    assert ping.ping() < 1.0
    probe = client.create("test.Probe", f"{prefix}:probe")
    assert type(probe) is emd.DeviceClient and probe.state is emd.DeviceState.created
    rows = {d["prefix"]: d for d in client.devices()}
    assert set(rows) == {f"{prefix}:ping", f"{prefix}:probe"}
    assert rows[f"{prefix}:probe"]["type"] == "test.Probe" and rows[f"{prefix}:probe"]["pid"] > 0
    wait_until(lambda: {d["prefix"]: d["state"] for d in client.devices()}[f"{prefix}:ping"] == "running",
               2, "DEVICES follows the device's STATE")
    client.delete(f"{prefix}:ping")
    client.delete(f"{prefix}:probe")
    assert client.devices() == []
    ping.disconnect()
    probe.disconnect()


def test_create_applies_config(prefix, factory):
    client, _ = factory
    probe = client.create("test.Probe", f"{prefix}:probe", config={"gain": 4.0, "enabled_channels": ["a"]})
    assert probe.state is emd.DeviceState.ready
    assert probe.config["gain"] == 4.0 and probe.config["enabled_channels"] == ["a"]


@pytest.mark.parametrize(
    "request_, reason",
    [
        ({"device_type": "no.Such", "device_prefix": "P:x"}, "unknown device type 'no.Such' (known: "),
        ({"device_type": "os.system", "device_prefix": "P:x"}, "unknown device type 'os.system'"),
        ({"device_type": "", "device_prefix": "P:x"}, "CREATE needs a device_type, one of: "),
        ({"device_type": "ping.Ping", "device_prefix": ""}, "device prefix must be a non-empty string"),
        ({"device_type": "ping.Ping", "device_prefix": "bad prefix"}, "invalid device prefix 'bad prefix'"),
        ({"device_type": "ping.Ping", "device_prefix": "P:x:"}, "invalid device prefix"),
        ({"device_type": "ping.Ping", "device_prefix": "P"}, "is already a device of factory"),
        ({"device_type": "ping.Ping", "device_prefix": "P:x", "config": "{oops"}, "CREATE config is not valid JSON"),
        ({"device_type": "ping.Ping", "device_prefix": "P:x", "config": "[1]"}, "CREATE config must be a JSON object"),
        ({"device_type": "ping.Ping", "device_prefix": "P:x", "config": '{"delay": 99}'}, "cannot create P:x: invalid CONFIG: delay must be between"),
        ({"device_type": "ping.Ping", "device_prefix": "P:x", "config": '{"color": 1}'}, "cannot create P:x: unknown CONFIG field(s) color"),
        ({"device_type": "test.CrashOnStart", "device_prefix": "P:x"}, "P:x: the device process died while starting (exit code 3)"),
    ],
)
def test_bad_create_is_refused_and_leaves_nothing(prefix, ctxt, factory, request_, reason):
    client, process = factory
    existing = client.create("ping.Ping", f"{prefix}:existing")
    before = client.devices()
    request_ = {k: v.replace("P", prefix) if k == "device_prefix" else v for k, v in request_.items()}
    with pytest.raises(RemoteError) as refused:
        ctxt.put(f"{prefix}:CREATE", request_, timeout=30)
    assert reason.replace("P:", f"{prefix}:") in str(refused.value)
    assert client.devices() == before and client.state is emd.DeviceState.running
    assert child_pids(process.process.pid) == {before[0]["pid"]}
    client.create("ping.Ping", f"{prefix}:after")  # still healthy
    existing.disconnect()


def test_a_read_modify_write_put_cannot_replay_another_create(prefix, ctxt, factory):
    """pvapy's put reads the PV, changes the fields given and writes the whole structure back.
    CREATE and DELETE keep no request, so such a put of a new prefix alone is refused instead
    of creating a device with the previous CREATE's type and config (somebody else's)."""
    client, _ = factory
    client.create("test.Probe", f"{prefix}:theirs", config={"gain": 7.0})
    client.delete(f"{prefix}:theirs")
    client.create("test.Probe", f"{prefix}:other", config={"gain": 7.0})
    read = ctxt.get(f"{prefix}:CREATE").todict()
    assert read["device_type"] == "" and read["config"] == ""
    assert ctxt.get(f"{prefix}:DELETE").todict()["device_prefix"] == ""
    read["device_prefix"] = f"{prefix}:mine"
    with pytest.raises(RemoteError, match="CREATE needs a device_type"):
        ctxt.put(f"{prefix}:CREATE", read, timeout=30)
    assert [d["prefix"] for d in client.devices()] == [f"{prefix}:other"]


def test_duplicate_prefix_of_own_device_and_of_a_device_elsewhere(prefix, ctxt, factory, run_device):
    client, process = factory
    client.create("ping.Ping", f"{prefix}:mine")
    with pytest.raises(RemoteError, match=f"'{prefix}:mine' is already a device of factory {prefix}"):
        ctxt.put(f"{prefix}:CREATE", {"device_type": "test.Probe", "device_prefix": f"{prefix}:mine"})
    run_device("ping.Ping", f"{prefix}:elsewhere")  # served by a process outside this factory
    with pytest.raises(RemoteError, match=f"cannot create {prefix}:elsewhere: prefix '{prefix}:elsewhere' is already served by another device"):
        ctxt.put(f"{prefix}:CREATE", {"device_type": "ping.Ping", "device_prefix": f"{prefix}:elsewhere"}, timeout=30)
    assert [d["prefix"] for d in client.devices()] == [f"{prefix}:mine"]
    assert len(child_pids(process.process.pid)) == 1


def test_delete_of_an_unknown_prefix(prefix, ctxt, factory):
    client, _ = factory
    client.create("ping.Ping", f"{prefix}:a")
    with pytest.raises(RemoteError, match=f"no device '{prefix}:zz' in factory {prefix} \\(devices: {prefix}:a\\)"):
        ctxt.put(f"{prefix}:DELETE", {"device_prefix": f"{prefix}:zz"})
    assert [d["prefix"] for d in client.devices()] == [f"{prefix}:a"]


def test_create_while_disabled_is_refused(prefix, ctxt, factory):
    client, process = factory
    client.disable()
    with pytest.raises(RemoteError, match=f"factory {prefix} is not enabled \\(ready\\): put ENABLE=True first"):
        ctxt.put(f"{prefix}:CREATE", {"device_type": "ping.Ping", "device_prefix": f"{prefix}:a"})
    assert client.devices() == [] and child_pids(process.process.pid) == set()
    client.enable()
    client.create("ping.Ping", f"{prefix}:a")


def test_killed_child_leaves_devices_within_two_seconds(prefix, ctxt, factory):
    client, _ = factory
    client.create("ping.Ping", f"{prefix}:victim")
    client.create("ping.Ping", f"{prefix}:bystander")
    pid = {d["prefix"]: d["pid"] for d in client.devices()}[f"{prefix}:victim"]
    updates: queue.Queue = queue.Queue()
    subscription = ctxt.monitor(f"{prefix}:DEVICES", updates.put)
    try:
        updates.get(timeout=5)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        while f"{prefix}:victim" in list(updates.get(timeout=2).value.prefix):
            pass
        assert time.monotonic() - killed < 2.0
    finally:
        subscription.close()
    assert [d["prefix"] for d in client.devices()] == [f"{prefix}:bystander"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_no_orphans_when_the_factory_is_signalled(prefix, factory, signum):
    """SIGTERM closes every child cleanly; even after SIGKILL, children notice and close."""
    client, process = factory
    for n in range(3):
        client.create("ping.Ping", f"{prefix}:{n}")
    pids = child_pids(process.process.pid)
    assert len(pids) == 3
    process.process.send_signal(signum)
    process.process.wait(20)
    wait_until(lambda: not any(alive(p) for p in pids), 10, "every child process gone")
    if signum == signal.SIGTERM:
        assert process.process.returncode == 0
        assert "closed" in process.output()


def test_fifty_concurrent_creates(prefix, ctxt, factory):
    client, process = factory
    names = [f"{prefix}:c{n}" for n in range(50)]
    started = time.monotonic()
    results = ctxt.put([f"{prefix}:CREATE"] * 50, [{"device_type": "ping.Ping", "device_prefix": n} for n in names],
                       timeout=180, throw=False)
    assert [r for r in results if r is not None] == []
    elapsed = time.monotonic() - started
    assert sorted(d["prefix"] for d in client.devices()) == sorted(names)
    assert len(child_pids(process.process.pid)) == 50
    assert all(v.value == "ping.Ping" for v in ctxt.get([f"{n}:TYPE" for n in names]))
    results = ctxt.put([f"{prefix}:DELETE"] * 50, [{"device_prefix": n} for n in names], timeout=180, throw=False)
    assert [r for r in results if r is not None] == []
    assert client.devices() == [] and child_pids(process.process.pid) == set()
    print(f"50 concurrent CREATEs took {elapsed:.1f} s")


def _resources(pid: int) -> tuple[int, int, int]:
    """Open file descriptors, threads and resident memory (kB) of a process."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return len(os.listdir(f"/proc/{pid}/fd")), int(status["Threads"]), int(status["VmRSS"].split()[0])


@pytest.mark.timeout(300)  # 100 device processes at about 1.1 s each (spawn + imports): 120 s is too close
def test_soak_create_delete_cycles_do_not_leak(prefix, factory):
    client, process = factory
    pid = process.process.pid

    def cycle(n: int) -> None:
        device = client.create("ping.Ping", f"{prefix}:soak{n}")
        device.disconnect()
        client.delete(f"{prefix}:soak{n}")

    for n in range(10):  # warm up: worker threads, caches
        cycle(n)
    fds, threads, rss = _resources(pid)
    for n in range(10, 100):
        cycle(n)
    fds_after, threads_after, rss_after = _resources(pid)
    assert child_pids(pid) == set() and client.devices() == []
    assert fds_after <= fds + 2, f"file descriptors grew from {fds} to {fds_after}"
    # The worker pool starts threads on demand up to its bound; anything beyond would be a leak.
    assert threads_after < threads + emd.DeviceFactory.worker_threads, f"threads grew from {threads} to {threads_after}"
    assert rss_after - rss < 8 * 1024, f"memory grew from {rss} kB to {rss_after} kB"


def test_cli_create_ls_delete(prefix, factory):
    def emd_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "epics_meta_devices", *args], capture_output=True, text=True, timeout=60)

    created = emd_cli("create", prefix, "ping.Ping", f"{prefix}:cli", "--config", '{"delay": 0.0}')
    assert created.returncode == 0 and created.stdout.strip() == f"created ping.Ping {prefix}:cli"
    listed = emd_cli("ls", prefix)
    assert f"{prefix}:cli" in listed.stdout and "ping.Ping" in listed.stdout and "ready" in listed.stdout
    assert "ready" in emd_cli("status", f"{prefix}:cli").stdout
    bad = emd_cli("create", prefix, "no.Such", f"{prefix}:x")
    assert bad.returncode == 1 and "unknown device type 'no.Such'" in bad.stderr and "Traceback" not in bad.stderr
    gone = emd_cli("delete", prefix, f"{prefix}:nope")
    assert gone.returncode == 1 and f"no device '{prefix}:nope'" in gone.stderr
    assert emd_cli("delete", prefix, f"{prefix}:cli").stdout.strip() == f"deleted {prefix}:cli"
    assert emd_cli("ls", prefix).stdout.strip() == "no devices"


def test_a_scripts_own_types_are_not_offered(prefix, ctxt, tmp_path):
    """Device processes do not re-run the factory's script, so its own classes cannot be made
    there: DEVICETYPES leaves them out and CREATE refuses them."""
    with script_process(textwrap.dedent(f"""
        import epics_meta_devices as emd

        @emd.register_device_type
        class Echo(emd.MetaDevice):
            pass

        factory = emd.factory.DeviceFactory({prefix!r}, config={{}})
        factory.set_enabled(True)
        print("serving", flush=True)
        factory.wait_closed()
    """), tmp_path):
        assert "local.Echo" not in list(ctxt.get(f"{prefix}:DEVICETYPES").value)
        with pytest.raises(RemoteError, match="unknown device type 'local.Echo'"):
            ctxt.put(f"{prefix}:CREATE", {"device_type": "local.Echo", "device_prefix": f"{prefix}:echo"})
        ctxt.put(f"{prefix}:CLOSE", True)
