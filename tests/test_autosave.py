"""Devices that survive restarts (issue 18): `emd factory run PREFIX --state FILE` keeps the
factory's devices in a JSON file on every change and recreates them at start. A factory process
SIGKILLed and started again with the same file brings back the same devices with the same
CONFIG and STATE, and a collector recording a real source records again."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
import pytest
from emd_collector import CollectorClient

import epics_meta_devices as emd
from epics_meta_devices.testing import DeviceProcess, SourcePVs, emd_error, run_emd, wait_until
from test_factory import alive, child_pids


def start_factory(prefix: str, state: Path) -> tuple[DeviceProcess, emd.FactoryClient]:
    """`emd factory run PREFIX --state STATE` in a process of its own, running; its collectors
    keep their files in the state file's directory (the host's data root)."""
    process = DeviceProcess("factory.DeviceFactory", prefix, cli=["factory", "run", prefix, "--state", str(state)],
                            env={"EMD_DATA_ROOT": str(state.parent)})
    process.start()
    client = emd.FactoryClient(prefix)
    client.wait_for_state("running", timeout=10)
    return process, client


def saved(state: Path) -> dict[str, dict[str, Any]]:
    """The state file's devices by prefix; fails the test if the file is not complete JSON."""
    data = json.loads(state.read_text())
    assert data["format"] == "emd-factory-state" and data["version"] == 1
    return {d["prefix"]: d for d in data["devices"]}


def saved_when(state: Path, condition: Any, what: str) -> dict[str, dict[str, Any]]:
    """Wait until the state file satisfies `condition` (child STATE and CONFIG reach the file
    through the factory's monitors); every version read on the way must be complete JSON."""
    wait_until(lambda: condition(saved(state)), 10, what)
    return saved(state)


def config_of(prefix: str) -> dict[str, Any]:
    with emd.DeviceClient(prefix) as device:
        return device.config


def kill_factory(process: DeviceProcess, client: emd.FactoryClient) -> None:
    """SIGKILL the factory process (a crash); its devices die with it (PR_SET_PDEATHSIG)."""
    assert process.process is not None
    children = child_pids(process.process.pid)
    client.disconnect()
    process.process.send_signal(signal.SIGKILL)
    process.process.wait(10)
    wait_until(lambda: not any(alive(pid) for pid in children), 10, "the devices gone with their factory")


@pytest.fixture
def source(prefix: str) -> Iterator[SourcePVs]:
    """A real source PV, posted 20 times a second until the test ends."""
    pvs = SourcePVs(f"{prefix}:in")
    stop = threading.Event()

    def post() -> None:
        count = 0
        while not stop.wait(0.05):
            count += 1
            pvs.post("double", float(count))

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    yield pvs
    stop.set()
    thread.join(5)
    pvs.stop()


def test_devices_come_back_after_the_factory_is_killed(prefix, tmp_path, source):
    state = tmp_path / "factory.json"
    process, client = start_factory(prefix, state)
    try:
        ping, idle, coll = f"{prefix}:ping", f"{prefix}:idle", f"{prefix}:coll"
        client.create("ping.Ping", ping, {"delay": 0.25}).disconnect()
        client.create("ping.Ping", idle).disconnect()  # never configured
        collector = client.create("collect.Collector", coll, {
            "input_pvs": [source.name("double")], "publish_period": 0.2,
        }, restart="on-failure", restart_limit=2)
        collector.enable()
        wait_until(lambda: collector.status()["received"] >= 5, 10, "the collector receiving")
        collector.disconnect()
        before = saved_when(state, lambda s: s.get(coll, {}).get("enabled"), "the collector saved as enabled")
        assert set(before) == {ping, idle, coll}
        assert before[ping]["config"]["delay"] == 0.25 and before[idle]["config"] is None
        assert before[coll]["restart"] == "on-failure" and before[coll]["restart_limit"] == 2
        devices = {d["prefix"]: d for d in client.devices()}
        configs = {p: config_of(p) for p in devices}

        kill_factory(process, client)
        assert saved(state) == before  # a crash changes nothing in the file

        process, client = start_factory(prefix, state)
        wait_until(lambda: {d["prefix"] for d in client.devices()} == set(devices), 30, "the same devices back")
        again = {d["prefix"]: d for d in client.devices()}
        assert {p: (d["type"], d["creator"]) for p, d in again.items()} == \
               {p: (d["type"], d["creator"]) for p, d in devices.items()}
        for name, config in configs.items():
            device = emd.DeviceClient(name)
            device.wait_for_state(devices[name]["state"], timeout=10)
            assert device.config == config
            device.disconnect()
        assert "recreated collect.Collector" in process.output()

        collector = CollectorClient(coll)
        received = collector.status()["received"]
        wait_until(lambda: collector.status()["received"] >= received + 5, 10, "the collector recording again")
        collector.disconnect()
        assert saved(state) == before
    finally:
        client.disconnect()
        process.stop()


def spooled(path: Path, pv: str) -> tuple[np.ndarray, np.ndarray]:
    """The values and alarm severities a spool file holds of `pv`, read as a SWMR reader."""
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        log = next(g for g in f["entry"].values() if g.attrs.get("pv_name") == pv)
        return log["value"][()], log["alarm_severity"][()]


def spooled_rows(path: Path, pv: str) -> int:
    """Rows of `pv` in the spool file; 0 until a reader can open it (the writer locks it until
    its SWMR mode starts, after its first append)."""
    try:
        return len(spooled(path, pv)[0])
    except (OSError, StopIteration, KeyError):
        return 0


def test_a_spooling_collector_goes_on_spooling_into_its_file_after_a_crash(prefix, tmp_path, source):
    """A host reboot costs the downtime and nothing else: the collector comes back enabled and
    appends to the same spool file (which its killed writer left open), after one gap marker."""
    state, name = tmp_path / "factory.json", source.name("double")
    process, client = start_factory(prefix, state)
    try:
        collector = client.create("collect.Collector", f"{prefix}:coll", {
            "input_pvs": [name], "publish_period": 0.2, "spool_file": "run.h5", "spool_interval": 0.2})
        collector.enable()
        spool = tmp_path / "run.h5"
        wait_until(lambda: spooled_rows(spool, name) >= 10, 15, "10 rows spooled")
        collector.disconnect()
        saved_when(state, lambda s: s.get(f"{prefix}:coll", {}).get("enabled"), "saved as enabled")
        kill_factory(process, client)
        before, _ = spooled(spool, name)

        process, client = start_factory(prefix, state)
        wait_until(lambda: spooled_rows(spool, name) >= len(before) + 10, 30, "spooling into the same file again")
        values, severities = spooled(spool, name)
        assert list(values[:len(before)]) == list(before)  # what was flushed before the crash is kept
        assert list(severities[len(before):len(before) + 1]) == [3] and np.isnan(values[len(before)])
        assert (severities[len(before) + 1:] == 0).all() and not np.isnan(values[len(before) + 1:]).any()
        assert "was left open by a writer that stopped without closing it" in process.output()
    finally:
        client.disconnect()
        process.stop()


def test_state_file_follows_every_change_and_survives_a_clean_stop(prefix, tmp_path):
    state = tmp_path / "sub" / "factory.json"
    state.parent.mkdir()
    process, client = start_factory(prefix, state)
    try:
        assert saved(state) == {}  # written at start: an unwritable place shows at once
        name = f"{prefix}:p"
        device = client.create("ping.Ping", name)
        assert saved(state)[name]["config"] is None  # CREATE completes after the write
        device.configure(delay=0.5)
        saved_when(state, lambda s: s[name]["config"] == {"delay": 0.5}, "CONFIG saved")
        device.enable()
        saved_when(state, lambda s: s[name]["enabled"], "ENABLE saved")
        device.disable()
        saved_when(state, lambda s: not s[name]["enabled"], "disable saved")
        device.enable()
        client.create("ping.Ping", f"{prefix}:gone").disconnect()
        client.delete(f"{prefix}:gone")
        assert set(saved(state)) == {name}  # DELETE completes after the write
        device.disconnect()
        assert [p.name for p in state.parent.iterdir()] == ["factory.json"]  # no temporary files left
    finally:
        client.disconnect()
        process.stop()  # a clean stop (CLOSE) ends the devices but keeps them in the file
    after = saved_when(state, lambda s: s[name]["enabled"], "enabled kept")
    assert set(after) == {name}


def test_entry_of_a_type_not_installed_is_skipped(prefix, tmp_path):
    state = tmp_path / "factory.json"
    entries = [{"type": "gone.Type", "prefix": f"{prefix}:gone"},
               {"type": "ping.Ping", "prefix": f"{prefix}:p", "config": {"delay": 0.1}, "enabled": True}]
    state.write_text(json.dumps({"format": "emd-factory-state", "version": 1, "devices": entries}))
    process, client = start_factory(prefix, state)
    try:
        wait_until(lambda: [(d["prefix"], d["state"]) for d in client.devices()] == [(f"{prefix}:p", "running")],
                   20, "the installed device back and running")
        assert f"{prefix}:gone not recreated: device type 'gone.Type' is not installed here" in process.output()
        assert set(saved(state)) == {f"{prefix}:p"}
    finally:
        client.disconnect()
        process.stop()


@pytest.mark.parametrize(("content", "reason"), [
    ("{\"format\": \"emd-factory-state\", \"vers", "not JSON"),
    ("[1, 2]", "not an emd factory state file"),
    ('{"format": "emd-factory-state", "version": 1, "devices": [{"prefix": "a:b"}]}', "device 0: missing type"),
    ('{"format": "emd-factory-state", "version": 1, "devices": [{"type": "ping.Ping", "prefix": "a:b", '
     '"enabled": "yes"}]}', "device 0: enabled has the wrong type (str)"),
])
def test_unusable_state_file_refused(prefix, tmp_path, content, reason):
    state = tmp_path / "factory.json"
    state.write_text(content)
    error = emd_error("factory", "run", prefix, "--state", state, timeout=60)
    assert f"state file {state} cannot be used: {reason}" in error and "did not start" in error
    assert state.read_text() == content  # left as it was


def test_state_file_in_a_missing_directory_refused(prefix, tmp_path):
    state = tmp_path / "nowhere" / "factory.json"
    error = emd_error("factory", "run", prefix, "--state", state, timeout=60)
    assert str(state.parent) in error


def test_create_restart_options(prefix, tmp_path):
    process, client = start_factory(prefix, tmp_path / "state.json")
    try:
        result = run_emd("create", prefix, "ping.Ping", f"{prefix}:p", "--restart", "on-failure",
                         "--restart-limit", "4")
        assert result.returncode == 0, result.stderr
        assert saved(tmp_path / "state.json")[f"{prefix}:p"]["restart_limit"] == 4
        error = emd_error("create", prefix, "ping.Ping", f"{prefix}:q", "--restart", "always")
        assert "unknown restart policy 'always'" in error
        assert os.path.exists(tmp_path / "state.json")
    finally:
        client.disconnect()
        process.stop()


def test_spooling_collector_appends_to_its_spool_after_a_clean_stop(prefix, tmp_path, source):
    pytest.importorskip("emd_hdf5")
    state = tmp_path / "factory.json"
    process, client = start_factory(prefix, state)
    try:
        collector = client.create("collect.Collector", f"{prefix}:coll", {
            "input_pvs": [source.name("double")], "spool_file": "spool.h5",
            "spool_interval": 0.2})
        collector.enable()
        wait_until(lambda: collector.status()["received"] >= 5, 10, "the collector receiving")
        collector.disconnect()
        saved_when(state, lambda s: s[f"{prefix}:coll"]["enabled"], "the collector saved as enabled")
    finally:
        client.disconnect()
        process.stop()  # clean: the spool file is closed
    spool = next(tmp_path.rglob("spool.h5"))  # in the data root
    spooled = spool.stat().st_size
    process, client = start_factory(prefix, state)
    try:
        collector = CollectorClient(f"{prefix}:coll")
        collector.wait_for_state("running", timeout=20)
        wait_until(lambda: spool.stat().st_size > spooled, 10, "the spool file appended to")
        collector.disconnect()
    finally:
        client.disconnect()
        process.stop()
