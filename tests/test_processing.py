"""ProcessingDevice, driven through PVs: test.Scale (Y = factor * x, INVERSE = 1 / x) and
test.Sum (SUM of a group of inputs) from emd_test_devices.py run in their own processes and
read p4p source PVs served by this test process."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from p4p import Value

from epics_meta_devices import DeviceError, DeviceState
from epics_meta_devices.testing import SourcePVs, wait_until

INVALID, MINOR = 3, 1


@pytest.fixture
def sources(prefix: str) -> Iterator[SourcePVs]:
    served = SourcePVs(prefix)
    yield served
    served.stop()


def output(client: Any, name: str) -> Value:
    return client.get_pv(name)


def wait_output(client: Any, name: str, condition: Any, what: str, timeout: float = 10.0) -> Value:
    """Wait until the output PV `name` satisfies `condition(value)`; return that Value."""
    seen: list[Value] = []

    def check() -> bool:
        seen[:] = [output(client, name)]
        return bool(condition(seen[0]))

    try:
        wait_until(check, timeout, f"{name}: {what}")
    except AssertionError as exc:
        last = f"{seen[0]['value']} {seen[0]['alarm.message']!r}" if seen else "nothing"
        raise AssertionError(f"{exc} (last: {last})") from None
    return seen[0]


def running_scale(run_device: Any, prefix: str, source: str, **config: Any) -> Any:
    client = run_device("test.Scale", f"{prefix}:scale", config={"x": source, **config})
    client.enable()
    return client


def test_outputs_follow_the_input_with_its_time_and_alarm(prefix, sources, run_device):
    client = running_scale(run_device, prefix, sources.name("double"))
    sources.post("double", 3.0, timestamp=1_000_000.25)
    y = wait_output(client, "Y", lambda v: v["value"] == 6.0, "6.0")
    assert y["alarm.severity"] == 0 and y["alarm.message"] == ""
    assert y["timeStamp.secondsPastEpoch"] == 1_000_000  # the input's time, not the device's
    assert abs(y["timeStamp.nanoseconds"] - 250_000_000) < 1000
    assert output(client, "INVERSE")["value"] == pytest.approx(1 / 3)

    sources.post("double", 5.0, severity=MINOR, message="HIGH")
    y = wait_output(client, "Y", lambda v: v["value"] == 10.0, "10.0")
    assert (y["alarm.severity"], y["alarm.message"]) == (MINOR, "HIGH")  # propagated

    sources.post("double", 7.0, severity=INVALID, message="sensor broken")
    y = wait_output(client, "Y", lambda v: v["alarm.severity"] == INVALID, "INVALID")
    assert y["value"] == 10.0  # not computed from an INVALID input
    assert "sensor broken" in y["alarm.message"] and "input x" in y["alarm.message"]


def test_a_data_error_marks_outputs_invalid_and_the_device_keeps_running(prefix, sources, run_device):
    client = running_scale(run_device, prefix, sources.name("double"))
    sources.post("double", 0.0)
    y = wait_output(client, "INVERSE", lambda v: "division by zero" in v["alarm.message"],
                    "division by zero")
    assert y["alarm.severity"] == INVALID
    assert client.state is DeviceState.running
    sources.post("double", 4.0)
    y = wait_output(client, "INVERSE", lambda v: v["value"] == 0.25 and v["alarm.severity"] == 0,
                    "recovered")


def test_a_failing_compute_moves_the_device_to_error(prefix, sources, run_device):
    client = running_scale(run_device, prefix, sources.name("double"), strict=True)
    sources.post("double", -1.0)
    client.wait_for_state(DeviceState.error, timeout=10)
    assert "negative input in strict mode" in client.info["last_error"]
    assert output(client, "Y")["alarm.severity"] == INVALID
    client.configure(strict=False)  # a successful configure leaves error
    client.enable()
    sources.post("double", -2.0)
    wait_output(client, "Y", lambda v: v["value"] == -4.0, "-4.0")


def test_missing_and_lost_inputs_make_outputs_invalid(prefix, sources, run_device):
    missing = f"{prefix}:no:such:pv"
    client = running_scale(run_device, prefix, missing)
    y = wait_output(client, "Y", lambda v: v["alarm.severity"] == INVALID, "INVALID")
    assert y["alarm.message"] == f"waiting for input x ({missing})"
    inputs = output(client, "INPUTS")["value"]
    assert list(inputs["pv"]) == [missing] and list(inputs["connected"]) == [False]
    client.disable()

    client.configure(x=sources.name("double"))
    client.enable()
    sources.post("double", 1.5)
    wait_output(client, "Y", lambda v: v["value"] == 3.0 and v["alarm.severity"] == 0, "3.0")
    assert list(output(client, "INPUTS")["value"]["connected"]) == [True]
    sources.stop()  # the source goes away: clients see a disconnect
    y = wait_output(client, "Y", lambda v: "disconnected" in v["alarm.message"], "disconnected")
    assert y["alarm.severity"] == INVALID and y["value"] == 3.0


def test_a_stopped_device_shows_invalid_outputs(prefix, sources, run_device):
    client = running_scale(run_device, prefix, sources.name("double"))
    sources.post("double", 2.0)
    wait_output(client, "Y", lambda v: v["value"] == 4.0 and v["alarm.severity"] == 0, "4.0")
    client.disable()
    y = wait_output(client, "Y", lambda v: v["alarm.message"] == "not running", "not running")
    assert y["alarm.severity"] == INVALID and y["value"] == 4.0


def test_all_trigger_waits_for_every_input(prefix, sources, run_device, ctxt):
    """With trigger "all", each round of updates (doubles, then one int32) gives exactly one
    computation, from that round's int32 and a double (updates of different PVs may arrive in
    either order); "any" would compute on every update."""
    terms = [sources.name("double"), sources.name("int32")]
    client = run_device("test.Sum", f"{prefix}:sum", config={"terms": terms, "trigger": "all"})
    computed: list[float] = []
    monitor = ctxt.monitor(f"{prefix}:sum:SUM", lambda v: computed.append(v["value"])
                           if v["alarm.severity"] == 0 else None,
                           request="record[queueSize=100,pipeline=true]")
    try:
        client.enable()
        wait_until(lambda: computed == [0.0], 10, "the first computation, from both initial values")
        rounds = [((10.0, 20.0), 5), ((30.0, 40.0), 6), ((50.0, 60.0), 7), ((70.0,), 8)]
        doubles_so_far: list[float] = []
        for n, (doubles, integer) in enumerate(rounds, start=1):
            for value in doubles:
                sources.post("double", value)
            sources.post("int32", integer)
            doubles_so_far += doubles
            wait_until(lambda: len(computed) >= n + 1, 10, f"the computation of round {n}")
            assert computed[n] - integer in doubles_so_far[-3:], (n, computed)
        assert len(computed) == len(rounds) + 1, computed  # one per round, none per double
    finally:
        monitor.close()


def test_period_trigger_computes_at_the_period(prefix, sources, run_device):
    client = run_device("test.Sum", f"{prefix}:sum",
                        config={"terms": [sources.name("double")], "trigger": "period", "period": 0.2})
    client.enable()
    sources.post("double", 4.0)
    first = wait_output(client, "SUM", lambda v: v["value"] == 4.0, "4.0")
    stamp = first["timeStamp.secondsPastEpoch"] + first["timeStamp.nanoseconds"] * 1e-9
    # without a new input, the next period posts again, stamped later
    wait_output(client, "SUM", lambda v: v["timeStamp.secondsPastEpoch"]
                + v["timeStamp.nanoseconds"] * 1e-9 > stamp + 0.1, "a later computation")


@pytest.mark.parametrize("changes, message", [
    ({"trigger": "sometimes"}, "CONFIG field 'trigger' expects one of 'any', 'all', 'period', got 'sometimes'"),
    ({"trigger": "period", "period": 0}, "period must be a positive number"),
    ({"x": ""}, "give the PV name of every input: x"),
    ({"queue_size": 0}, "queue_size must be 1 to 100000"),
])
def test_bad_config_is_refused_and_changes_nothing(prefix, sources, run_device, changes, message):
    client = run_device("test.Scale", f"{prefix}:scale", config={"x": sources.name("double")})
    before = client.config
    with pytest.raises(DeviceError, match=message):
        client.configure(**changes)
    assert client.config == before and client.state is DeviceState.ready
