"""Where servers listen and clients search: the project's own runs (demo, pytest plugin, device
processes, IOCs) set every EPICS port and address variable, for PVAccess and Channel Access,
servers and clients, whatever a user's shell holds; a device that cannot be found says why."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from epics_meta_devices._environment import LOOPBACK_ENV_FILE
from epics_meta_devices.testing import (
    LOOPBACK_ENV,
    DeviceProcess,
    DeviceTimeout,
    IocProcess,
    foreign_environment,
    free_port,
    loopback_environment,
)


def test_every_server_variable_follows_its_client_twin():
    env = loopback_environment()
    assert env["EPICS_PVAS_SERVER_PORT"] == env["EPICS_PVA_SERVER_PORT"]
    assert env["EPICS_CAS_SERVER_PORT"] == env["EPICS_CA_SERVER_PORT"]
    assert env["EPICS_CAS_BEACON_PORT"] == env["EPICS_CA_REPEATER_PORT"]
    assert env["EPICS_PVA_NAME_SERVERS"] == env["EPICS_CA_NAME_SERVERS"] == ""
    assert set(foreign_environment()) <= set(env)  # every foreign setting is overridden


def test_the_shipped_env_file_is_the_one_the_code_uses():
    """The file a user sources (core/epics_meta_devices/epics-loopback.env) and the settings the
    project's own runs use are one and the same."""
    import epics_meta_devices

    shipped = os.path.join(os.path.dirname(epics_meta_devices.__file__), LOOPBACK_ENV_FILE)
    sourced = subprocess.run(["bash", "-c", f"set -a; . {shipped}; set +a; env"], env={},
                             capture_output=True, text=True, check=True).stdout
    values = dict(line.split("=", 1) for line in sourced.splitlines() if line.startswith("EPICS_"))
    assert values == LOOPBACK_ENV
    assert values["EPICS_PVA_AUTO_ADDR_LIST"] == values["EPICS_CA_AUTO_ADDR_LIST"] == "NO"


def test_the_demo_runs_with_foreign_server_settings_in_the_shell():
    """The bug of issue 16: with EPICS_PVAS_* set in the user's shell the device listened on the
    user's port while the client searched another, and the demo timed out."""
    result = subprocess.run([sys.executable, "-m", "emd_ping.demo"], capture_output=True, text=True,
                            timeout=90, env={**os.environ, **foreign_environment()})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("device process exited with 0")


def test_a_device_and_an_ioc_started_here_ignore_foreign_settings(prefix, monkeypatch):
    """A shell with foreign EPICS_PVAS_*/EPICS_CAS_* values, then use_loopback_environment() (as
    the demo and the pytest plugin call it): a device process and an IOC are found, and the
    IOC's Channel Access server listens on the run's own CA port."""
    for name, value in {**foreign_environment(), **loopback_environment()}.items():
        monkeypatch.setenv(name, value)
    with DeviceProcess("ping.Ping", prefix, config={}) as client:
        assert client.state.value == "ready"
    record = f'record(ao, "{prefix}:ca") {{ field(VAL, "1.5") }}\n'
    with IocProcess(record, wait_for=f"{prefix}:ca"):
        with socket.create_connection(("127.0.0.1", int(os.environ["EPICS_CA_SERVER_PORT"])), timeout=5):
            pass


def test_a_device_that_cannot_be_found_says_why(prefix):
    """A device whose server settings differ from the client's: the error names both sides'
    ports and shows what the device itself printed."""
    elsewhere = str(free_port(socket.SOCK_DGRAM))
    device = DeviceProcess("ping.Ping", prefix, env={"EPICS_PVAS_BROADCAST_PORT": elsewhere,
                                                     "EPICS_PVAS_SERVER_PORT": str(free_port())})
    with pytest.raises(DeviceTimeout) as timeout:
        device.start(timeout=2.0)
    message = str(timeout.value)
    assert f"{prefix} not serving after 2.0 s" in message
    device_line = next(line for line in message.splitlines() if "device process:" in line)
    client_line = next(line for line in message.splitlines() if "this client:" in line)
    assert f"EPICS_PVAS_BROADCAST_PORT={elsewhere}" in device_line
    assert f"EPICS_PVA_BROADCAST_PORT={os.environ['EPICS_PVA_BROADCAST_PORT']}" in client_line
    assert prefix in message.split("the device's last output:")[1]  # the device's own log
    assert device.process is not None and device.process.poll() is not None  # and it is gone
