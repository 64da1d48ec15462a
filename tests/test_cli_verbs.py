"""The everyday `emd` verbs (get, put, monitor, rpc, configure, enable, disable, close, create
--json, completion), run as a user runs them: `emd` in a subprocess against real devices."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from typing import Iterator

import pytest

import epics_meta_devices as emd
from epics_meta_devices.cli._complete import complete_device_types
from epics_meta_devices.testing import DeviceProcess, emd_error as refused, run_emd as emd_cli, wait_until

EMD = [sys.executable, "-m", "epics_meta_devices"]


def ok(*args: str) -> str:
    """stdout of an `emd` command that must succeed."""
    result = emd_cli(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


@contextlib.contextmanager
def background(*args: str) -> Iterator[subprocess.Popen[str]]:
    """`emd ARGS` running in the background, its stdout and stderr piped; gone afterwards."""
    process = subprocess.Popen([*EMD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_get_put_and_refusals_of_a_ping_device(prefix, run_device):
    run_device("ping.Ping", prefix, config={"delay": 0.0})
    assert ok("get", f"{prefix}:STATE", f"{prefix}:TYPE").splitlines() == [
        f"{prefix}:STATE ready", f"{prefix}:TYPE ping.Ping"]
    assert ok("get", f"{prefix}:CONFIG").splitlines() == [f"{prefix}:CONFIG", "  delay 0.0"]
    state, config = map(json.loads, ok("get", "--json", f"{prefix}:STATE", f"{prefix}:CONFIG").splitlines())
    assert state["pv"] == f"{prefix}:STATE" and state["value"] == "ready" and state["severity"] == "NO_ALARM"
    assert config == {"pv": f"{prefix}:CONFIG", "value": {"delay": 0.0}}

    # A structure takes a JSON object; a refusal is the device's own reason, exit status 1.
    assert ok("put", f"{prefix}:CONFIG", '{"delay": 0.25}') == f'put {prefix}:CONFIG {{"delay": 0.25}}\n'
    assert f"{prefix}:CONFIG refused the put: invalid CONFIG: delay must be between 0 and 5.0 s, got 9.0" in refused(
        "put", f"{prefix}:CONFIG", '{"delay": 9}')
    assert refused("put", f"{prefix}:CONFIG", '{"color": 1}') == (
        f"""Error: {prefix}:CONFIG cannot take that value: "no such member field 'color'\"""")
    assert refused("put", f"{prefix}:PING", "1") == (
        f"Error: {prefix}:PING refused the put: {prefix} must be running for this (it is ready)")

    ok("enable", prefix)
    assert json.loads(ok("put", "--json", f"{prefix}:PING", "[1, 2.5]")) == {"pv": f"{prefix}:PING", "value": [1, 2.5]}
    assert json.loads(ok("get", "--json", f"{prefix}:PONG"))["value"]["value"] == [1.0, 2.5]
    ok("put", f"{prefix}:PING", "plain words")  # not JSON: sent as a string
    assert "  value plain words" in ok("get", f"{prefix}:PONG").splitlines()
    assert ok("get", f"{prefix}:COUNT") == f"{prefix}:COUNT 2\n"


def test_an_absent_pv_is_named_after_the_timeout():
    absent = "emdtest:absent:pv"
    message = f"Error: {absent} did not answer within 0.5 s: no such PV, or its server is not running"
    for verb in (["get", absent], ["put", absent, "1"], ["monitor", absent], ["rpc", absent, "a=1"]):
        assert refused(*verb, "--timeout", "0.5") == message


def test_monitor_count_ends_by_itself(prefix, run_device):
    client = run_device("ping.Ping", prefix, config={"delay": 0.0})
    client.enable()
    with background("monitor", f"{prefix}:COUNT", "--count", "3", "--json") as monitor:
        assert monitor.stdout is not None and monitor.stderr is not None
        first = json.loads(monitor.stdout.readline())  # the current value comes first
        assert first["pv"] == f"{prefix}:COUNT" and first["value"] == 0

        def pinged_until_done() -> bool:
            client.put("PING", 1)
            return monitor.poll() is not None

        wait_until(pinged_until_done, timeout=20, what="monitor --count 3 to end")
        rest = [json.loads(line) for line in monitor.stdout.read().splitlines()]
        assert monitor.returncode == 0, monitor.stderr.read()
        assert [update["value"] for update in rest] == [1, 2]


def test_monitor_ends_quietly_on_ctrl_c(prefix, run_device):
    run_device("ping.Ping", prefix, config={"delay": 0.0})
    with background("monitor", f"{prefix}:STATE") as monitor:
        assert monitor.stdout is not None and monitor.stderr is not None
        assert monitor.stdout.readline().split()[-1] == "ready"  # subscribed: now interrupt it
        monitor.send_signal(signal.SIGINT)
        assert monitor.wait(10) == 0
        assert monitor.stderr.read() == ""


def test_monitor_text_lines_carry_the_time(prefix, run_device):
    run_device("ping.Ping", prefix, config={"delay": 0.0})
    line = ok("monitor", f"{prefix}:STATE", "-c", "1").strip()
    name, day, clock, state = line.split(" ")
    assert (name, state) == (f"{prefix}:STATE", "ready") and len(day) == 10 and ":" in clock


def test_configure_enable_disable_close(prefix, run_device, tmp_path):
    run_device("ping.Ping", prefix)  # no config: created
    assert ok("configure", prefix, '{"delay": 0.1}').splitlines() == [
        f"configured {prefix} (state ready)", 'config {"delay": 0.1}']
    config_file = tmp_path / "ping.json"
    config_file.write_text('{"delay": 0.2}')
    assert json.loads(ok("configure", prefix, f"@{config_file}", "--json")) == {
        "prefix": prefix, "state": "ready", "config": {"delay": 0.2}}
    assert refused("configure", prefix, "{bad").startswith("Error: CONFIG is not valid JSON: ")
    assert refused("configure", prefix, "[1]") == "Error: CONFIG must be a JSON object of CONFIG fields, not list"
    assert refused("configure", prefix, f"@{tmp_path / 'missing.json'}") == (
        f"Error: cannot read config file {tmp_path / 'missing.json'}: No such file or directory")
    assert refused("configure", prefix, '{"delay": 99}') == (
        f"Error: {prefix}:CONFIG refused the put: invalid CONFIG: delay must be between 0 and 5.0 s, got 99.0")
    assert ok("enable", prefix) == f"enabled {prefix} (state running)\n"
    assert json.loads(ok("disable", prefix, "--json")) == {"prefix": prefix, "state": "ready"}
    assert ok("close", prefix) == f"closed {prefix}\n"
    process = run_device.processes[0].process
    wait_until(lambda: process.poll() is not None, timeout=10, what="the device process to end after close")
    assert process.returncode == 0
    assert refused("enable", prefix, "--timeout", "0.5") == (
        f"Error: {prefix}:ENABLE did not answer within 0.5 s: is the device running?")


def test_rpc_arguments_must_be_key_value(prefix, run_device):
    run_device("ping.Ping", prefix, config={"delay": 0.0})
    assert refused("rpc", f"{prefix}:COUNT", "noequals") == "Error: argument 'noequals': expected KEY=VALUE"
    assert refused("rpc", f"{prefix}:COUNT", 'a={"b": 1}').startswith("Error: argument a: give a number")
    assert refused("rpc", f"{prefix}:COUNT", "a=1") == (
        f"Error: {prefix}:COUNT refused the call: {prefix}:COUNT does not take RPC calls")


def test_device_run_of_an_unknown_type_names_the_plugins_that_failed(tmp_path):
    (tmp_path / "emdtest_raising_plugin.py").write_text("raise RuntimeError('needs the frobnicator')\n")
    env = {"EMD_PLUGINS": "emdtest_raising_plugin",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    line = refused("device", "run", "frob.Nicator", "emdtest:frob", env=env)
    assert line.startswith("Error: unknown device type 'frob.Nicator' (known: ")
    assert "plugins that failed to load: emdtest_raising_plugin (RuntimeError: needs the frobnicator)" in line


@pytest.fixture
def factory(prefix):
    """A running, enabled factory process and its client."""
    with DeviceProcess("factory.DeviceFactory", prefix, cli=["factory", "run", prefix]):
        client = emd.FactoryClient(prefix)
        client.wait_for_state("running", timeout=10)
        yield client
        client.disconnect()


def complete(*words: str) -> list[str]:
    """What bash completion offers for the last of `words` (typer's completion protocol)."""
    env = {"_EMD_COMPLETE": "complete_bash", "COMP_WORDS": " ".join(["emd", *words]),
           "COMP_CWORD": str(len(words))}
    result = emd_cli(env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_create_json_and_completion_of_types_and_factory_devices(prefix, factory):
    device = f"{prefix}:dev1"
    created = json.loads(ok("create", prefix, "ping.Ping", device, "--config", '{"delay": 0.0}', "--json"))
    assert created == {"factory": prefix, "type": "ping.Ping", "prefix": device, "state": "ready"}

    assert complete_device_types("pi") == ["ping.Ping"]
    assert "ping.Ping" in complete_device_types("") and complete_device_types("zz") == []
    assert complete("device", "run", "pin") == ["ping.Ping"]
    assert complete("create", prefix, "pin") == ["ping.Ping"]  # the factory's DEVICETYPES
    assert complete("delete", prefix, "") == [device]
    assert complete("delete", prefix, f"{prefix}:x") == []
    assert complete("delete", "emdtest:no:factory", "") == []  # nothing, after about a second


def test_help_of_every_new_verb():
    for verb in ("get", "put", "monitor", "rpc", "configure", "enable", "disable", "close"):
        assert ok(verb, "-h").startswith(f"Usage: emd {verb} [OPTIONS]")


def test_bad_values_of_options_are_usage_errors(prefix):
    result = emd_cli("monitor", f"{prefix}:x", "--count", "0")
    assert result.returncode == 2 and "Invalid value for '--count' / '-c'" in result.stderr
    assert "Traceback" not in result.stderr
