"""MetaDevice through its PVs: default PVs, the state machine, CONFIG, custom PVs, closing.
Every device runs in its own process (`emd device run`), driven by a p4p client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from p4p.client.thread import RemoteError
from p4p.nt import NTScalar
from p4p.server import Server
from p4p.server.thread import SharedPV

import epics_meta_devices as emd
from epics_meta_devices.testing import DeviceProcess, script_process

STATE_CHOICES = ["created", "ready", "running", "error", "closed"]
PROBE_DEFAULTS = {
    "name": "probe", "gain": 1.0, "count": 10, "enabled_channels": [], "weights": [],
    "strict": False, "watch": "", "fail_configure": False, "fail_start": False,
}


def test_seed_using_a_device(prefix, ctxt, tmp_path):
    """The seed's "USING A DEVICE" flow: construct through emd.devices, drive through PVs."""
    with script_process(textwrap.dedent(f"""
        import epics_meta_devices as emd
        ping_device = emd.devices.ping.Ping({prefix!r})
        print("serving", flush=True)
        ping_device.wait_closed()
        print("closed", flush=True)
    """), tmp_path) as process:
        ctxt.put(f"{prefix}:CONFIG", {"delay": 0.0})
        ctxt.put(f"{prefix}:ENABLE", True)
        assert ctxt.get(f"{prefix}:STATE")["value.index"] == STATE_CHOICES.index("running")
        ctxt.put(f"{prefix}:PING", "hello")
        pong = ctxt.get(f"{prefix}:PONG")
        assert (pong.value, pong["count"]) == ("hello", 1)
        assert pong["timeStamp.secondsPastEpoch"] > 1_700_000_000
        ctxt.put(f"{prefix}:ENABLE", False)
        ctxt.put(f"{prefix}:CLOSE", True)
        assert process.wait(10) == 0
        assert process.stdout.readline().strip() == "closed"


def test_default_pvs_and_their_types(prefix, ctxt, run_device):
    client = run_device("ping.Ping", prefix)
    device_type = ctxt.get(f"{prefix}:TYPE")
    assert device_type.getID() == "epics:nt/NTScalar:1.0" and device_type.value == "ping.Ping"
    state = ctxt.get(f"{prefix}:STATE")
    assert state.getID() == "epics:nt/NTEnum:1.0"
    assert list(state["value.choices"]) == STATE_CHOICES and state["value.index"] == 0
    assert state["timeStamp.secondsPastEpoch"] > 1_700_000_000
    uuid = ctxt.get(f"{prefix}:UUID").value
    assert len(uuid) == 36 and uuid == client.uuid
    assert ctxt.get(f"{prefix}:CONFIG").todict() == {"delay": 0.0}
    info = ctxt.get(f"{prefix}:INFO").todict()
    assert info["plugin"] == "emd-ping" and info["plugin_version"] and info["core_version"] == emd.__version__
    assert info["description"].startswith("Echo device")
    assert info["pid"] == run_device.processes[0].process.pid
    assert info["host"] and info["start_time"] and info["last_error"] == ""
    for name in ("ENABLE", "CLOSE"):
        value = ctxt.get(f"{prefix}:{name}")
        assert value.getID() == "epics:nt/NTScalar:1.0" and value.value is False


def test_life_cycle_with_device_client(prefix, run_device):
    client = run_device("test.Probe", prefix)
    assert client.state is emd.DeviceState.created and client.device_type == "test.Probe"
    client.configure(gain=2.5)
    assert client.wait_for_state("ready", timeout=5) is emd.DeviceState.ready
    client.enable()
    assert client.state is emd.DeviceState.running
    client.put("INPUT", 4.0)
    client.put("CMD", "compute")
    assert client.get_pv("OUTPUT").value == 10.0
    client.disable()
    assert client.state is emd.DeviceState.ready
    client.enable()  # enabling again works
    client.enable()  # and is idempotent
    assert client.state is emd.DeviceState.running
    process = run_device.processes[0].process
    client.close()
    assert process.wait(10) == 0


def test_config_put_of_a_subset_merges(prefix, ctxt, run_device):
    client = run_device("test.Probe", prefix)
    ctxt.put(f"{prefix}:CONFIG", {"gain": 2.0})
    ctxt.put(f"{prefix}:CONFIG", {"enabled_channels": ["a", "b"], "weights": [0.5, 1.5]})
    assert client.config == {**PROBE_DEFAULTS, "gain": 2.0, "enabled_channels": ["a", "b"], "weights": [0.5, 1.5]}
    ctxt.put(f"{prefix}:CONFIG", {})  # an empty put configures with what is there
    assert client.state is emd.DeviceState.ready


def test_initial_config_from_the_command_line(prefix, run_device, tmp_path):
    config_file = tmp_path / "probe.json"
    config_file.write_text('{"gain": 3.0, "name": "from-file"}')
    client = run_device("test.Probe", prefix, args=["--config", f"@{config_file}"])
    assert client.state is emd.DeviceState.ready
    assert client.config["gain"] == 3.0 and client.config["name"] == "from-file"


def _assert_unchanged(client, state, config):
    assert client.state is state
    assert client.config == config
    assert client.device_type == "test.Probe"  # and still answering


@pytest.mark.parametrize(
    "pv, value, reason",
    [
        ("TYPE", "other.Type", "TYPE is read-only"),
        ("STATE", 2, "STATE is read-only"),
        ("UUID", "x", "UUID is read-only"),
        ("INFO", {"host": "elsewhere"}, "INFO is read-only"),
        ("OUTPUT", 1.0, "OUTPUT is read-only"),
        ("CONFIG", {"gain": "abc"}, "Invalid input"),
        ("CONFIG", {"count": "ten"}, "Invalid input"),
        ("CONFIG", {"enabled_channels": 5}, ""),
        ("CONFIG", {"unknown_field": 1}, "no such member field 'unknown_field'"),
        ("CONFIG", 5, ""),
        ("CONFIG", {"count": -1}, "count must be >= 0"),
        ("ENABLE", "abc", "Unable to assign bool"),
        ("ENABLE", [1, 2], "Can't assign bool"),
        ("CLOSE", "abc", "Unable to assign bool"),
        ("CLOSE", {"nope": 1}, "no such member field"),
        ("INPUT", "abc", ""),
        ("CMD", "explode", "unknown command 'explode'"),
        ("MODE", "turbo", ""),
        ("MODE", 7, "index 7 is not one of the choices"),
    ],
)
def test_bad_puts_are_refused_and_change_nothing(prefix, ctxt, run_device, pv, value, reason):
    client = run_device("test.Probe", prefix, config={"gain": 2.0})
    before = client.config
    with pytest.raises(Exception) as refused:
        ctxt.put(f"{prefix}:{pv}", value, timeout=5)
    assert reason in str(refused.value)
    assert not isinstance(refused.value, TimeoutError)
    _assert_unchanged(client, emd.DeviceState.ready, before)
    with pytest.raises(emd.DeviceError, match=f"{prefix}:{pv}"):  # DeviceClient says which PV
        client.put(pv, value)


@pytest.mark.parametrize(
    "setup, request_, reason",
    [
        ([], ("ENABLE", True), "cannot enable .* while created: configure it first"),
        ([("CONFIG", {}), ("ENABLE", True)], ("CONFIG", {"gain": 5.0}), "while running: disable it first"),
        ([], ("CMD", "compute"), "must be running for this \\(it is created\\)"),
    ],
)
def test_illegal_transitions_are_refused(prefix, ctxt, run_device, setup, request_, reason):
    client = run_device("test.Probe", prefix)
    for pv, value in setup:
        ctxt.put(f"{prefix}:{pv}", value)
    state, config = client.state, client.config
    with pytest.raises(RemoteError, match=reason):
        ctxt.put(f"{prefix}:{request_[0]}", request_[1])
    _assert_unchanged(client, state, config)


def test_failing_configure_keeps_state_and_config(prefix, ctxt, run_device):
    client = run_device("test.Probe", prefix, config={"gain": 2.0})
    with pytest.raises(RemoteError, match="configure failed: RuntimeError: configure refused on purpose"):
        ctxt.put(f"{prefix}:CONFIG", {"fail_configure": True, "gain": 9.0})
    _assert_unchanged(client, emd.DeviceState.ready, {**PROBE_DEFAULTS, "gain": 2.0})
    assert "configure refused on purpose" in client.info["last_error"]


def test_failing_start_keeps_device_ready(prefix, ctxt, run_device):
    client = run_device("test.Probe", prefix, config={"fail_start": True})
    with pytest.raises(RemoteError, match="start failed: RuntimeError: start refused on purpose"):
        ctxt.put(f"{prefix}:ENABLE", True)
    assert client.state is emd.DeviceState.ready
    assert ctxt.get(f"{prefix}:ENABLE").value is False
    assert "start refused on purpose" in client.info["last_error"]
    client.configure(fail_start=False)  # a successful configure clears the last error
    assert client.info["last_error"] == ""
    client.enable()


def test_exception_while_running_moves_to_error_until_configured(prefix, ctxt, run_device):
    client = run_device("test.Probe", prefix, config={})
    client.enable()
    client.put("CMD", "crash")
    assert client.wait_for_state("error", timeout=5) is emd.DeviceState.error
    assert client.info["last_error"] == "RuntimeError: worker crashed"
    assert ctxt.get(f"{prefix}:ENABLE").value is False
    with pytest.raises(emd.DeviceError, match="while error: configure it to clear the error"):
        client.enable()
    client.configure()
    assert client.state is emd.DeviceState.ready and client.info["last_error"] == ""
    client.enable()
    assert client.state is emd.DeviceState.running


def test_custom_pvs(prefix, ctxt, run_device):
    client = run_device("test.Probe", prefix, config={"gain": 2.0})
    ctxt.put(f"{prefix}:INPUT", 21.0)  # writable: stored as is
    assert ctxt.get(f"{prefix}:INPUT").value == 21.0
    ctxt.put(f"{prefix}:MODE", "fast")  # an NTEnum, put by choice name
    mode = ctxt.get(f"{prefix}:MODE")
    assert mode["value.index"] == 2 and list(mode["value.choices"]) == ["off", "slow", "fast"]
    client.enable()
    ctxt.put(f"{prefix}:CMD", "compute")
    assert ctxt.get(f"{prefix}:OUTPUT").value == 42.0
    assert ctxt.get(f"{prefix}:CMD").value == "compute"


class _Source:
    """A PV served by the test, which records when clients connect and go."""

    def __init__(self, name: str) -> None:
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        source = self

        class Handler:
            def onFirstConnect(self, pv):
                source.connected.set()

            def onLastDisconnect(self, pv):
                source.disconnected.set()

        self.pv = SharedPV(nt=NTScalar("d"), initial=1.5, handler=Handler())
        self.server = Server(providers=[{name: self.pv}])


def test_monitor_feeds_device_and_is_released_on_close(prefix, ctxt, run_device):
    source = _Source(f"{prefix}:source")
    try:
        client = run_device("test.Probe", f"{prefix}:dev", config={"watch": f"{prefix}:source", "gain": 2.0})
        client.enable()
        assert source.connected.wait(5)
        source.pv.post(4.0)
        client.wait_for_state("running")
        _wait_for_value(ctxt, f"{prefix}:dev:OUTPUT", 8.0)
        client.close()
        assert source.disconnected.wait(5), "the device's monitor outlived the device"
    finally:
        source.server.stop()


def test_exception_in_monitor_callback_moves_to_error(prefix, ctxt, run_device):
    source = _Source(f"{prefix}:source")
    try:
        client = run_device("test.Probe", f"{prefix}:dev", config={"watch": f"{prefix}:source"})
        client.enable()
        assert source.connected.wait(5)
        source.pv.post(-1.0)
        client.wait_for_state("error", timeout=5)
        assert client.info["last_error"] == "ValueError: negative input -1.0"
        source.pv.post(3.0)
        client.configure()  # recovers: enabled again, the monitor feeds OUTPUT again
        client.enable()
        _wait_for_value(ctxt, f"{prefix}:dev:OUTPUT", 3.0)
    finally:
        source.server.stop()


def _wait_for_value(ctxt, name, expected, timeout=5.0):
    import queue

    updates: queue.Queue = queue.Queue()
    subscription = ctxt.monitor(name, updates.put)
    try:
        while True:
            value = updates.get(timeout=timeout)
            if value.value == expected:
                return
    finally:
        subscription.close()


def test_second_server_for_the_same_prefix_is_refused(prefix, run_device):
    run_device("ping.Ping", prefix)
    result = subprocess.run(
        [sys.executable, "-m", "epics_meta_devices", "device", "run", "test.Probe", prefix],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert f"Error: prefix '{prefix}' is already served by another device (type 'ping.Ping')" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("bad_prefix", ["", "has space", "trailing:", ":leading", "a::b", "x" * 201])
def test_invalid_prefix_is_refused(bad_prefix):
    result = subprocess.run(
        [sys.executable, "-m", "epics_meta_devices", "device", "run", "ping.Ping", bad_prefix],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert "Error: " in result.stderr and "prefix" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_the_device_cleanly(prefix, signum):
    process = DeviceProcess("test.Probe", prefix, config={})
    client = process.start()
    client.enable()
    process.process.send_signal(signum)
    assert process.process.wait(10) == 0
    assert "closed" in process.output()
    process.stop()


def test_log_records_carry_the_prefix(prefix):
    process = DeviceProcess("ping.Ping", prefix, config={})
    client = process.start()
    client.enable()
    process.process.send_signal(signal.SIGTERM)
    process.process.wait(10)
    log = [line for line in process.output().splitlines() if line]
    process.stop()
    assert any("serving ping.Ping" in line for line in log)
    assert log and all(f"[{prefix}]" in line for line in log), log


def test_wait_for_state_times_out_with_a_message(prefix, run_device):
    client = run_device("test.Probe", prefix)
    with pytest.raises(emd.DeviceTimeout, match="did not reach running within 0.5 s \\(last state: created\\)"):
        client.wait_for_state("running", timeout=0.5)


def test_device_client_of_an_absent_device_times_out_clearly(prefix):
    with emd.DeviceClient(prefix, timeout=0.5) as client:
        with pytest.raises(emd.DeviceTimeout, match="did not answer within 0.5 s: is the device running"):
            client.state


def test_explicit_server_conf(prefix):
    """A device can be given its own server configuration instead of the environment's."""
    from p4p.client.thread import Context

    from epics_meta_devices.testing import free_port

    port, search = free_port(), free_port(__import__("socket").SOCK_DGRAM)
    conf = {"EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1", "EPICS_PVAS_SERVER_PORT": str(port),
            "EPICS_PVAS_BROADCAST_PORT": str(search), "EPICS_PVA_ADDR_LIST": f"127.0.0.1:{search}",
            "EPICS_PVA_AUTO_ADDR_LIST": "NO"}
    device = emd.devices.ping.Ping(prefix, server_conf=conf)
    try:
        client_conf = {"EPICS_PVA_ADDR_LIST": f"127.0.0.1:{search}", "EPICS_PVA_AUTO_ADDR_LIST": "NO",
                       "EPICS_PVA_BROADCAST_PORT": str(search)}
        with Context("pva", nt=False, conf=client_conf, useenv=False) as other:
            assert other.get(f"{prefix}:TYPE", timeout=5).value == "ping.Ping"
    finally:
        device.shutdown()
    assert device.wait_closed(0)
    assert os.getpid() == device._info()["pid"]
