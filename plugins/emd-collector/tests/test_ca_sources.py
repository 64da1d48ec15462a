"""Channel Access inputs (issue 20): a collector records ``ca://`` PVs of a real IOC that serves
Channel Access only (EPICS base's softIoc without QSRV; the fixture checks that PVAccess gets
no answer) with the same semantics as PVAccess inputs: the IOC's timestamps, alarms, enums with
their choices, strings, variable-length waveforms, units, connection events, gap markers and
reconnection after an IOC restart; CA and PVA inputs in one collector; bad names refused; and a
bare name that no PVAccess server answers gets a hint."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest
from p4p.client.thread import RemoteError

from emd_collector import CollectorClient, read_recording
from epics_meta_devices._inputs import channel_access
from epics_meta_devices.testing import IocProcess, wait_until

INVALID, CLIENT = 3, 7

CA_DB = """\
record(calc, "$(P)count") { field(CALC, "A+1") field(INPA, "$(P)count") field(SCAN, ".1 second") field(EGU, "cts") }
record(ao, "$(P)ai") { field(EGU, "mm") field(PREC, "3") field(HIGH, "5") field(HSV, "MINOR") field(HIHI, "10") field(HHSV, "MAJOR") }
record(longin, "$(P)long") { field(INP, "$(P)count CP") field(EGU, "counts") }
record(mbbo, "$(P)enum") { field(ZRST, "Off") field(ONST, "On") field(TWST, "Fault") field(VAL, "1") field(PINI, "YES") }
record(stringout, "$(P)str") { field(VAL, "ready") field(PINI, "YES") }
record(waveform, "$(P)wf") { field(FTVL, "DOUBLE") field(NELM, "16") field(EGU, "V") }
record(waveform, "$(P)short") { field(FTVL, "SHORT") field(NELM, "1") }
record(waveform, "$(P)float") { field(FTVL, "FLOAT") field(NELM, "1") }
record(waveform, "$(P)char") { field(FTVL, "UCHAR") field(NELM, "1") }
"""
SCALARS = {"ai": "d", "long": "i", "short": "h", "float": "f", "char": "B", "enum": "i", "str": "s"}
"""Input -> the type code it is stored with: one of every DBR type (DOUBLE, LONG, SHORT, FLOAT,
CHAR, ENUM, STRING), and a DOUBLE waveform."""


@pytest.fixture
def ca_ioc(prefix) -> Iterator[IocProcess]:
    """A real CA-only IOC; that PVAccess finds none of its PVs is checked here."""
    with IocProcess(CA_DB, {"P": f"{prefix}:ca:"}, wait_for=f"{prefix}:ca:count", ca_only=True) as ioc:
        from p4p.client.thread import Context

        with Context("pva", nt=False) as pva, pytest.raises(TimeoutError):
            pva.get(f"{prefix}:ca:count", timeout=1.0)
        yield ioc


def ca_put(name: str, value: object) -> None:
    channel_access().put(name, value, 5.0)


def collector(run_device, prefix, data_root, **config) -> CollectorClient:
    base = run_device("collect.Collector", f"{prefix}:coll", config={"publish_period": 0.1, **config},
                      env={"EMD_DATA_ROOT": str(data_root)})
    return CollectorClient(base.prefix)


def test_every_dbr_type_is_recorded_as_the_ioc_serves_it(prefix, ca_ioc, run_device, tmp_path):
    names = {key: f"{prefix}:ca:{key}" for key in [*SCALARS, "wf"]}
    client = collector(run_device, prefix, tmp_path, input_pvs=[f"ca://{name}" for name in names.values()])
    client.start()
    wait_until(lambda: all(client.status(name)["connected"] for name in names.values()), 10, "all connected")
    for level in (1.0, 6.0, 11.0):  # NO_ALARM, HIGH (MINOR), HIHI (MAJOR)
        ca_put(names["ai"], level)
    ca_put(names["short"], -7)
    ca_put(names["float"], 2.5)
    ca_put(names["char"], 200)
    ca_put(names["enum"], 2)
    ca_put(names["str"], "running")
    ca_put(names["wf"], [1.0, 2.0])
    ca_put(names["wf"], [3.0, 4.0, 5.0, 6.0, 7.0])  # a waveform's element count varies
    wait_until(lambda: client.status(names["long"])["stored"] >= 10, 10, "the counting record recorded")
    wait_until(lambda: client.status(names["wf"])["stored"] >= 2 and client.status(names["str"])["stored"] >= 2,
               10, "the puts recorded")
    client.stop()

    recording = read_recording(client.export("ca.npz"))
    for key, code in SCALARS.items():
        recorded = recording.pvs[names[key]]
        kind = "enum" if key == "enum" else "string" if key == "str" else "scalar"
        assert (recorded.kind, recorded.code) == (kind, code), key
    last = {key: recording.pvs[names[key]].columns["value"][-1] for key in SCALARS}
    assert (last["short"], last["float"], last["char"], last["enum"], last["str"]) == (-7, 2.5, 200, 2, "running")
    assert recording.pvs[names["enum"]].choices == ["Off", "On", "Fault"]
    assert list(recording.pvs[names["enum"]].columns["value"]) == [1, 2]
    assert list(recording.pvs[names["str"]].columns["value"]) == ["ready", "running"]
    assert recording.pvs[names["ai"]].units == "mm" and recording.pvs[names["long"]].units == "counts"

    # alarms as the IOC raised them (status 4 HIGH, 3 HIHI), after the record's initial UDF INVALID
    ai = recording.pvs[names["ai"]].columns
    assert list(ai["value"][-3:]) == [1.0, 6.0, 11.0]
    assert list(zip(ai["severity"][-3:], ai["status"][-3:])) == [(0, 0), (1, 4), (2, 3)]
    # the IOC's own timestamps: the last sample of a record that no longer processes is the
    # IOC's current value, timestamp to the nanosecond
    for key in ("str", "enum", "wf"):
        served = channel_access().get(names[key], 5.0)
        secs, nsec = served.raw_stamp
        assert recording.pvs[names[key]].columns["time_ns"][-1] == secs * 1_000_000_000 + nsec, key
    # the counting record: every update, in order
    counts = recording.pvs[names["long"]].columns["value"]
    assert list(np.diff(counts)) == [1] * (len(counts) - 1)
    waveform = recording.pvs[names["wf"]]
    assert waveform.kind == "waveform" and waveform.units == "V"
    assert list(waveform.columns["length"][-2:]) == [2, 5]
    assert list(waveform.columns["value"][-1][:5]) == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert [event.kind for event in recording.pvs[names["ai"]].events][:1] == ["connected"]


def test_an_ioc_restart_leaves_a_marker_and_recording_resumes(prefix, ca_ioc, run_device, tmp_path):
    name = f"{prefix}:ca:long"
    client = collector(run_device, prefix, tmp_path, input_pvs=[f"ca://{name}"])
    client.start()
    wait_until(lambda: client.status(name)["stored"] >= 5, 10, "recording")
    ca_ioc.kill_and_restart(lambda: client.status(name))
    client.stop()
    status = client.status(name)
    assert status["disconnects"] == 1 and status["connected"] is False  # stopped: the monitor closed
    columns = client.data(name)
    gaps = np.flatnonzero((columns["severity"] == INVALID) & (columns["status"] == CLIENT))
    assert len(gaps) == 1 and 0 < gaps[0] < len(columns["value"]) - 1
    assert columns["value"][gaps[0]] == 0  # an integer PV's marker
    kinds = [event.kind for event in read_recording(client.export("restart.npz")).pvs[name].events]
    assert kinds[:3] == ["connected", "disconnected", "connected"]


def test_ca_and_pva_inputs_in_one_collector(prefix, ca_ioc, sources, run_device, tmp_path):
    ca_name, pva_name = f"{prefix}:ca:long", sources.name("double")
    client = collector(run_device, prefix, tmp_path, input_pvs=[f"ca://{ca_name}", f"pva://{pva_name}"])
    client.start()
    wait_until(lambda: client.status(pva_name)["connected"], 10, "the PVA input connected")
    sources.post("double", 2.5)
    wait_until(lambda: client.status(ca_name)["stored"] >= 3 and client.status(pva_name)["stored"] >= 2, 10,
               "both recorded")
    client.stop()
    assert client.data(pva_name)["value"][-1] == 2.5
    assert client.data(f"ca://{ca_name}")["value"][-1] > 0  # the name as written works too
    assert set(client.recording().pvs) == {ca_name, pva_name}  # OUT:<name> without the scheme


@pytest.mark.parametrize("name, reason", [
    ("ca://", "input PV 'ca://' names no PV after ca://"),
    ("xx://a", "unknown protocol 'xx' in input PV 'xx://a': write ca://NAME, pva://NAME or a bare NAME"),
    ("ca://a b", "invalid PV name 'ca://a b': a PV name has no spaces"),
])
def test_bad_names_are_refused_and_nothing_changes(prefix, ctxt, run_device, tmp_path, name, reason):
    client = collector(run_device, prefix, tmp_path, input_pvs=["keep:me"])
    with pytest.raises(RemoteError, match="invalid CONFIG") as refused:
        ctxt.put(f"{client.prefix}:CONFIG", {"input_pvs": ["ok:one", name]})
    assert reason in str(refused.value)
    assert client.config["input_pvs"] == ["keep:me"]


def test_the_same_pv_twice_through_two_protocols_is_a_duplicate(prefix, ctxt, run_device, tmp_path):
    client = collector(run_device, prefix, tmp_path)
    with pytest.raises(RemoteError, match="duplicate input PV"):
        ctxt.put(f"{client.prefix}:CONFIG", {"input_pvs": ["a:b", "ca://a:b"]})


def test_a_bare_name_only_ca_serves_gets_a_hint(prefix, ca_ioc, run_device, tmp_path):
    name = f"{prefix}:ca:long"
    client = collector(run_device, prefix, tmp_path, input_pvs=[name])
    client.start()
    wait_until(lambda: client.status(name)["last_event"].startswith("unanswered"), 15, "the hint")
    assert client.status(name)["last_event"] == (
        f"unanswered no PVAccess server answered {name} within 5 s; if it is served by Channel Access "
        f"only, name it ca://{name}")
    assert client.status(name)["received"] == 0
