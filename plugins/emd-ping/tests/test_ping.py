"""ping.Ping through its PVs, its client, and `emd ping`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from p4p.client.thread import RemoteError

import epics_meta_devices as emd
from emd_ping import PingClient


def test_ping_echoes_anything_with_a_timestamp(prefix, ctxt, run_device):
    run_device("ping.Ping", prefix, config={}).enable()
    for count, value in enumerate(["hello", 42, 2.5, np.arange(5.0)], start=1):
        ctxt.put(f"{prefix}:PING", value)
        pong = ctxt.get(f"{prefix}:PONG")
        assert np.array_equal(pong.value, value) and pong["count"] == count
        assert pong["timeStamp.secondsPastEpoch"] > 1_700_000_000
    assert ctxt.get(f"{prefix}:COUNT").value == 4


def test_ping_needs_the_device_enabled(prefix, ctxt, run_device):
    client = run_device("ping.Ping", prefix, config={})
    with pytest.raises(RemoteError, match="must be running for this \\(it is ready\\)"):
        ctxt.put(f"{prefix}:PING", 1)
    assert ctxt.get(f"{prefix}:COUNT").value == 0 and client.state is emd.DeviceState.ready


def test_pong_is_read_only(prefix, ctxt, run_device):
    run_device("ping.Ping", prefix, config={}).enable()
    with pytest.raises(RemoteError, match="PONG is read-only"):
        ctxt.put(f"{prefix}:PONG", {"value": 1})


def test_ping_client_statistics(prefix, run_device):
    run_device("ping.Ping", prefix, config={}).enable()
    with PingClient(prefix) as client:
        summary = client.ping_many(20).summary()
    assert summary["count"] == 20
    assert 0 < summary["min"] <= summary["median"] <= summary["p99"] <= summary["max"] < 5


def test_delay_config_slows_the_answer(prefix, run_device):
    client = run_device("ping.Ping", prefix, config={"delay": 0.2})
    client.enable()
    with PingClient(prefix) as pinger:
        assert pinger.ping() >= 0.2


def test_emd_ping_command(prefix, run_device):
    run_device("ping.Ping", prefix, config={}).enable()
    result = subprocess.run(
        [sys.executable, "-m", "epics_meta_devices", "ping", prefix, "--count", "5", "--json"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["count"] == 5
    text = subprocess.run(
        [sys.executable, "-m", "epics_meta_devices", "ping", prefix, "-c", "3"],
        capture_output=True, text=True, timeout=30,
    ).stdout
    assert text.startswith(f"3 pings to {prefix}: min ") and "median" in text


def test_emd_ping_of_a_disabled_device_says_so(prefix, run_device):
    run_device("ping.Ping", prefix, config={})
    result = subprocess.run(
        [sys.executable, "-m", "epics_meta_devices", "ping", prefix],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert "must be running for this (it is ready)" in result.stderr and "Traceback" not in result.stderr


def test_demo_runs_end_to_end():
    """`make demo` (the project's main job) drives a ping device through its PVs and closes it."""
    result = subprocess.run([sys.executable, "-m", "emd_ping.demo"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "ENABLE before CONFIG is refused: cannot enable" in out
    assert "put PING 'hello' -> PONG value='hello' count=1" in out
    assert "put ENABLE False -> STATE=ready" in out
    assert out.rstrip().endswith("device process exited with 0")
