"""PVI and CONFIG:<field> against the real ophyd-async connector: a Device built with
``PviDeviceConnector`` connects to emd devices of several plugins (each in its own process)
with no device-specific code, reads their signals and configures them field by field."""

from __future__ import annotations

import asyncio
import os
from typing import Any, Awaitable, Callable

import numpy as np
import pytest
from ophyd_async.core import Device, SignalR, SignalRW
from ophyd_async.core._device import DEVICE_RESERVED_ATTRS
from ophyd_async.epics.core import PviDeviceConnector

import epics_meta_devices as emd
from emd_collector import read_recording
from epics_meta_devices._pvi import DEVICE_ATTRIBUTES
from epics_meta_devices.testing import DeviceProcess, SourcePVs

PLUGINS = {"EMD_PLUGINS": f"{os.environ['EMD_PLUGINS']},emd_pvi_devices"}


def with_device(prefix: str, use: Callable[[Device], Awaitable[Any]]) -> Any:
    """Connect a fresh ophyd-async Device to `prefix` through its PVI and run ``use(device)``
    (each call reads PVI again: this is how ophyd-async sees a changed PVI)."""

    async def run() -> Any:
        device = Device(name="dev", connector=PviDeviceConnector(f"{prefix}:"))
        await device.connect(timeout=10)
        return await use(device)

    return asyncio.run(run())


def test_entry_names_never_shadow_a_device_attribute():
    """Checked against the installed ophyd-async, so a release with new attributes is noticed."""
    public = {name for name in dir(Device) if not name.startswith("_")}
    assert public | DEVICE_RESERVED_ATTRS <= DEVICE_ATTRIBUTES


def test_any_device_connects_with_typed_signals(prefix, ctxt, run_device):
    run_device("test.Probe", prefix)
    pvi = ctxt.get(f"{prefix}:PVI")["value"].todict()
    assert pvi["state"] == {"r": f"{prefix}:STATE"} and pvi["enable"] == {"rw": f"{prefix}:ENABLE"}
    assert pvi["config"] == {"d": f"{prefix}:CONFIG:PVI"} and pvi["cmd"] == {"rw": f"{prefix}:CMD"}
    assert "pvi" not in set(pvi)  # a plain structure: ophyd-async cannot read it
    assert pvi["info"] == {"d": f"{prefix}:INFO:PVI"}  # INFO field by field (nt_fields)
    fields = ctxt.get(f"{prefix}:CONFIG:PVI")["value"].todict()
    assert list(fields) == ["name_", "gain", "count", "enabled_channels", "weights", "strict", "watch",
                            "fail_configure", "fail_start"]

    async def read(device: Device) -> dict[str, Any]:
        assert isinstance(device.state, SignalR) and not isinstance(device.state, SignalRW)
        assert isinstance(device.enable, SignalRW) and isinstance(device.config.gain, SignalRW)
        return {
            "state": await device.state.get_value(), "enable": await device.enable.get_value(),
            "type": await device.type.get_value(), "mode": await device.mode.get_value(),
            "gain": await device.config.gain.get_value(), "count": await device.config.count.get_value(),
            "channels": await device.config.enabled_channels.get_value(),
            "weights": await device.config.weights.get_value(), "strict": await device.config.strict.get_value(),
        }

    values = with_device(prefix, read)
    assert values.pop("weights").tolist() == []
    assert values == {"state": "created", "enable": False, "type": "test.Probe", "mode": "off", "gain": 1.0,
                      "count": 10, "channels": [], "strict": False}


def test_config_fields_set_config_and_refuse_with_the_devices_message(prefix, run_device):
    client = run_device("test.Probe", prefix)

    async def configure(device: Device) -> dict[str, Any]:
        await device.config.gain.set(2.5)
        await device.config.enabled_channels.set(["a", "b"])
        await device.config.weights.set(np.array([0.5, 1.5]))
        with pytest.raises(Exception, match=r"count must be >= 0, got -1"):
            await device.config.count.set(-1)
        refused_count = await device.config.count.get_value()
        client.configure(count=7)  # a CONFIG structure put: the field PVs follow it
        await asyncio.sleep(0)
        return {"state": await device.state.get_value(), "refused_count": refused_count,
                "count": await device.config.count.get_value(),
                "channels": await device.config.enabled_channels.get_value()}

    seen = with_device(prefix, configure)
    assert seen == {"state": "ready", "refused_count": 10, "count": 7, "channels": ["a", "b"]}
    assert client.config | {"weights": list(client.config["weights"])} == {
        "name": "probe", "gain": 2.5, "count": 7, "enabled_channels": ["a", "b"], "weights": [0.5, 1.5],
        "strict": False, "watch": "", "fail_configure": False, "fail_start": False}

    client.enable()

    async def while_running(device: Device) -> None:
        with pytest.raises(Exception, match=r"cannot configure .* while running: disable it first"):
            await device.config.gain.set(3.0)

    with_device(prefix, while_running)
    assert client.config["gain"] == 2.5


def test_literal_field_is_an_ntenum(prefix, ctxt, run_device):
    client = run_device("pvitest.Shutter", prefix, env=PLUGINS)
    mode = ctxt.get(f"{prefix}:CONFIG:mode")
    assert mode.getID() == "epics:nt/NTEnum:1.0" and list(mode["value.choices"]) == ["auto", "open", "closed"]
    assert ctxt.get(f"{prefix}:CONFIG").todict()["mode"] == "auto"  # the structure keeps the string

    async def use(device: Device) -> tuple[str, str]:
        await device.config.mode.set("closed")
        with pytest.raises(Exception, match=r"exposure must be 0.001 to 10 s, got 50.0"):
            await device.config.exposure.set(50.0)
        return await device.config.mode.get_value(), await device.open.get_value()

    assert with_device(prefix, use) == ("closed", False)
    assert client.config["mode"] == "closed" and client.config["exposure"] == 0.1
    with pytest.raises(emd.DeviceError, match=r"expects one of 'auto', 'open', 'closed', got 'ajar'"):
        client.configure(mode="ajar")


def test_factory_and_a_processor_it_creates(prefix, ctxt):
    sources = SourcePVs(prefix)
    factory_process = DeviceProcess("factory.DeviceFactory", prefix, cli=["factory", "run", prefix])
    factory_process.start()
    try:
        factory = emd.FactoryClient(prefix)
        factory.wait_for_state("running", timeout=10)
        factory.create("stats.Stats", f"{prefix}:stats", config={"inputs": [sources.name("double")]})

        async def read_factory(device: Device) -> tuple[list[str], str]:
            return list(await device.devicetypes.get_value()), (await device.devices.get_value()).prefix[0]

        types, created = with_device(prefix, read_factory)
        assert "stats.Stats" in types and created == f"{prefix}:stats"

        async def run_stats(device: Device) -> tuple[int, float]:
            async def count_reaches(count: int) -> None:
                for _ in range(200):
                    if await device.count.get_value() >= count:
                        return
                    await asyncio.sleep(0.05)
                raise TimeoutError(f"COUNT stayed below {count}")

            await device.enable.set(True)
            await count_reaches(1)  # the source's current value, once the monitor connected
            for value in (2.0, 6.0):
                counted = await device.count.get_value()
                sources.post("double", value)
                await count_reaches(counted + 1)
            count, maximum = await device.count.get_value(), await device.max.get_value()
            await device.enable.set(False)
            return count, maximum

        assert with_device(f"{prefix}:stats", run_stats) == (3, 6.0)
        factory.disconnect()
    finally:
        factory_process.stop()
        sources.stop()


def test_collector_pvi_follows_its_input_pvs(prefix, ctxt, run_device):
    sources = SourcePVs(prefix)
    try:
        client = run_device("collect.Collector", prefix, config={"input_pvs": [sources.name("double")]})

        source = prefix.lower().replace(":", "_")  # an entry name holds no ':'

        async def tables(device: Device) -> list[str]:
            return sorted(name for name, _ in device.children() if name.endswith("_table"))

        assert with_device(prefix, tables) == [f"out_{source}_src_double_table"]
        client.configure(input_pvs=[sources.name("double"), sources.name("int32")])
        # the CONFIG put completes after PVI was rebuilt: a Device connected now sees the new PV
        assert f"out_{source}_src_int32_table" in ctxt.get(f"{prefix}:PVI")["value"].todict()

        async def read_new_table(device: Device) -> tuple[list[str], Any]:
            table = getattr(device, f"out_{source}_src_int32_table")
            return await tables(device), await table.get_value()

        names, table = with_device(prefix, read_new_table)
        assert names == [f"out_{source}_src_double_table", f"out_{source}_src_int32_table"]
        assert table is not None
    finally:
        sources.stop()


def test_status_info_and_export_field_by_field_in_a_plan_s_terms(prefix, ctxt, run_device, tmp_path):
    """Structures a plan or a screen needs (INFO, a collector's STATUS, EXPORT_STATUS) are also
    served field by field as NT PVs, and EXPORT as a put-to-execute PV: ophyd-async reads
    device.status.received and exports with device.export_path.set(...), no RPC, no glue."""
    sources = SourcePVs(prefix)
    try:
        client = run_device("collect.Collector", f"{prefix}:coll", env={**PLUGINS, "EMD_DATA_ROOT": str(tmp_path)},
                            config={"input_pvs": [sources.name("double")], "publish_period": 0.1})
        client.enable()

        async def use(device: Device) -> dict[str, Any]:
            for _ in range(100):  # STATUS is posted every publish_period
                if await device.status.received.get_value() >= 1:
                    break
                await asyncio.sleep(0.1)
            await device.annotate_note.set("beam on")  # an annotation, as a plan makes one
            await device.export_path.set("run.npz")  # completes when the file is written
            return {"received": await device.status.received.get_value(), "pid": await device.info.pid.get_value(),
                    "last_error": await device.info.last_error.get_value(),
                    "path": await device.export_status.path.get_value(),
                    "samples": await device.export_status.samples.get_value(),
                    "upload": await device.upload_status.state.get_value()}

        values = with_device(f"{prefix}:coll", use)
        assert values["received"] >= 1 and values["pid"] == client.info["pid"] and values["last_error"] == ""
        assert values["path"] == str(tmp_path / "run.npz") and values["samples"] >= 1 and values["upload"] == "idle"
        assert (tmp_path / "run.npz").is_file()
        assert ctxt.get(f"{prefix}:coll:EXPORT:path")["value"] == ""  # a put-to-execute PV keeps no request
        with pytest.raises(Exception, match="a path is needed"):
            ctxt.put(f"{prefix}:coll:EXPORT:path", "", timeout=5)
        notes = read_recording(tmp_path / "run.npz").annotations
        assert [(note.key, note.value) for note in notes] == [("note", "beam on")]
        assert ctxt.get(f"{prefix}:coll:ANNOTATE:note")["value"] == ""
        with pytest.raises(Exception, match="ANNOTATE: a key has at most 128 characters and a value at most 4096"):
            ctxt.put(f"{prefix}:coll:ANNOTATE:note", "x" * 5000, timeout=5)
    finally:
        sources.stop()


def test_config_fields_are_in_the_access_group_of_config(prefix, ctxt, run_device, tmp_path):
    """With an ACF that lets nobody write CONTROL, CONFIG:<field> is refused as CONFIG is,
    while a DEFAULT PV of the same device still takes puts."""
    acf = tmp_path / "emd.acf"
    acf.write_text("ASG(DEFAULT) {\n    RULE(1, READ)\n    RULE(1, WRITE)\n}\n"
                   "ASG(CONTROL) {\n    RULE(1, READ)\n}\n")
    run_device("test.Probe", prefix, args=["--acf", str(acf)])
    for name, value in ((f"{prefix}:CONFIG", {"gain": 2.0}), (f"{prefix}:CONFIG:gain", 2.0)):
        with pytest.raises(Exception, match=rf"put to {name} refused by access security"):
            ctxt.put(name, value)
    ctxt.put(f"{prefix}:INPUT", 3.0)
    assert ctxt.get(f"{prefix}:CONFIG:gain")["value"] == 1.0 and ctxt.get(f"{prefix}:INPUT")["value"] == 3.0
