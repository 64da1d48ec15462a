"""Host settings no put can change (issue 17), attacked as a client would: through PVs, against
devices in their own processes started with ``--data-root``, ``--max-memory-mb``,
``--max-devices`` and ``--max-put-bytes`` (or their EMD_* variables). Each attack is refused
with a clear message, and nothing is read, written or changed."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from p4p.client.thread import Context

import epics_meta_devices as emd
from epics_meta_devices._handler_queue import MAX_QUEUED_REQUESTS
from epics_meta_devices.testing import DeviceProcess, emd_error, unique_prefix
from test_factory import child_pids

pytest.importorskip("emd_collector")
pytest.importorskip("emd_dms")
pytest.importorskip("emd_ping")


def refused(ctxt: Context, name: str, value: object) -> str:
    """Put `value` to `name`, which must be refused: the refusal's message."""
    with pytest.raises(Exception) as error:
        ctxt.put(name, value, timeout=10)
    return str(error.value)


@pytest.fixture
def host(tmp_path: Path) -> dict[str, Path]:
    """A data root with links out of it, a FIFO, a file outside it, and a share to upload to."""
    root, outside, share = tmp_path / "root", tmp_path / "outside", tmp_path / "share"
    for directory in (root, outside, share):
        directory.mkdir()
    (outside / "secret.txt").write_text("outside the data root")
    (root / "out").symlink_to(outside)  # a directory link leading out
    (root / "secret.txt").symlink_to(outside / "secret.txt")  # a file link leading out
    (root / "proc").symlink_to("/proc/self")
    os.mkfifo(root / "fifo")
    (root / "run").mkdir()
    return {"root": root, "outside": outside, "share": share}


@pytest.fixture
def collector(host, run_device, prefix):
    """A collector process with the host's data root and a memory ceiling of 100 MB."""
    client = run_device("collect.Collector", f"{prefix}:coll", config={"publish_period": 0.1},
                        args=["--data-root", str(host["root"]), "--max-memory-mb", "100"])
    return client


@pytest.mark.parametrize("data_dir, reason", [
    ("/etc", "data_dir '/etc' must be relative to the data root {root}, without '..'"),
    ("../outside", "data_dir '../outside' must be relative to the data root {root}, without '..'"),
    ("out", "'out' is a symbolic link; files below {root}"),
    ("proc", "'proc' is a symbolic link; files below {root}"),
    ("out/deeper", "'out' is a symbolic link or not a directory"),
])
def test_data_dir_cannot_leave_the_data_root(collector, ctxt, host, data_dir, reason):
    message = refused(ctxt, f"{collector.prefix}:CONFIG", {"data_dir": data_dir})
    assert reason.format(root=host["root"]) in message
    assert collector.config["data_dir"] == ""  # nothing changed
    assert ctxt.get(f"{collector.prefix}:CONFIG:data_dir").value == ""


@pytest.mark.parametrize("path, reason", [
    ("out/x.npz", "'out' is a symbolic link or not a directory"),
    ("secret.txt", "'secret.txt' is a symbolic link"),
    ("/tmp/x.npz", "must be relative to the data directory"),
    ("run/../../x.npz", "without '..'"),
])
def test_export_never_writes_through_a_link(collector, ctxt, host, path, reason):
    message = refused(ctxt, f"{collector.prefix}:EXPORT", {"path": path, "format": "npz"})
    assert reason in message
    assert sorted(p.name for p in host["outside"].iterdir()) == ["secret.txt"]
    assert (host["outside"] / "secret.txt").read_text() == "outside the data root"


@pytest.mark.parametrize("path, reason", [
    ("secret.txt", "'secret.txt' is a symbolic link"),
    ("out/secret.txt", "'out' is a symbolic link or not a directory"),
    ("proc/environ", "'proc' is a symbolic link or not a directory"),
    ("fifo", "not a regular file"),
    ("run", "not a regular file"),
])
def test_upload_reads_only_regular_files_in_the_root(collector, ctxt, host, path, reason):
    started = time.monotonic()
    message = refused(ctxt, f"{collector.prefix}:UPLOAD",
                      {"path": path, "target": "directory",
                       "options": f'{{"destination": "{host["share"]}"}}'})
    assert reason in message and time.monotonic() - started < 5  # a FIFO never blocks the collector
    assert list(host["share"].iterdir()) == []  # nothing was copied
    assert collector.get_pv("UPLOAD_STATUS")["state"] == "idle"


def test_files_in_the_root_still_work(collector, ctxt, host):
    (host["root"] / "run" / "notes.txt").write_text("beam time notes")
    collector.configure(data_dir="run")
    assert collector.config["data_dir"] == "run"
    ctxt.put(f"{collector.prefix}:UPLOAD", {"path": "notes.txt", "target": "directory",
                                            "options": f'{{"destination": "{host["share"]}"}}'})
    deadline = time.monotonic() + 20
    while collector.get_pv("UPLOAD_STATUS")["state"] != "done":
        assert time.monotonic() < deadline, collector.get_pv("UPLOAD_STATUS")
        time.sleep(0.1)
    assert (host["share"] / "notes.txt").read_text() == "beam time notes"


def test_memory_ceiling(collector, ctxt):
    message = refused(ctxt, f"{collector.prefix}:CONFIG", {"memory_limit_mb": 5000})
    assert "memory_limit_mb=5000 is above this host's ceiling of 100 MB (--max-memory-mb)" in message
    assert collector.config["memory_limit_mb"] == 100  # the default follows the ceiling; unchanged
    collector.configure(memory_limit_mb=50)  # within the ceiling: accepted
    assert collector.config["memory_limit_mb"] == 50


def test_largest_put(run_device, prefix, ctxt):
    client = run_device("ping.Ping", f"{prefix}:ping", config={}, args=["--max-put-bytes", "100000"])
    client.enable()
    message = refused(ctxt, f"{client.prefix}:PING", {"value": "x" * 200_000})
    assert (f"put to {client.prefix}:PING refused: 200000 bytes is more than this host accepts in one put "
            "(100000 bytes, --max-put-bytes)") in message
    message = refused(ctxt, f"{client.prefix}:PING", {"value": np.zeros(20_000)})  # 160,000 bytes
    assert "160000 bytes is more than" in message
    assert ctxt.get(f"{client.prefix}:PONG")["count"] == 0  # never reached the device's handler
    ctxt.put(f"{client.prefix}:PING", {"value": "still answering"}, timeout=10)
    assert ctxt.get(f"{client.prefix}:PONG")["count"] == 1


def test_default_largest_put_refuses_a_100_mb_ping(run_device, prefix, ctxt):
    client = run_device("ping.Ping", f"{prefix}:ping", config={})
    client.enable()
    message = refused(ctxt, f"{client.prefix}:PING", {"value": "x" * 100_000_000})
    assert "100000000 bytes is more than this host accepts in one put (16777216 bytes" in message
    ctxt.put(f"{client.prefix}:PING", {"value": 1}, timeout=10)
    assert ctxt.get(f"{client.prefix}:PONG")["count"] == 1


def test_factory_ceiling_and_children_get_the_host_settings(tmp_path, ctxt):
    fprefix = unique_prefix("hostfac")
    root = tmp_path / "root"
    with DeviceProcess("", fprefix, cli=["factory", "run", fprefix],
                       args=["--disabled", "--max-devices", "2", "--data-root", str(root),
                             "--max-put-bytes", "50000"]) as factory:
        assert factory.config["max_devices"] == 2  # the default follows the ceiling
        message = refused(ctxt, f"{fprefix}:CONFIG", {"max_devices": 1_000_000})
        assert "max_devices=1000000 is above this host's ceiling of 2 devices (emd factory run --max-devices)" in message
        assert factory.config["max_devices"] == 2
        factory.enable()
        client = emd.FactoryClient(fprefix)
        client.create("collect.Collector", f"{fprefix}:c1")
        client.create("ping.Ping", f"{fprefix}:p1")
        message = refused(ctxt, f"{fprefix}:CREATE", {"device_type": "ping.Ping", "device_prefix": f"{fprefix}:p2"})
        assert f"factory {fprefix} already runs max_devices=2" in message
        assert sorted(d["prefix"] for d in client.devices()) == [f"{fprefix}:c1", f"{fprefix}:p1"]
        # the children got the factory's settings, not defaults of their own
        message = refused(ctxt, f"{fprefix}:c1:CONFIG", {"data_dir": "/etc"})
        assert f"must be relative to the data root {root}" in message
        message = refused(ctxt, f"{fprefix}:p1:PING", {"value": "x" * 60_000})
        assert "(50000 bytes, --max-put-bytes)" in message
        client.disconnect()


def test_200_concurrent_creates_start_at_most_the_ceiling(tmp_path):
    """200 CREATEs at once (from 200 threads of one client) start at most --max-devices
    processes; every other one is refused with the reason, none is left waiting: the ceiling,
    or, when more than 64 wait for the factory's handler at once, busy (see access.md)."""
    fprefix = unique_prefix("flood")
    process = DeviceProcess("", fprefix, cli=["factory", "run", fprefix], args=["--max-devices", "3"])
    with process as factory, Context("pva", nt=False) as ctxt:
        factory.wait_for_state("running", timeout=10)

        def create(n: int) -> str:
            try:
                ctxt.put(f"{fprefix}:CREATE", {"device_type": "ping.Ping", "device_prefix": f"{fprefix}:d{n}"},
                         timeout=60)
                return "created"
            except Exception as exc:
                return str(exc)

        with ThreadPoolExecutor(200) as pool:
            outcomes = list(pool.map(create, range(200)))
        assert outcomes.count("created") == 3
        refusals = [o for o in outcomes if o != "created"]
        reasons = (f"factory {fprefix} already runs max_devices=3",
                   f"busy: {MAX_QUEUED_REQUESTS} requests are already waiting for this device")
        assert all(any(reason in o for reason in reasons) for o in refusals), set(refusals)
        assert len(child_pids(process.process.pid)) == 3
        with emd.FactoryClient(fprefix) as client:
            assert len(client.devices()) == 3


def test_bad_host_settings_are_one_error_line(tmp_path):
    line = emd_error("factory", "run", unique_prefix("badhost"), "--max-memory-mb", "0")
    assert line == "Error: max memory must be > 0 MB, got 0.0"
