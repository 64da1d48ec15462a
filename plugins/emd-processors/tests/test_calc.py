"""calc.Calc through its PVs: computing, CALC spellings, refused expressions, data errors and
missing inputs. Each device runs in its own process; its inputs are p4p PVs of this process."""

from __future__ import annotations

import pytest

import epics_meta_devices as emd
from processor_helpers import invalid, valid, wait_for


def test_calc_computes_val_from_its_inputs(prefix, ctxt, sources, run_device):
    a, b = sources.name("double"), sources.name("int32")
    client = run_device("calc.Calc", f"{prefix}:calc", config={"expression": "A + B*2", "inputs": [a, b]})
    client.enable()
    val = f"{prefix}:calc:VAL"
    sources.post("double", 1.5)
    wait_for(ctxt, val, valid(1.5))  # B is still 0 (its value when the device connected)
    sources.post("int32", 2, timestamp=1_800_000_000.25)
    got = wait_for(ctxt, val, valid(5.5))
    # VAL carries the time of the input update that triggered it.
    assert got["timeStamp.secondsPastEpoch"] == 1_800_000_000 and abs(got["timeStamp.nanoseconds"] - 250_000_000) < 1000
    sources.post("double", -4.0, severity=1, message="a bit low")  # alarms pass through
    got = wait_for(ctxt, val, lambda v: v["value"] == 0.0)
    assert got["alarm.severity"] == 1 and got["alarm.message"] == "a bit low"
    sources.post("double", -4.0, severity=0, message="")  # (a post without severity keeps the alarm)
    wait_for(ctxt, val, valid(0.0))

    # CALC's own spellings: ?:, ^, =, #, &&, ||, !, and case-insensitive names.
    client.disable()
    client.configure(expression="(A >= 2 && B = 2) || !(A # 3) ? A^2 + PI*0 : -SQRT(B)")
    client.enable()
    sources.post("double", 3.0)
    wait_for(ctxt, val, valid(9.0))
    sources.post("double", 1.0)
    wait_for(ctxt, val, valid(-2 ** 0.5))
    assert client.state is emd.DeviceState.running


def test_calc_refuses_bad_expressions_and_keeps_its_config(prefix, ctxt, sources, run_device):
    a, b = sources.name("double"), sources.name("int32")
    client = run_device("calc.Calc", f"{prefix}:calc", config={"expression": "A - B", "inputs": [a, b]})
    refusals = {
        "A +": "syntax error in 'A +'",
        "sqrt(A": "unbalanced parentheses",
        "A + foo": "unknown name 'foo'",
        "cosh(A)": "unknown function 'cosh'",
        "A + C": "the expression uses C, but only 2 input(s) are configured (A, B)",
        "__import__('os').system('true')": "unexpected character",
        "A.real": "attribute access (.) is not allowed",
        "9**9**9 + A": "cannot be computed: overflow",
        "": "the expression is empty",
    }
    for expression, message in refusals.items():
        with pytest.raises(emd.DeviceError, match="CONFIG refused the put: expression: " if expression != "A + C"
                           else "CONFIG refused the put: the expression uses C") as refused:
            client.configure(expression=expression)
        assert message in str(refused.value), expression
        assert client.config["expression"] == "A - B" and client.state is emd.DeviceState.ready
    with pytest.raises(emd.DeviceError, match="at most 12 inputs"):
        client.configure(inputs=[a] * 13)
    # The old expression still works.
    client.enable()
    sources.post("double", 5.0)
    sources.post("int32", 2)
    wait_for(ctxt, f"{prefix}:calc:VAL", valid(3.0))


def test_calc_division_by_zero_makes_val_invalid_until_the_inputs_change(prefix, ctxt, sources, run_device):
    a, b = sources.name("double"), sources.name("int32")
    client = run_device("calc.Calc", f"{prefix}:calc", config={"expression": "A / B", "inputs": [a, b]})
    client.enable()
    val = f"{prefix}:calc:VAL"
    sources.post("double", 1.0)  # B is still 0
    wait_for(ctxt, val, invalid("division by zero in A / B"))
    assert client.state is emd.DeviceState.running
    sources.post("int32", 4)
    wait_for(ctxt, val, valid(0.25))
    # A waveform has no single value: INVALID too, and the device runs on.
    client.disable()
    client.configure(inputs=[a, sources.name("waveform")])
    client.enable()
    wait_for(ctxt, val, invalid(f"input B ({sources.name('waveform')}) is a waveform"))
    assert client.state is emd.DeviceState.running


def test_calc_waits_for_an_input_that_is_not_served(prefix, ctxt, sources, run_device):
    missing = f"{prefix}:no:such:pv"
    client = run_device("calc.Calc", f"{prefix}:calc",
                        config={"expression": "A + B", "inputs": [sources.name("double"), missing]})
    assert ctxt.get(f"{prefix}:calc:VAL")["alarm.message"] == "not running"
    client.enable()
    sources.post("double", 1.0)
    wait_for(ctxt, f"{prefix}:calc:VAL", invalid(f"waiting for input inputs[1] ({missing})"))
    assert client.state is emd.DeviceState.running
