"""feedback.PID through its PVs, closing a loop over PVs served by this process: a first-order
heater it must settle, actuators that refuse writes or do not exist, invalid measurements
(no write at all), the rate limit and refused configurations."""

from __future__ import annotations

import math
import threading
import time

import pytest

import epics_meta_devices as emd
from epics_meta_devices.testing import wait_until
from processor_helpers import Actuator, FirstOrderPlant, invalid, valid, wait_for

LIMITS = {"output_min": 0.0, "output_max": 100.0}


def test_pid_settles_a_first_order_process(prefix, ctxt, run_device):
    temperature, power = f"{prefix}:heater:T", f"{prefix}:heater:power"
    plant = FirstOrderPlant(temperature, power, gain=1.0, tau=1.0, start=20.0)
    try:
        device = f"{prefix}:pid"
        client = run_device("feedback.PID", device, config={
            "process_variable": temperature, "output_pv": power, "setpoint": 40.0,
            "kp": 3.0, "ki": 6.0, **LIMITS})
        assert ctxt.get(f"{device}:SETPOINT")["value"] == 40.0
        client.enable()
        wait_until_settled(plant, 40.0)
        # Steady state of this plant: T = gain * power, so the loop holds the power near 40.
        assert plant.power.value == pytest.approx(40.0, abs=1.0)
        output = wait_for(ctxt, f"{device}:OUTPUT", valid())
        assert LIMITS["output_min"] <= output["value"] <= LIMITS["output_max"]
        assert abs(wait_for(ctxt, f"{device}:ERROR", valid())["value"]) < 1.0

        # The setpoint can change while the loop runs (CONFIG cannot).
        ctxt.put(f"{device}:SETPOINT", 25.0)
        assert ctxt.get(f"{device}:SETPOINT")["value"] == 25.0
        wait_until_settled(plant, 25.0)
        assert client.state is emd.DeviceState.running
        with pytest.raises(emd.DeviceError, match="cannot configure .* while running"):
            client.configure(setpoint=30.0)
    finally:
        plant.stop()


def wait_until_settled(plant: FirstOrderPlant, setpoint: float, tolerance: float = 0.5,
                       hold: float = 0.5, timeout: float = 15.0) -> None:
    """Wait until the plant's temperature has stayed within `tolerance` of `setpoint` for
    `hold` seconds."""
    inside_since: list[float] = []

    def settled() -> bool:
        if abs(plant.temperature - setpoint) > tolerance:
            inside_since.clear()
            return False
        inside_since[:] = inside_since or [time.monotonic()]
        return time.monotonic() - inside_since[0] >= hold

    wait_until(settled, timeout, f"temperature settled at {setpoint}")


def test_pid_refused_writes_make_outputs_invalid_then_move_to_error(prefix, ctxt, sources, run_device):
    power = Actuator(f"{prefix}:psu:current", refuse="power supply interlocked")
    try:
        device = f"{prefix}:pid"
        client = run_device("feedback.PID", device, config={
            "process_variable": sources.name("double"), "output_pv": power.name, "setpoint": 1.0,
            "max_write_failures": 3, **LIMITS})
        client.enable()  # the source's initial value is the first measurement: 1st failure
        wait_for(ctxt, f"{device}:OUTPUT", invalid(f"writing {power.name} failed: power supply interlocked"))
        wait_for(ctxt, f"{device}:ERROR", invalid("interlocked"))
        assert client.state is emd.DeviceState.running
        sources.post("double", 0.5)  # 2nd
        sources.post("double", 0.25)  # 3rd: the loop gives up
        client.wait_for_state("error", timeout=10)
        last_error = client.info["last_error"]
        assert "gave up after 3 failed writes in a row" in last_error and "power supply interlocked" in last_error
        assert power.count() == 0
    finally:
        power.stop()


def test_pid_output_pv_that_does_not_exist(prefix, ctxt, sources, run_device):
    missing = f"{prefix}:no:such:psu"
    device = f"{prefix}:pid"
    client = run_device("feedback.PID", device, config={
        "process_variable": sources.name("double"), "output_pv": missing, "max_write_failures": 2, **LIMITS})
    client.enable()
    wait_for(ctxt, f"{device}:OUTPUT", invalid(f"writing {missing} failed: no answer within 1.0 s (is the PV served?)"))
    sources.post("double", 2.0)
    client.wait_for_state("error", timeout=10)
    assert "gave up after 2 failed writes" in client.info["last_error"]


def test_pid_never_writes_without_a_valid_measurement(prefix, ctxt, sources, run_device):
    power = Actuator(f"{prefix}:psu:current")
    try:
        device = f"{prefix}:pid"
        client = run_device("feedback.PID", device, config={
            "process_variable": sources.name("double"), "output_pv": power.name, "setpoint": 10.0, "kp": 2.0,
            **LIMITS})
        client.enable()
        wait_for(ctxt, f"{device}:OUTPUT", valid(20.0))  # the initial measurement 0: 2 * (10 - 0)
        assert power.writes[-1][1] == 20.0
        writes = power.count()
        for n in range(1, 4):
            sources.post("double", 5.0, severity=3, message=f"sensor fault {n}")
            # Once OUTPUT shows fault n, the device has handled that update (without writing).
            wait_for(ctxt, f"{device}:OUTPUT", invalid(f"sensor fault {n}"))
        assert power.count() == writes
        sources.stop()  # the measurement disconnects
        wait_for(ctxt, f"{device}:OUTPUT", invalid("disconnected"))
        assert power.count() == writes and client.state is emd.DeviceState.running
    finally:
        power.stop()


def test_pid_with_a_period_trigger_steps_on_the_latest_measurement(prefix, ctxt, sources, run_device):
    power = Actuator(f"{prefix}:psu:current")
    try:
        run_device("feedback.PID", f"{prefix}:pid", config={
            "process_variable": sources.name("double"), "output_pv": power.name, "setpoint": 10.0,
            "kp": 0.5, "ki": 2.0, "trigger": "period", "period": 0.1, **LIMITS}).enable()
        # No new measurement is posted: every period steps with the latest (0), and the
        # integral makes the output grow from P = 5.
        wait_until(lambda: power.count() >= 5, 10, "5 writes")
        with power.lock:
            values = [value for _, value in power.writes]
        assert values[0] == 5.0 and all(b > a for a, b in zip(values, values[1:]))
    finally:
        power.stop()


def test_pid_rate_limit_applies_from_the_actuators_value(prefix, ctxt, sources, run_device):
    power = Actuator(f"{prefix}:psu:current", initial=0.0)
    rate = 20.0  # per second
    stop = threading.Event()

    def measure() -> None:  # a sensor at 20 Hz, far below the setpoint
        while not stop.wait(0.05):
            sources.post("double", 0.0)

    sensor = threading.Thread(target=measure)
    try:
        device = f"{prefix}:pid"
        client = run_device("feedback.PID", device, config={
            "process_variable": sources.name("double"), "output_pv": power.name, "setpoint": 100.0,
            "kp": 10.0, "rate_limit": rate, **LIMITS})
        client.enable()
        sensor.start()
        wait_until(lambda: power.count() >= 15, 10, "15 writes")
        with power.lock:
            writes = list(power.writes)
        # Without the limit every write would be 100; the first starts from the actuator's 0.
        assert writes[0][1] < 2.0
        for (t0, v0), (t1, v1) in zip(writes, writes[1:]):
            assert 0.0 <= v1 - v0 <= rate * (t1 - t0 + 0.05), (v0, v1, t1 - t0)
        assert writes[-1][1] < 100.0
    finally:
        stop.set()
        if sensor.is_alive():
            sensor.join()
        power.stop()


def test_pid_refuses_unsafe_configurations_and_setpoints(prefix, ctxt, sources, run_device):
    device = f"{prefix}:pid"
    client = run_device("feedback.PID", device)
    with pytest.raises(emd.DeviceError, match=r"must be ready or running or error for this \(it is created\)"):
        client.put("SETPOINT", 1.0)
    measured = sources.name("double")
    for bad, message in [
        ({"process_variable": measured}, "set output_pv"),
        ({"process_variable": measured, "output_pv": measured}, "output_pv must not be the process_variable"),
        ({"process_variable": measured, "output_pv": f"{device}:SETPOINT"}, "must not be a PV of this device"),
        ({"process_variable": measured, "output_pv": "x"}, "set output limits with output_min < output_max"),
        ({"rate_limit": -1.0}, "rate_limit must be >= 0"),
        ({"kp": math.inf}, "kp must be a finite number"),
    ]:
        with pytest.raises(emd.DeviceError, match=message):
            client.configure(bad)
    assert client.state is emd.DeviceState.created
    client.configure(process_variable=measured, output_pv="x", setpoint=3.0, **LIMITS)
    assert ctxt.get(f"{device}:SETPOINT")["value"] == 3.0
    with pytest.raises(emd.DeviceError, match="SETPOINT must be a finite number"):
        client.put("SETPOINT", math.nan)
    client.put("SETPOINT", 4.0)
    assert ctxt.get(f"{device}:SETPOINT")["value"] == 4.0
