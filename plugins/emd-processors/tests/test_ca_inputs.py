"""Processing devices on Channel Access inputs (issue 20): calc.Calc and stats.Stats read
``ca://`` PVs of a real CA-only IOC, feedback.PID drives a CA setpoint of a plant simulated in
that IOC, a device mixes CA and PVA inputs, bad names are refused, and a bare name that only
CA serves gets a hint in the outputs' alarm message."""

from __future__ import annotations

import time
from typing import Iterator

import pytest

import epics_meta_devices as emd
from epics_meta_devices._inputs import channel_access
from epics_meta_devices.testing import IocProcess, wait_until
from processor_helpers import invalid, valid, wait_for

CA_DB = """\
record(ao, "$(P)a") { field(VAL, "1.5") field(PINI, "YES") field(EGU, "mm") }
record(longout, "$(P)b") { field(VAL, "2") field(PINI, "YES") }
record(ao, "$(P)power") { field(VAL, "0") field(PINI, "YES") field(DRVL, "0") field(DRVH, "100") }
# a first-order heater, T' = (power - T) / 1 s, stepped every 0.1 s
record(calc, "$(P)T") { field(CALC, "A+(B-A)*0.1") field(INPA, "$(P)T") field(INPB, "$(P)power") field(SCAN, ".1 second") }
"""


@pytest.fixture
def ca_ioc(prefix) -> Iterator[str]:
    """A real CA-only IOC (no PVAccess server: checked); yields its PV prefix."""
    ca = f"{prefix}:ca:"
    with IocProcess(CA_DB, {"P": ca}, wait_for=f"{ca}a", ca_only=True):
        from p4p.client.thread import Context

        with Context("pva", nt=False) as pva, pytest.raises(TimeoutError):
            pva.get(f"{ca}a", timeout=1.0)
        yield ca


def test_calc_on_ca_inputs_and_a_pva_one(prefix, ctxt, ca_ioc, sources, run_device):
    client = run_device("calc.Calc", f"{prefix}:calc", config={
        "expression": "A + B*2 + C", "inputs": [f"ca://{ca_ioc}a", f"ca://{ca_ioc}b", sources.name("double")]})
    client.enable()
    val = f"{prefix}:calc:VAL"
    sources.post("double", 0.25)
    wait_for(ctxt, val, valid(5.75))
    channel_access().put(f"{ca_ioc}b", 10, 5.0)
    got = wait_for(ctxt, val, valid(21.75))
    served = channel_access().get(f"{ca_ioc}b", 5.0)  # VAL carries the time of the CA update
    secs, nsec = served.raw_stamp  # (to the microsecond: processors keep times as float seconds)
    assert got["timeStamp.secondsPastEpoch"] == secs and abs(got["timeStamp.nanoseconds"] - nsec) < 1000
    rows = ctxt.get(f"{prefix}:calc:INPUTS").value
    assert list(rows["pv"]) == [f"ca://{ca_ioc}a", f"ca://{ca_ioc}b", sources.name("double")]
    assert all(rows["connected"])


def test_stats_on_a_ca_input(prefix, ctxt, ca_ioc, run_device):
    client = run_device("stats.Stats", f"{prefix}:stats", config={"inputs": [f"ca://{ca_ioc}a"], "window": 3})
    client.enable()
    wait_until(lambda: all(ctxt.get(f"{prefix}:stats:INPUTS").value.connected), 10, "the CA input connected")
    for value in (2.0, 4.0, 6.0):
        channel_access().put(f"{ca_ioc}a", value, 5.0)
    wait_for(ctxt, f"{prefix}:stats:MEAN", valid(4.0))
    assert ctxt.get(f"{prefix}:stats:COUNT")["value"] == 3


def test_pid_drives_a_ca_setpoint(prefix, ctxt, ca_ioc, run_device):
    client = run_device("feedback.PID", f"{prefix}:pid", config={
        "process_variable": f"ca://{ca_ioc}T", "output_pv": f"ca://{ca_ioc}power", "setpoint": 30.0,
        "kp": 2.0, "ki": 4.0, "output_min": 0.0, "output_max": 100.0})
    client.enable()
    inside_since: list[float] = []

    def settled() -> bool:  # within 0.5 of the setpoint for 2 s
        if abs(float(channel_access().get(f"{ca_ioc}T", 5.0)) - 30.0) > 0.5:
            inside_since.clear()
            return False
        inside_since[:] = inside_since or [time.monotonic()]
        return time.monotonic() - inside_since[0] >= 2.0

    wait_until(settled, 40, "the CA plant settled at 30")
    assert float(channel_access().get(f"{ca_ioc}power", 5.0)) == pytest.approx(30.0, abs=1.5)
    assert client.state is emd.DeviceState.running


@pytest.mark.parametrize("name, reason", [
    ("ca://", "input inputs[1]: input PV 'ca://' names no PV after ca://"),
    ("xx://a", "input inputs[1]: unknown protocol 'xx' in input PV 'xx://a'"),
    ("a b", "input inputs[1]: invalid PV name 'a b'"),
])
def test_bad_input_names_are_refused(prefix, run_device, name, reason):
    client = run_device("calc.Calc", f"{prefix}:calc", config={"expression": "A", "inputs": ["x:y"]})
    with pytest.raises(emd.DeviceError, match="invalid CONFIG|refused") as refused:
        client.configure(inputs=["x:y", name])
    assert reason in str(refused.value)
    assert client.config["inputs"] == ["x:y"]


def test_pid_refuses_a_bad_output_name(prefix, run_device):
    client = run_device("feedback.PID", f"{prefix}:pid", config={
        "process_variable": "a:b", "output_pv": "c:d", "output_min": 0.0, "output_max": 1.0})
    with pytest.raises(emd.DeviceError) as refused:
        client.configure(output_pv="xx://c")
    assert "output_pv: unknown protocol 'xx'" in str(refused.value)
    with pytest.raises(emd.DeviceError, match="output_pv must not be the process_variable"):
        client.configure(output_pv="ca://a:b")


def test_a_bare_name_only_ca_serves_gets_a_hint(prefix, ctxt, ca_ioc, run_device):
    client = run_device("calc.Calc", f"{prefix}:calc", config={"expression": "A", "inputs": [f"{ca_ioc}a"]})
    client.enable()
    wait_for(ctxt, f"{prefix}:calc:VAL", invalid(f"if it is served by Channel Access only, name it ca://{ca_ioc}a"),
             timeout=15)
    message = ctxt.get(f"{prefix}:calc:VAL")["alarm.message"]
    assert f"no PVAccess server answered {ca_ioc}a within 5 s" in message


def test_updates_before_the_units_came_wait_for_them():
    """After a connect, libca may deliver the first DBR_TIME update before the DBR_CTRL value
    (units, precision, choices) of the other subscription: CaValues holds updates until it
    came, so no value goes out without its units, and a record that never updates again still
    gets them. (The objects stand in for aioca's values: only the order is tested here; the
    real IOC tests above check units end to end.)"""
    from types import SimpleNamespace

    from epics_meta_devices._inputs import MAX_HELD, CaValues

    values = CaValues()
    assert values.take("first") == [] and values.take("second") == []  # held
    assert values.control(SimpleNamespace(units="mm", precision=2)) == ["first", "second"]
    assert values.display["units"] == "mm"
    assert values.take("third") == ["third"]  # the units are known: at once
    values.disconnected()  # a new connection brings its own DBR_CTRL value
    assert values.take("fourth") == []
    held = [values.take(n) for n in range(MAX_HELD)]
    assert held[-1] == ["fourth", *range(MAX_HELD)]  # beyond MAX_HELD: out as they are, none lost
    assert values.take("fifth") == ["fifth"]
