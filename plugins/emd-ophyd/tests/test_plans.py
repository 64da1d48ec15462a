"""emd-ophyd in real bluesky plans: a RunEngine drives devices created by a real factory (its
own process) reading a real IOC, through ophyd-async and the devices' PVI only."""

from __future__ import annotations

import json
from typing import Any, Iterator

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine
from bluesky.plans import count, scan
from ophyd_async.core import wait_for_value
from ophyd_async.epics.core import epics_signal_rw
from ophyd_async.plan_stubs import ensure_connected

import epics_meta_devices as emd
from emd_ophyd import EmdDevice, Factory
from emd_ophyd.plans import create_device, delete_device
from epics_meta_devices.testing import DeviceProcess, IocProcess, unique_prefix

DB = 'record(ai, "$(P)x") { field(VAL, "1.5") field(PINI, "YES") field(EGU, "mm") field(PREC, "2") }\n'


@pytest.fixture
def ioc(prefix) -> Iterator[str]:
    with IocProcess(DB, {"P": f"{prefix}:ioc:"}, wait_for=f"{prefix}:ioc:x"):
        yield f"{prefix}:ioc:x"


def factory_process(prefix: str) -> DeviceProcess:
    return DeviceProcess("", prefix, cli=["factory", "run", prefix, "--config", json.dumps({"max_devices": 5})])


@pytest.fixture
def factory(prefix) -> Iterator[Factory]:
    with factory_process(f"{prefix}:fac"):
        yield Factory(f"{prefix}:fac", name="fac")


@pytest.fixture
def engine() -> RunEngine:
    return RunEngine({})


def documents_of(engine: RunEngine, plan: Any) -> list[tuple[str, dict]]:
    documents: list[tuple[str, dict]] = []
    engine(plan, lambda name, doc: documents.append((name, doc)))
    return documents


def test_a_plan_creates_configures_uses_and_deletes_a_device(prefix, ioc, factory, engine):
    made: list[EmdDevice] = []

    def plan():
        yield from ensure_connected(factory)
        calc = yield from create_device(factory, "calc.Calc", f"{prefix}:calc", {"inputs": [ioc], "expression": "A"})
        made.append(calc)
        calc.stage_config = {"expression": "A*3"}  # put through CONFIG:expression when staged
        yield from bps.stage(calc, wait=True)  # wait=True: a refusal raises here
        yield from bps.wait_for([lambda: wait_for_value(calc.val, 4.5, timeout=10)])
        yield from count([calc], num=2)
        yield from bps.unstage(calc)
        yield from delete_device(factory, calc)

    documents = documents_of(engine, plan())
    [descriptor] = [doc for name, doc in documents if name == "descriptor"]
    assert descriptor["data_keys"]["calc-val"]["units"] == "mm"
    assert descriptor["data_keys"]["calc-val"]["precision"] == 2
    assert [doc["data"]["calc-val"] for name, doc in documents if name == "event"] == [4.5, 4.5]
    with emd.FactoryClient(factory.prefix) as client:
        assert client.devices() == []  # deleted
    assert made[0].prefix == f"{prefix}:calc"


@pytest.mark.parametrize("device_type, config, message", [
    ("nope.Nope", {}, "unknown device type 'nope.Nope'"),
    ("stats.Stats", {"inputs": ["a:b"], "window": 0}, "window must be 1 to"),
])
def test_a_refusal_raises_in_the_plan_with_the_factory_s_message(prefix, factory, engine, device_type, config, message):
    with pytest.raises(Exception, match=message):
        engine(create_device(factory, device_type, f"{prefix}:bad", config))
    with emd.FactoryClient(factory.prefix) as client:
        assert client.devices() == []


def test_a_prefix_in_use_and_a_bad_config_field_at_stage(prefix, ioc, factory, engine):
    def plan():
        stats = yield from create_device(factory, "stats.Stats", f"{prefix}:stats", {"inputs": [ioc]})
        try:
            yield from create_device(factory, "calc.Calc", f"{prefix}:stats", {"inputs": [ioc]})
        finally:
            stats.stage_config = {"window": 0}
    with pytest.raises(Exception, match=f"'{prefix}:stats' is already a device of factory {factory.prefix}"):
        engine(plan())
    stats = EmdDevice(f"{prefix}:stats", name="stats", config={"window": 0})
    with pytest.raises(Exception, match="window must be 1 to"):  # the device's own message
        engine(ensure_connected(stats))
        engine(bps.stage(stats, wait=True))


def test_one_plan_across_two_factories(prefix, ioc, engine):
    second_prefix = unique_prefix("fac2")
    with factory_process(f"{prefix}:fac"), factory_process(second_prefix):
        first, second = Factory(f"{prefix}:fac", name="fac1"), Factory(second_prefix, name="fac2")

        def plan():
            a = yield from create_device(first, "calc.Calc", f"{prefix}:a", {"inputs": [ioc], "expression": "A"})
            b = yield from create_device(second, "calc.Calc", f"{second_prefix}:b", {"inputs": [ioc], "expression": "A*2"})
            for device in (a, b):
                yield from bps.stage(device, wait=True)
            yield from bps.wait_for([lambda: wait_for_value(b.val, 3.0, timeout=10)])
            yield from bps.wait_for([lambda: wait_for_value(a.val, 1.5, timeout=10)])
            yield from count([a, b])
            for device, factory in ((a, first), (b, second)):
                yield from bps.unstage(device)
                yield from delete_device(factory, device)

        documents = documents_of(engine, plan())
        [event] = [doc for name, doc in documents if name == "event"]
        assert (event["data"]["a-val"], event["data"]["b-val"]) == (1.5, 3.0)


def test_a_step_scan_moves_an_ioc_setpoint_while_processors_are_read(prefix, factory, engine):
    """scan() moves a real IOC setpoint (an ophyd-async signal over pva://); at each point the
    plan waits until a Calc and a Stats device have computed from the new setpoint, then reads
    them."""
    db = 'record(ao, "$(P)sp") { field(VAL, "0") field(PINI, "YES") field(EGU, "A") field(PREC, "1") }\n'
    with IocProcess(db, {"P": f"{prefix}:ps:"}, wait_for=f"{prefix}:ps:sp"):
        setpoint = epics_signal_rw(float, f"pva://{prefix}:ps:sp", name="sp")

        def at_each_point(detectors, step, pos_cache, take_reading=None):
            yield from bps.move_per_step(step, pos_cache)
            target = 2 * step[setpoint]
            yield from bps.wait_for([lambda: wait_for_value(made["calc"].val, target, timeout=10),
                                     lambda: wait_for_value(made["stats"].mean, step[setpoint], timeout=10)])
            yield from bps.trigger_and_read(list(detectors) + [setpoint])

        made: dict[str, EmdDevice] = {}

        def plan():
            yield from ensure_connected(setpoint)
            made["calc"] = yield from create_device(factory, "calc.Calc", f"{prefix}:calc",
                                            {"inputs": [f"{prefix}:ps:sp"], "expression": "A*2"})
            made["stats"] = yield from create_device(factory, "stats.Stats", f"{prefix}:stats",
                                                     {"inputs": [f"{prefix}:ps:sp"], "window": 1})
            yield from scan([made["calc"], made["stats"]], setpoint, 1.0, 5.0, num=5, per_step=at_each_point)
            for device in made.values():
                yield from delete_device(factory, device)

        documents = documents_of(engine, plan())
    events = [doc["data"] for name, doc in documents if name == "event"]
    assert [(e["sp"], e["calc-val"], e["stats-mean"], e["stats-count"]) for e in events] == \
        [(p, 2 * p, p, 1) for p in (1.0, 2.0, 3.0, 4.0, 5.0)]
    [descriptor] = [doc for name, doc in documents if name == "descriptor"]
    assert descriptor["data_keys"]["calc-val"]["units"] == "A"
    assert descriptor["data_keys"]["stats-mean"]["units"] == "A"  # the input's units
