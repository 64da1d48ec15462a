"""Bounded work (issue 17), attacked as a client would: a flood of puts, a CONFIG of tens of
thousands of PVs, endless annotations, many EXPORTs at once. Each is refused with a clear
message or bounded, and CLOSE still works at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from p4p.client.thread import Context

from epics_meta_devices._handler_queue import MAX_QUEUED_REQUESTS
from epics_meta_devices.testing import SourcePVs, wait_until

pytest.importorskip("emd_collector")
from emd_collector import CollectorClient  # noqa: E402
from emd_collector._device import MAX_EXPORTS, MAX_INPUT_PVS  # noqa: E402

TEST_PLUGINS = "emd_test_devices,emd_process_control_devices,emd_slow_exporter"


def put_all(ctxt: Context, name: str, values: list, timeout: float) -> list:
    """Put every value of `values` to `name` at once (p4p sends them concurrently): each
    result, None or the exception."""
    return ctxt.put([name] * len(values), values, timeout=timeout, throw=False)


def test_a_flood_is_refused_as_busy_and_close_does_not_wait(prefix, run_device, ctxt):
    device = run_device("test.Hang", prefix, env={"EMD_PLUGINS": TEST_PLUGINS})
    hung = put_all(ctxt, f"{prefix}:HANG", [1], timeout=1.0)  # its handler never returns
    assert isinstance(hung[0], TimeoutError)
    results = put_all(ctxt, f"{prefix}:ENABLE", [False] * (MAX_QUEUED_REQUESTS + 36), timeout=5.0)
    busy = [r for r in results if "busy" in str(r)]
    waiting = [r for r in results if isinstance(r, TimeoutError)]
    # the queue also holds the device's own work (its heartbeat, connection callbacks)
    assert len(busy) + len(waiting) == len(results) and MAX_QUEUED_REQUESTS - 4 <= len(waiting) <= MAX_QUEUED_REQUESTS
    assert f"busy: {MAX_QUEUED_REQUESTS} requests are already waiting for this device" in str(busy[0])
    started = time.monotonic()
    with Context("pva", nt=False) as other:  # somebody else closes it, behind all that
        other.put(f"{prefix}:CLOSE", True, timeout=5.0)
    assert time.monotonic() - started < 2.0
    device.wait_for_state("closed", timeout=5)


def collector(run_device, prefix: str, data_root: Path, **config) -> CollectorClient:
    base = run_device("collect.Collector", f"{prefix}:coll", config={"publish_period": 0.1, **config},
                      env={"EMD_DATA_ROOT": str(data_root), "EMD_PLUGINS": TEST_PLUGINS})
    return CollectorClient(base.prefix)


def test_input_pvs_are_capped_and_checked_in_linear_time(prefix, run_device, ctxt, tmp_path):
    client = collector(run_device, prefix, tmp_path, input_pvs=["keep:me"])
    too_many = [f"p{n}" for n in range(MAX_INPUT_PVS + 1)]
    with pytest.raises(Exception, match=f"input_pvs: {MAX_INPUT_PVS + 1} PVs, more than the {MAX_INPUT_PVS}"):
        ctxt.put(f"{client.prefix}:CONFIG", {"input_pvs": too_many}, timeout=10)
    duplicated = [f"p{n}" for n in range(MAX_INPUT_PVS - 2)] + ["p7", "p42"]
    with pytest.raises(Exception, match=r"duplicate input PV\(s\) p42, p7"):
        ctxt.put(f"{client.prefix}:CONFIG", {"input_pvs": duplicated}, timeout=10)  # quadratic: ~10 s
    assert client.config["input_pvs"] == ["keep:me"]


def test_annotations_are_bounded_and_shown_within_a_publish_period(prefix, run_device, ctxt, tmp_path):
    client = collector(run_device, prefix, tmp_path, max_annotations=3)
    for n in range(3):
        client.annotate(f"k{n}", "v")
    wait_until(lambda: list(client.get_pv("ANNOTATIONS").value.key) == ["k0", "k1", "k2"], 5, "ANNOTATIONS")
    with pytest.raises(Exception, match="3 annotations already, the most this collector keeps"):
        client.annotate("k3", "v")
    client.clear()
    with pytest.raises(Exception, match="a key has at most 128 characters and a value at most 4096"):
        client.annotate("k", "v" * 5000)
    client.annotate("after", "clear")
    wait_until(lambda: list(client.get_pv("ANNOTATIONS").value.key) == ["after"], 5, "ANNOTATIONS after CLEAR")
    assert ctxt.get(f"{client.prefix}:ANNOTATE").key == ""  # keeps no request


@pytest.fixture
def sources(prefix):
    served = SourcePVs(prefix)
    yield served
    served.stop()


def test_exports_at_once_are_bounded_and_export_keeps_no_request(prefix, run_device, ctxt, sources, tmp_path):
    client = collector(run_device, prefix, tmp_path, input_pvs=[sources.name("double")])
    client.start()
    wait_until(lambda: client.status()["stored"] >= 1, 10, "recorded")
    requests = [{"path": f"run{n}.slow", "options": '{"seconds": 3}'} for n in range(MAX_EXPORTS + 4)]
    results = put_all(ctxt, f"{client.prefix}:EXPORT", requests, timeout=20)
    refused = [r for r in results if r is not None]
    assert len(refused) == 4 and all(f"busy: {MAX_EXPORTS} EXPORTs are running or waiting" in str(r) for r in refused)
    assert len(list(tmp_path.glob("run*.slow"))) == MAX_EXPORTS
    # EXPORT reads back empty: a read-modify-write put cannot export again; EXPORT_STATUS says what was written
    assert ctxt.get(f"{client.prefix}:EXPORT").todict() == {"path": "", "format": "", "options": ""}
    with pytest.raises(Exception, match="a path is needed"):
        ctxt.put(f"{client.prefix}:EXPORT", ctxt.get(f"{client.prefix}:EXPORT"), timeout=5)
    status = ctxt.get(f"{client.prefix}:EXPORT_STATUS")
    assert Path(status.path).parent == tmp_path and status.format == "slow" and status.samples >= 1
