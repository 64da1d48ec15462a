"""collect.Collector through its PVs and CollectorClient, recording a real IOC and p4p sources.
The collector always runs in its own process."""

from __future__ import annotations

import ast
import re

import math
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from p4p.client.thread import RemoteError
from p4p.nt import NTScalar

import epics_meta_devices as emd
from emd_collector import CollectorClient, load_npz
from epics_meta_devices.testing import DeviceProcess, foreign_environment, script_process, wait_until


def status(client, pv=None):
    return client.status(pv)


def collector(run_device, prefix, data_root=None, **config) -> CollectorClient:
    """A collector of CONFIG `config`, with the host's data root `data_root` (EMD_DATA_ROOT)."""
    env = {"EMD_DATA_ROOT": str(data_root)} if data_root is not None else None
    base = run_device("collect.Collector", f"{prefix}:coll", config={"publish_period": 0.1, **config}, env=env)
    return CollectorClient(base.prefix)


def test_seed_using_a_device_against_an_ioc(prefix, ioc, ctxt, tmp_path):
    """The seed's snippet as written (only the PV names carry the test's prefix)."""
    x, y = f"{prefix}:circle:x", f"{prefix}:circle:y"
    with script_process(textwrap.dedent(f"""
        import epics_meta_devices as emd
        ping_device = emd.devices.collect.Collector({prefix + ':mycollector'!r})
        print("serving", flush=True)
        ping_device.wait_closed()
    """), tmp_path) as process:
        mycollector = f"{prefix}:mycollector"
        ctxt.put(f"{mycollector}:CONFIG", {"input_pvs": [x, y]})
        ctxt.put(f"{mycollector}:ENABLE", True)
        wait_until(lambda: len(ctxt.get(f"{mycollector}:OUT:{x}").history) >= 10, 10, "10 samples of x")
        history = ctxt.get(f"{mycollector}:OUT:{x}").history
        values = [v.value for v in history]
        angles = [round(math.degrees(math.acos(v))) for v in values]
        assert all(a % 10 == 0 for a in angles), values  # cos of the IOC's 10-degree steps
        first = history[0]
        assert first.alarm.severity == 0 and first.timeStamp.secondsPastEpoch > 1_700_000_000
        ctxt.put(f"{mycollector}:ENABLE", False)
        ctxt.put(f"{mycollector}:CLOSE", True)
        assert process.wait(10) == 0


def test_collector_created_through_a_factory(prefix, ioc, ctxt):
    factory = DeviceProcess("factory.DeviceFactory", f"{prefix}:factory", cli=["factory", "run", f"{prefix}:factory"])
    factory.start()
    try:
        with emd.FactoryClient(f"{prefix}:factory") as factories:
            coll = factories.create("collect.Collector", f"{prefix}:fc", {"input_pvs": [f"{prefix}:circle:x"]})
            assert isinstance(coll, CollectorClient)
            ctxt.put(f"{prefix}:fc:ENABLE", True)
            wait_until(lambda: len(ctxt.get(f"{prefix}:fc:OUT:{prefix}:circle:x").history) >= 5, 10, "5 samples")
            assert all(-1 <= v.value <= 1 for v in ctxt.get(f"{prefix}:fc:OUT:{prefix}:circle:x").history)
    finally:
        factory.stop()


def test_every_type_is_recorded_as_served(prefix, sources, run_device):
    client = collector(run_device, prefix, input_pvs=[sources.name(k) for k in sources.KINDS])
    client.start()
    wait_until(lambda: client.status()["connected"] == len(sources.KINDS), 10, "all sources connected")
    sent = {
        "double": [1.5, -2.25], "float": [0.5, 1.25], "int32": [-7, 2**31 - 1], "int64": [2**40, -(2**40)],
        "uint8": [255, 3], "bool": [True, False], "string": ["hello", "wörld"],
        "waveform": [np.arange(4.0), np.array([9.0, 8.0])],  # shorter update: padded, length kept
        "enum": [2, 1],
    }
    for kind, values in sent.items():
        for value in values:
            sources.post(kind, value)
    wait_until(lambda: client.status()["stored"] == len(sources.KINDS) * 3, 10, "every update stored")
    dtypes = {"double": "f8", "float": "f4", "int32": "i4", "int64": "i8", "uint8": "u1", "bool": "?", "enum": "i4"}
    for kind, values in sent.items():
        data = client.data(sources.name(kind))
        recorded = list(data["value"][1:])  # [0] is the value served at connection
        if kind == "waveform":
            assert data["value"].shape == (3, 4) and list(data["length"]) == [4, 4, 2]
            assert list(recorded[0]) == [0, 1, 2, 3] and list(recorded[1]) == [9, 8, 0, 0]
            continue
        assert recorded == values, kind
        if kind in dtypes:
            assert data["value"].dtype == np.dtype(dtypes[kind]), kind
    out = client.get(sources.name("enum"))
    assert list(out.choices) == ["off", "on", "auto"] and out.kind == "enum"
    assert [v.value for v in client.get(sources.name("string")).history] == ["", "hello", "wörld"]
    table = client.get_pv(f"OUT:{sources.name('double')}:TABLE")
    assert table.getID() == "epics:nt/NTTable:1.0" and list(table.value.value) == [0.0, 1.5, -2.25]


def test_alarms_are_served_as_changes_and_per_sample(prefix, sources, run_device):
    name = sources.name("double")
    client = collector(run_device, prefix, input_pvs=[name])
    client.start()
    wait_until(lambda: client.status(name)["stored"] == 1, 10, "the value at connection")
    for value, severity, status in [(1.0, 0, 0), (2.0, 2, 3), (3.0, 2, 3), (4.0, 1, 3), (5.0, 0, 0)]:
        sources.post("double", {"value": value, "alarm": {"severity": severity, "status": status}})
    wait_until(lambda: client.status(name)["stored"] == 6, 10, "every update stored")
    out = client.get(name, request="field(alarm_row,alarm_severity,alarm_status)")
    assert (list(out.alarm_row), list(out.alarm_severity), list(out.alarm_status)) == \
        ([0, 2, 4, 5], [0, 2, 1, 0], [0, 3, 3, 0])
    data = client.data(name)
    assert list(data["severity"]) == [0, 0, 2, 2, 1, 0] and list(data["status"]) == [0, 0, 3, 3, 3, 0]
    # every element, NO_ALARM ones too (the collector leaves those unset in the structures it
    # makes, and they must still read as 0, also after an alarm)
    assert [(v.alarm.severity, v.alarm.status) for v in client.get(name).history] == \
        [(0, 0), (0, 0), (2, 3), (2, 3), (1, 3), (0, 0)]
    table = client.get_pv(f"OUT:{name}:TABLE")
    assert list(table.value.severity) == [0, 0, 2, 2, 1, 0]
    assert np.array_equal(table.value.time_ns, data["time_ns"]) and np.allclose(table.value.time, data["time"])


def test_a_burst_is_recorded_without_loss(prefix, sources, run_device):
    client = collector(run_device, prefix, input_pvs=[sources.name("int64")], queue_size=10000)
    client.start()
    wait_until(lambda: client.status()["connected"] == 1, 10, "connected")
    for n in range(1, 20001):
        sources.post("int64", n)
    wait_until(lambda: client.status()["received"] == 20001, 20, "20000 updates received")
    totals = client.status()
    assert totals["stored"] == 20001 and totals["dropped"] == 0
    assert np.array_equal(client.data(sources.name("int64"))["value"], np.arange(20001))


def test_history_holds_the_newest_samples_columns_hold_all(prefix, sources, run_device):
    name = sources.name("double")
    client = collector(run_device, prefix, input_pvs=[name], history_limit=5)
    client.start()
    wait_until(lambda: client.status(name)["connected"], 10, "connected")
    for n in range(1, 21):
        sources.post("double", float(n))
    wait_until(lambda: client.status(name)["stored"] == 21, 10, "stored")
    out = client.get(name)
    assert [v.value for v in out.history] == [16.0, 17.0, 18.0, 19.0, 20.0]
    assert list(out.value) == [float(n) for n in range(21)]


def test_watched_history_stays_exact_across_rebuilds_and_clear(prefix, sources, ctxt, run_device):
    """While a monitor watches OUT, each rebuild adds only the new samples to ``history``: the
    monitor must still see exactly the newest history_limit samples after every batch, also
    after CLEAR (a new buffer) and when a batch is longer than the limit."""
    name = sources.name("double")
    client = collector(run_device, prefix, input_pvs=[name], history_limit=7)
    client.start()
    wait_until(lambda: client.status(name)["connected"], 10, "connected")
    seen = []
    monitor = ctxt.monitor(f"{client.prefix}:OUT:{name}", seen.append)
    try:
        expected = [0.0]  # the source's initial value
        for batch in (3, 2, 12, 1, 5):
            values = [float(len(expected) + i) for i in range(batch)]
            for v in values:
                sources.post("double", v)
            expected += values
            wait_until(lambda: seen and list(seen[-1].value) == expected, 10, f"{len(expected)} samples in OUT")
            assert [v.value for v in seen[-1].history] == expected[-7:]
        client.clear()
        wait_until(lambda: seen and len(seen[-1].value) == 0, 10, "OUT emptied by CLEAR")
        for v in (100.0, 101.0):
            sources.post("double", v)
        wait_until(lambda: seen and list(seen[-1].value) == [100.0, 101.0], 10, "new samples after CLEAR")
        assert [v.value for v in seen[-1].history] == [100.0, 101.0]
    finally:
        monitor.close()


def test_watched_history_holds_no_more_than_the_ring(prefix, sources, ctxt, run_device):
    """history_limit above max_samples: a watched OUT's history follows the ring as it drops
    the oldest samples (it once kept them, growing to history_limit: the soak's memory growth)."""
    name = sources.name("double")
    client = collector(run_device, prefix, input_pvs=[name], max_samples=5, history_limit=100)
    client.start()
    wait_until(lambda: client.status(name)["connected"], 10, "connected")
    seen = []
    monitor = ctxt.monitor(f"{client.prefix}:OUT:{name}", seen.append)
    try:
        for batch in range(4):
            for v in range(5 * batch + 1, 5 * batch + 6):
                sources.post("double", float(v))
            last = 5.0 * batch + 5
            wait_until(lambda: seen and seen[-1].value[-1] == last, 10, f"{last} in OUT")
            assert [v.value for v in seen[-1].history] == list(seen[-1].value) == [last - 4 + i for i in range(5)]
    finally:
        monitor.close()


def test_ring_buffer_drops_oldest_and_counts(prefix, sources, run_device):
    client = collector(run_device, prefix, input_pvs=[sources.name("double")], max_samples=10)
    client.start()
    wait_until(lambda: client.status()["connected"] == 1, 10, "connected")
    for n in range(1, 25):
        sources.post("double", float(n))
    wait_until(lambda: client.status()["received"] == 25, 10, "25 received")
    pv_status = client.status(sources.name("double"))
    assert (pv_status["stored"], pv_status["dropped"], pv_status["samples"]) == (25, 15, 10)
    assert list(client.data(sources.name("double"))["value"]) == [float(n) for n in range(15, 25)]


def test_disable_keeps_enable_appends_clear_empties(prefix, sources, run_device):
    name = sources.name("double")
    client = collector(run_device, prefix, input_pvs=[name])
    client.start()
    wait_until(lambda: client.status()["connected"] == 1, 10, "connected")
    sources.post("double", 1.0)
    wait_until(lambda: client.status()["stored"] == 2, 10, "2 stored")
    client.stop()
    sources.post("double", 2.0)  # not recorded: disabled
    assert list(client.data(name)["value"]) == [0.0, 1.0]
    client.start()  # the current value (2.0) arrives on connection, then new ones
    wait_until(lambda: client.status(name)["stored"] == 3, 10, "reconnected")
    sources.post("double", 3.0)
    # STATUS is posted just before OUT at each publish: wait for the data itself
    wait_until(lambda: list(client.data(name)["value"]) == [0.0, 1.0, 2.0, 3.0], 10, "4 stored")
    client.clear()
    assert client.status()["samples"] == 0 and len(client.data(name)["value"]) == 0


def test_ioc_restart_mid_recording(prefix, ioc, run_device):
    name = f"{prefix}:circle:angle"
    client = collector(run_device, prefix, input_pvs=[name])
    client.start()
    wait_until(lambda: client.status(name)["stored"] >= 5, 10, "recording")
    ioc.stop()
    wait_until(lambda: not client.status(name)["connected"], 10, "disconnect noticed")
    before = client.status(name)["stored"]
    ioc.start()
    wait_until(lambda: client.status(name)["stored"] >= before + 5, 20, "recording resumed by itself")
    pv_status = client.status(name)
    assert pv_status["connected"] and pv_status["disconnects"] == 1
    assert client.state is emd.DeviceState.running


def test_missing_pv_is_reported_and_the_rest_recorded(prefix, sources, run_device):
    client = collector(run_device, prefix, input_pvs=[f"{prefix}:does:not:exist", sources.name("double")])
    client.start()
    wait_until(lambda: client.status(sources.name("double"))["connected"], 10, "the existing PV connected")
    sources.post("double", 4.0)
    wait_until(lambda: client.status(sources.name("double"))["stored"] == 2, 10, "the existing PV recorded")
    missing = client.status(f"{prefix}:does:not:exist")
    assert missing["connected"] is False and missing["stored"] == 0
    assert client.status()["connected"] == 1


@pytest.mark.parametrize(
    "config, reason",
    [
        ({"input_pvs": ["a:b", "a:b"]}, "duplicate input PV(s) a:b"),
        ({"input_pvs": ["has space"]}, "invalid PV name 'has space': a PV name has no spaces"),
        ({"input_pvs": [""]}, "an input PV name is empty"),
        ({"max_samples": 0}, "max_samples must be between 1 and 100000000, got 0"),
        ({"max_samples": -5}, "max_samples must be between 1 and 100000000, got -5"),
        ({"max_samples": 100_000_000, "input_pvs": ["a", "b"]}, "more than memory_limit_mb=2048"),
        ({"publish_period": 0}, "publish_period must be between"),
        ({"history_limit": 0}, "history_limit must be between 1 and 100000, got 0"),
        ({"history_limit": 100_001}, "history_limit must be between 1 and 100000, got 100001"),
        ({"max_events": 0}, "max_events must be between 1 and 100000, got 0"),
        ({"queue_size": 1}, "queue_size must be between 4"),
        ({"decimate_mode": "median"}, "CONFIG field 'decimate_mode' expects one of 'mean', 'min', 'max', 'last', got 'median'"),
        ({"input_pvs": ["a"], "pv_options": ["a decimate=x"]}, "invalid literal"),
        ({"input_pvs": ["a"], "pv_options": ["a colour=red"]}, "pv_options 'a colour=red'"),
    ],
)
def test_bad_config_is_refused_and_nothing_changes(prefix, ctxt, run_device, config, reason):
    client = collector(run_device, prefix, input_pvs=["keep:me"])
    before = client.config
    with pytest.raises(RemoteError) as refused:
        ctxt.put(f"{client.prefix}:CONFIG", config)
    assert reason in str(refused.value)
    assert client.config == before and client.state is emd.DeviceState.ready


def test_type_change_mid_recording_keeps_what_was_recorded(prefix, sources, run_device):
    name = sources.name("double")
    client = collector(run_device, prefix, input_pvs=[name])
    client.start()
    wait_until(lambda: client.status(name)["connected"], 10, "connected")
    sources.post("double", 1.0)
    wait_until(lambda: client.status(name)["stored"] == 2, 10, "2 stored")
    sources.retype("double", NTScalar("s"), "now a string")
    wait_until(lambda: client.status(name)["type_changes"] == 1, 10, "type change noticed")
    sources.retype("double", NTScalar("i"), 7)  # numeric again: converted and kept
    wait_until(lambda: client.status(name)["stored"] == 3, 10, "numeric value kept")
    pv_status = client.status(name)
    assert pv_status["rejected"] == 1 and pv_status["type_changes"] == 2
    # a retype closes the source PV: each reconnection left a gap marker (INVALID, NaN)
    columns = client.data(name)
    values = columns["value"][columns["severity"] != 3]
    assert list(values) == [0.0, 1.0, 7.0] and pv_status["disconnects"] == 2
    assert np.isnan(columns["value"][columns["severity"] == 3]).sum() == 2


def test_timestamps_going_backwards_are_kept_and_counted(prefix, sources, run_device):
    name = sources.name("double")
    client = collector(run_device, prefix, input_pvs=[name])
    client.start()
    wait_until(lambda: client.status(name)["connected"], 10, "connected")
    now = time.time()
    for value, stamp in ((1.0, now + 10), (2.0, now + 5), (3.0, now + 20)):
        sources.post("double", value, timestamp=stamp)
    wait_until(lambda: client.status(name)["stored"] == 4, 10, "4 stored")
    assert client.status(name)["time_reversals"] == 1
    assert list(client.data(name)["value"]) == [0.0, 1.0, 2.0, 3.0]  # arrival order


def test_history_range_query_with_min_max_decimation(prefix, sources, run_device):
    name = sources.name("double")
    client = collector(run_device, prefix, input_pvs=[name])
    client.start()
    wait_until(lambda: client.status(name)["connected"], 10, "connected")
    start = 1_800_000_000.0
    for n in range(100):
        sources.post("double", float(np.sin(n / 5) * n), timestamp=start + n)
    wait_until(lambda: client.status(name)["stored"] == 101, 10, "stored")
    window = client.history(name, start=start + 10, end=start + 19)
    assert list(window["time_ns"]) == [(int(start) + n) * 10**9 for n in range(10, 20)]
    reduced = client.history(name, start=start, max_points=20)
    values = client.data(name)["value"][1:]
    assert len(reduced["value"]) <= 20
    assert reduced["value"].max() == values.max() and reduced["value"].min() == values.min()
    assert np.all(np.diff(reduced["time"]) > 0)
    with pytest.raises(emd.DeviceError, match="'nope' is not recorded here"):
        client.history("nope")


def test_decimation_and_deadband(prefix, sources, run_device):
    mean, band = sources.name("double"), sources.name("float")
    client = collector(run_device, prefix, input_pvs=[mean, band],
                       pv_options=[f"{mean} decimate=4 mode=mean", f"{band} deadband=0.5"])
    client.start()
    wait_until(lambda: client.status()["connected"] == 2, 10, "connected")
    for value in (1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 40.0):
        sources.post("double", value)
    for value in (0.25, 0.5, 1.0, 1.25, 3.0):
        sources.post("float", value)
    wait_until(lambda: client.status()["received"] == 14, 10, "all received")
    assert list(client.data(mean)["value"]) == [1.5, 25.0]  # (0+1+2+3)/4 (with the initial 0), (10+20+30+40)/4
    assert list(client.data(band)["value"]) == [0.0, 1.0, 3.0]
    assert client.status(band)["filtered"] == 3


def test_annotations_and_export_round_trip(prefix, sources, run_device, tmp_path):
    name = sources.name("int32")
    client = collector(run_device, prefix, input_pvs=[name], data_root=tmp_path)
    client.start()
    wait_until(lambda: client.status(name)["connected"], 10, "connected")
    for n in (5, 6, 7):
        sources.post("int32", n)
    wait_until(lambda: client.status(name)["stored"] == 4, 10, "stored")
    client.annotate("sample", "Pt(111)")
    client.annotate("operator", "ada", at=1_800_000_000.0)
    wait_until(lambda: list(client.get_pv("ANNOTATIONS").value.key) == ["sample", "operator"], 5, "ANNOTATIONS")
    written = client.export("runs/first.npz")
    assert written == str(tmp_path / "runs" / "first.npz")
    exported = load_npz(tmp_path / "runs" / "first.npz")
    assert list(exported["arrays"][f"{name}/value"]) == [0, 5, 6, 7]
    assert list(exported["arrays"]["annotations"]["key"]) == ["sample", "operator"]
    assert exported["meta"]["identity"]["prefix"] == client.prefix
    assert exported["meta"]["pvs"][name]["counters"]["stored"] == 4
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["first.npz"]  # no temporary left


@pytest.mark.parametrize(
    "path, format_, reason",
    [
        ("../escape.npz", "", "must be relative to the data directory"),
        ("/tmp/absolute.npz", "", "must be relative to the data directory"),
        ("a/../../b.npz", "", "without '..'"),
        ("", "", "a path is needed"),
        ("file.xyz", "", "cannot tell the export format of 'file.xyz'"),
        ("file.npz", "parquet", "unknown export format 'parquet' (installed: "),
    ],
)
def test_bad_export_is_refused_and_writes_nothing(prefix, sources, run_device, tmp_path, path, format_, reason):
    client = collector(run_device, prefix, input_pvs=[sources.name("double")], data_root=tmp_path / "data")
    client.start()
    wait_until(lambda: client.status()["stored"] >= 1, 10, "something recorded")
    with pytest.raises(emd.DeviceError, match="refused") as refused:
        client.export(path, format_)
    assert reason in str(refused.value)
    assert not any(tmp_path.rglob("*.npz")) and not (tmp_path / "escape.npz").exists()
    assert client.status()["stored"] >= 1  # nothing recorded was lost


def test_export_of_an_empty_collector_and_upload_without_uploader(prefix, run_device, tmp_path):
    client = collector(run_device, prefix, input_pvs=["a:b"], data_root=tmp_path)
    with pytest.raises(emd.DeviceError, match="has recorded nothing yet: nothing to export"):
        client.export("empty.npz")
    with pytest.raises(emd.DeviceError, match="no uploader 'nosuchtarget' installed"):
        client.upload("empty.npz", "nosuchtarget")


def test_emd_collect_command(prefix, ioc, tmp_path):
    out = tmp_path / "run.npz"
    result = subprocess.run(
        [sys.executable, "-m", "epics_meta_devices", "collect", f"{prefix}:circle:x", f"{prefix}:circle:y",
         "--prefix", f"{prefix}:cli", "--duration", "1.5", "--export", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "exported" in result.stdout and str(out) in result.stdout
    arrays = load_npz(out)["arrays"]
    assert len(arrays[f"{prefix}:circle:x/value"]) >= 10
    bad = subprocess.run([sys.executable, "-m", "epics_meta_devices", "collect", "bad name", "--duration", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "invalid PV name 'bad name'" in bad.stderr and "Traceback" not in bad.stderr


def test_collector_management_local_and_remote(prefix, ioc, monkeypatch):
    from emd_collector import CollectorManagement, _client

    local_factory = f"{prefix}:localfactory"
    monkeypatch.setattr(_client, "local_factory_prefix", lambda: local_factory)
    management = CollectorManagement()
    coll = management.add_collector([f"{prefix}:circle:x", f"{prefix}:circle:y"])  # starts the factory
    remote_factory = DeviceProcess("factory.DeviceFactory", f"{prefix}:remote", cli=["factory", "run", f"{prefix}:remote"])
    remote_factory.start()
    try:
        wait_until(lambda: len(coll.get(f"{prefix}:circle:x").history) >= 5, 10, "local collector recording")
        xs = coll.get(f"{prefix}:circle:x").history
        assert all(-1 <= v.value <= 1 for v in xs)
        rcoll = management.add_collector([f"{prefix}:circle:angle"], type="remote", url=f"{prefix}:remote")
        wait_until(lambda: len(rcoll.get(f"{prefix}:circle:angle").history) >= 3, 10, "remote collector recording")
        rcoll.close()
        coll.close()
        with pytest.raises(emd.DeviceError, match="a remote collector needs url"):
            management.add_collector(["x"], type="remote")
    finally:
        remote_factory.stop()
        with emd.FactoryClient(local_factory) as started:
            started.close()


def test_demo_runs_end_to_end(tmp_path):
    """The collector half of `make demo`, the whole chain: IOC, factory, a processor and a
    collector created through it, history, HDF5 export, upload to a directory, a plot, delete;
    from a shell whose EPICS_PVAS_*/EPICS_CAS_* settings are foreign."""
    result = subprocess.run([sys.executable, "-m", "emd_collector.demo", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, **foreign_environment()})
    assert result.returncode == 0, result.stdout + result.stderr
    types = re.search(r"DEVICETYPES = (\[.*\])", result.stdout)
    assert types and {"collect.Collector", "calc.Calc", "ping.Ping"} <= set(ast.literal_eval(types.group(1)))
    radius = re.search(r"radius:VAL = ([0-9.]+)", result.stdout)
    assert radius and float(radius.group(1)) == pytest.approx(1.0, abs=1e-3)
    assert ", dropped 0" in result.stdout and "devices left: []" in result.stdout
    assert "UPLOAD_STATUS: done" in result.stdout
    assert "   factory process exited with 0\n\nDone. Open " in result.stdout
    exported = tmp_path / "out/data/circle.h5"
    assert (tmp_path / "out/share/circle.h5").read_bytes() == exported.read_bytes()
    assert (tmp_path / "out/circle.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


FLAKY_UPLOADER = '''
import shutil
from pathlib import Path

import epics_meta_devices as emd

calls = {}


class FlakyUploader:
    """Test uploader: fails `fail_times` times (retry=True), or always (`permanent`), then copies."""

    name = "flaky"

    def check(self, path, options):
        unknown = set(options) - {"destination", "fail_times", "permanent"}
        if unknown:
            raise ValueError(f"unknown option {', '.join(sorted(unknown))}")

    def upload(self, path, options, progress):
        key = str(path)
        calls[key] = calls.get(key, 0) + 1
        if options.get("permanent"):
            raise emd.UploadError("target refused the file", retry=False)
        if calls[key] <= options.get("fail_times", 0):
            raise emd.UploadError(f"server error 503 (attempt {calls[key]})", retry=True)
        size = path.stat().st_size
        progress(size, size)
        return shutil.copy(path, Path(options["destination"]) / path.name)


@emd.hookimpl
def emd_uploaders():
    return [FlakyUploader()]
'''


@pytest.fixture
def uploading_collector(prefix, sources, run_device, tmp_path):
    """A recording collector that has an uploader plugin, and a file to upload."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "emd_flaky.py").write_text(FLAKY_UPLOADER)
    env = {"EMD_PLUGINS": "emd_flaky", "PYTHONPATH": f"{tmp_path / 'plugins'}:{os.environ.get('PYTHONPATH', '')}",
           "EMD_DATA_ROOT": str(tmp_path / "data")}
    run_device("collect.Collector", f"{prefix}:coll", env=env,
               config={"input_pvs": [sources.name("double")], "upload_backoff": 0.1})
    client = CollectorClient(f"{prefix}:coll")
    client.start()
    wait_until(lambda: client.status()["stored"] >= 1, 10, "something recorded")
    client.export("run.npz")
    (tmp_path / "share").mkdir()
    return client, tmp_path


def test_upload_runs_in_background_and_retries(uploading_collector):
    client, tmp_path = uploading_collector
    client.upload("run.npz", "flaky", destination=str(tmp_path / "share"), fail_times=2)
    status = client.wait_for_upload(30)
    assert status["state"] == "done" and status["attempt"] == 3
    assert status["location"] == str(tmp_path / "share" / "run.npz")
    assert (tmp_path / "share" / "run.npz").read_bytes() == (tmp_path / "data" / "run.npz").read_bytes()
    assert client.state is emd.DeviceState.running  # recording went on


def test_upload_failures_are_reported_and_the_recording_stays(uploading_collector):
    client, tmp_path = uploading_collector
    client.upload("run.npz", "flaky", destination=str(tmp_path / "share"), permanent=True)
    status = client.wait_for_upload(30)
    assert (status["state"], status["attempt"], status["message"]) == ("failed", 1, "target refused the file")
    client.upload("run.npz", "flaky", destination=str(tmp_path / "share"), fail_times=10)
    status = client.wait_for_upload(30)
    assert status["state"] == "failed" and status["attempt"] == 4 and "server error 503" in status["message"]
    assert (tmp_path / "data" / "run.npz").exists() and client.status()["stored"] >= 1


@pytest.mark.parametrize(
    "path, target, options, reason",
    [
        ("run.npz", "nope", {}, "no uploader 'nope' installed (installed: "),
        ("gone.npz", "flaky", {}, "no such file in the data directory"),
        ("../run.npz", "flaky", {}, "must be relative to the data directory"),
        ("run.npz", "flaky", {"password": "hunter2"}, "must not carry credentials (password)"),
        ("run.npz", "flaky", {"colour": "red"}, "flaky upload: unknown option colour"),
    ],
)
def test_bad_upload_requests_are_refused(uploading_collector, path, target, options, reason):
    client, _ = uploading_collector
    with pytest.raises(emd.DeviceError, match="refused") as refused:
        client.upload(path, target, **options)
    assert reason in str(refused.value) and "hunter2" not in client.upload_status()["message"]
    assert client.upload_status()["state"] == "idle"


def test_updates_that_do_not_fit_are_rejected_never_fatal(prefix, sources, run_device):
    """Longer waveforms widen the buffer; an overflowing value or an odd type is rejected and
    counted; the collector keeps recording."""
    wave, small = sources.name("waveform"), sources.name("uint8")
    client = collector(run_device, prefix, input_pvs=[wave, small])
    client.start()
    wait_until(lambda: client.status()["connected"] == 2, 10, "connected")
    sources.post("waveform", np.arange(6.0))  # longer than the first (4): the buffer widens
    sources.retype("uint8", NTScalar("i"), 300)  # numeric, but does not fit a uint8: rejected
    wait_until(lambda: client.status(small)["rejected"] == 1, 10, "overflow rejected")
    sources.retype("uint8", NTScalar("as"), ["a", "b"])  # not numeric at all: rejected
    wait_until(lambda: client.status(small)["rejected"] == 2, 10, "string array rejected")
    data = client.data(wave)
    assert data["value"].shape == (2, 6) and list(data["length"]) == [4, 6]
    assert list(data["value"][1]) == [0, 1, 2, 3, 4, 5] and list(data["value"][0]) == [0, 0, 0, 0, 0, 0]
    small_data = client.data(small)  # each retype closed the source: a gap marker (INVALID) each
    assert list(small_data["value"][small_data["severity"] != 3]) == [0]  # nothing half-stored
    assert list(small_data["severity"]) == [0, 3, 3]
    assert client.state is emd.DeviceState.running
    sources.post("waveform", np.arange(2.0))
    wait_until(lambda: client.status(wave)["stored"] == 3, 10, "still recording")


def test_a_widening_waveform_stays_within_the_memory_guard(prefix, sources, run_device):
    """A much longer waveform row gets the memory guard's sample limit for the new width: the
    oldest rows beyond it are dropped and counted, the newest kept, memory stays bounded."""
    wave = sources.name("waveform")
    client = collector(run_device, prefix, input_pvs=[wave], max_samples=1000, memory_limit_mb=1)
    client.start()
    wait_until(lambda: client.status(wave)["stored"] == 1, 10, "first (4 elements)")
    for n in range(1, 10):
        sources.post("waveform", np.full(4, float(n)))
    wait_until(lambda: client.status(wave)["stored"] == 10, 10, "ten narrow rows")
    wide = np.arange(20_000.0)  # 160,016 bytes a sample: 1 MiB holds 6
    sources.post("waveform", wide)
    wait_until(lambda: client.status(wave)["stored"] == 11, 10, "the wide row")
    status = client.status(wave)
    assert status["dropped"] == 5 and status["last_event"].startswith("limited buffer limited to 6 samples")
    assert client.status()["memory_bytes"] <= 2**20
    data = client.data(wave)
    assert data["value"].shape == (6, 20_000) and list(data["length"]) == [4] * 5 + [20_000]
    assert [row[0] for row in data["value"][:5]] == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert np.array_equal(data["value"][5], wide)


def test_the_event_list_keeps_the_newest_max_events(prefix, sources, run_device, tmp_path):
    """A PV whose every update is rejected adds an event each: the list keeps the newest
    max_events, the counters count them all."""
    small = sources.name("uint8")
    client = collector(run_device, prefix, input_pvs=[small], max_events=3, data_root=tmp_path)
    client.start()
    wait_until(lambda: client.status(small)["stored"] == 1, 10, "first sample")
    sources.retype("uint8", NTScalar("as"), ["x1"])  # not storable: rejected, an event each
    wait_until(lambda: client.status(small)["rejected"] == 1, 10, "first rejected")
    for n in range(2, 7):
        sources.post("uint8", [f"x{n}"])
        wait_until(lambda: client.status(small)["rejected"] == n, 10, f"update {n} rejected")
    events = load_npz(client.export("events.npz"))["arrays"][f"{small}/events"]
    assert [str(kind) for kind in events["kind"]] == ["rejected"] * 3
    assert client.status(small)["rejected"] == 6 and client.status(small)["stored"] == 1


def test_clear_applies_a_new_max_samples(prefix, sources, run_device):
    name = sources.name("double")
    client = collector(run_device, prefix, input_pvs=[name], max_samples=5)
    client.start()
    wait_until(lambda: client.status(name)["connected"], 10, "connected")
    client.stop()
    client.configure(max_samples=3)
    client.clear()
    client.start()
    wait_until(lambda: client.status(name)["stored"] == 1, 10, "reconnected")
    for n in range(1, 6):
        sources.post("double", float(n))
    wait_until(lambda: client.status(name)["stored"] == 6, 10, "stored")
    assert list(client.data(name)["value"]) == [3.0, 4.0, 5.0]


def test_string_arrays_of_varying_length(prefix, sources, run_device, tmp_path):
    """String waveforms: shorter rows are padded with empty strings, and they export."""
    name = sources.name("string")
    sources.retype("string", NTScalar("as"), ["a", "b", "c"])
    client = collector(run_device, prefix, input_pvs=[name], data_root=tmp_path)
    client.start()
    wait_until(lambda: client.status(name)["stored"] == 1, 10, "first row")
    sources.post("string", ["x"])
    sources.post("string", ["p", "q", "r", "s"])
    wait_until(lambda: client.status(name)["stored"] == 3, 10, "stored")
    assert [v.value for v in client.get(name).history] == [["a", "b", "c"], ["x"], ["p", "q", "r", "s"]]
    client.export("strings.npz")
    assert load_npz(tmp_path / "strings.npz")["arrays"][f"{name}/value"].tolist()[1] == ["x", "", "", ""]
