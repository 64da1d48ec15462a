"""Display metadata on processor outputs (issue 19): outputs carry the units and precision of
their input (EGU and PREC of a real IOC record, over PVAccess and over Channel Access) or fixed
units of their own (Stats COUNT none, Spectrum FREQUENCY Hz), and a bluesky ``count`` plan's
descriptor shows them, read through ophyd-async with no device code (PVI)."""

from __future__ import annotations

import pytest
from bluesky import RunEngine
from bluesky.plans import count
from ophyd_async.core import Device
from ophyd_async.epics.core import PviDeviceConnector
from ophyd_async.plan_stubs import ensure_connected

from epics_meta_devices.testing import IocProcess
from processor_helpers import valid, wait_for

DB = """\
record(ai, "$(P)x") { field(VAL, "1.5") field(PINI, "YES") field(EGU, "mm") field(PREC, "2") }
record(waveform, "$(P)trace") { field(FTVL, "DOUBLE") field(NELM, "8") field(EGU, "V") }
"""


@pytest.fixture
def ioc(prefix):
    """A real softIoc (PVAccess and CA) whose records have units and precision."""
    with IocProcess(DB, {"P": f"{prefix}:ioc:"}, wait_for=f"{prefix}:ioc:x"):
        yield f"{prefix}:ioc:"


@pytest.mark.parametrize("scheme", ["", "ca://"])
def test_outputs_carry_their_inputs_units_and_precision(prefix, ctxt, ioc, run_device, scheme):
    run_device("calc.Calc", f"{prefix}:calc", config={"expression": "A*2", "inputs": [f"{scheme}{ioc}x"]}).enable()
    val = wait_for(ctxt, f"{prefix}:calc:VAL", valid(3.0))
    assert (val["display.units"], val["display.precision"]) == ("mm", 2)


def test_config_units_replace_the_input_s_units_but_not_a_type_s_own(prefix, ctxt, ioc, run_device):
    calc = run_device("calc.Calc", f"{prefix}:calc",
                      config={"expression": "A*A", "inputs": [f"{ioc}x"], "units": "mm^2"})
    calc.enable()
    val = wait_for(ctxt, f"{prefix}:calc:VAL", valid(2.25))
    assert (val["display.units"], val["display.precision"]) == ("mm^2", 2)
    assert val["display.description"] == "VAL = A*A"  # a Calc describes its output by its expression
    stats = run_device("stats.Stats", f"{prefix}:stats", config={"inputs": [f"{ioc}x"], "units": "m"})
    stats.enable()
    assert wait_for(ctxt, f"{prefix}:stats:MEAN", valid(1.5))["display.units"] == "m"
    assert ctxt.get(f"{prefix}:stats:COUNT")["display.units"] == ""  # a count stays a count
    assert ctxt.get(f"{prefix}:stats:STD")["display.description"] == "standard deviation of the window"
    calc.disable()
    with pytest.raises(Exception, match="units: at most 64 printable characters"):
        ctxt.put(f"{prefix}:calc:CONFIG:units", "x" * 65)
    assert ctxt.get(f"{prefix}:calc:CONFIG:units")["value"] == "mm^2"  # nothing changed


def test_stats_count_has_no_units_and_its_statistics_the_input_s(prefix, ctxt, ioc, run_device):
    run_device("stats.Stats", f"{prefix}:stats", config={"inputs": [f"{ioc}x"], "window": 2}).enable()
    mean = wait_for(ctxt, f"{prefix}:stats:MEAN", valid(1.5))
    assert mean["display.units"] == "mm" and ctxt.get(f"{prefix}:stats:STD")["display.units"] == "mm"
    assert ctxt.get(f"{prefix}:stats:COUNT")["display.units"] == ""


def test_a_count_plan_describes_outputs_with_their_units(prefix, ioc, run_device):
    run_device("calc.Calc", f"{prefix}:calc", config={"expression": "A*2", "inputs": [f"{ioc}x"]}).enable()
    device = Device(name="calc", connector=PviDeviceConnector(f"{prefix}:calc:"))
    documents: list[tuple[str, dict]] = []
    engine = RunEngine({})
    engine(ensure_connected(device))
    engine(count([device.val], num=2), lambda name, doc: documents.append((name, doc)))
    [descriptor] = [doc for name, doc in documents if name == "descriptor"]
    key = descriptor["data_keys"]["calc-val"]
    assert (key["units"], key["precision"]) == ("mm", 2)
    assert [doc["data"]["calc-val"] for name, doc in documents if name == "event"] == [3.0, 3.0]
