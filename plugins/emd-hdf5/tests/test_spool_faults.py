"""Spooling never drops silently (issue 18), on real filesystems that fail: a small tmpfs that
fills up while a collector spools, and a read-only mount. What the spool could not take stays
pending and is written once space is back, exactly once; what the ring overwrote meanwhile is
counted; SPOOL (with an alarm severity), its counts and INFO say so all along."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import pytest

from emd_collector import CollectorClient
from emd_collector._spooling import FAILURES_FOR_MAJOR
from epics_meta_devices.testing import SourcePVs, wait_until

NO_ALARM, MINOR, MAJOR = 0, 1, 2


def mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount here (needs root): {result.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB tmpfs: the data root of the collector."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk))
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.fixture
def sources(prefix):
    served = SourcePVs(prefix)
    yield served
    served.stop()


def fill(disk: Path) -> Path:
    """Fill `disk` to the last byte with one file; the file (delete it to free the space)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as out:  # unbuffered: nothing is left to write at close
        for size in (65536, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError:
                pass
    return filler


def post(sources: SourcePVs, client: CollectorClient, first: int, last: int) -> None:
    """Post first..last to the double source in batches the monitor queue holds, each
    recorded before the next (a tight loop of thousands of posts may be squashed)."""
    for start in range(first, last + 1, 500):
        for value in range(start, min(start + 500, last + 1)):
            sources.post("double", float(value))
        done = min(start + 499, last)
        wait_until(lambda: client.status()["stored"] == done + 1, 10, f"{done + 1} recorded")


def spooled(path: Path, pv: str) -> np.ndarray:
    """The values of `pv` in the spool file, read as a SWMR reader would (empty: not yet)."""
    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            log = next((g for g in f["entry"].values() if g.attrs.get("pv_name") == pv), None)
            return log["value"][()] if log is not None else np.zeros(0)
    except (OSError, KeyError):
        return np.zeros(0)


def spool_alarm(ctxt, prefix: str) -> tuple[int, str]:
    value = ctxt.get(f"{prefix}:coll:SPOOL")
    return value["alarm.severity"], value["value"]


def test_a_full_disk_loses_nothing_and_says_so(prefix, sources, run_device, ctxt, small_disk):
    name = sources.name("double")
    run_device("collect.Collector", f"{prefix}:coll", env={"EMD_DATA_ROOT": str(small_disk)},
               config={"input_pvs": [name], "spool_file": "live.h5", "spool_interval": 0.2, "publish_period": 0.1})
    client = CollectorClient(f"{prefix}:coll")
    client.start()
    path = small_disk / "live.h5"
    wait_until(lambda: len(spooled(path, name)) == 1, 10, "the first sample spooled")
    assert spool_alarm(ctxt, prefix)[0] == NO_ALARM

    filler = fill(small_disk)
    post(sources, client, 1, 5000)  # several chunks: the file must grow, and cannot
    wait_until(lambda: spool_alarm(ctxt, prefix)[0] == MAJOR, 10, "SPOOL MAJOR after repeated failures")
    severity, message = spool_alarm(ctxt, prefix)
    assert message.startswith(f"spool failing ({FAILURES_FOR_MAJOR}") or "in a row" in message
    assert "No space left on device" in message and "rows pending" in message
    assert ctxt.get(f"{prefix}:coll:SPOOL:rows_pending")["value"] > 0
    assert "failed 3 times in a row, recording goes on in memory" in client.info["last_error"]
    assert client.state.value == "running"  # recording goes on in memory

    filler.unlink()
    wait_until(lambda: spool_alarm(ctxt, prefix)[0] == NO_ALARM, 10, "SPOOL back to NO_ALARM")
    assert ctxt.get(f"{prefix}:coll:SPOOL:rows_pending")["value"] == 0
    assert ctxt.get(f"{prefix}:coll:SPOOL:rows_lost")["value"] == 0
    client.stop()
    values = spooled(path, name)
    assert list(values) == [float(v) for v in range(5001)]  # every sample, once, in order


def test_a_backlog_beyond_the_ring_is_counted_exactly(prefix, sources, run_device, ctxt, small_disk):
    name = sources.name("double")
    run_device("collect.Collector", f"{prefix}:coll", env={"EMD_DATA_ROOT": str(small_disk)},
               config={"input_pvs": [name], "spool_file": "live.h5", "spool_interval": 0.2, "publish_period": 0.1,
                       "max_samples": 1000})
    client = CollectorClient(f"{prefix}:coll")
    client.start()
    path = small_disk / "live.h5"
    wait_until(lambda: len(spooled(path, name)) == 1, 10, "the first sample spooled")
    for batch in range(6):  # into the file's second chunk (the next chunks need new space), paced: the ring holds 1000
        post(sources, client, 500 * batch + 1, 500 * batch + 500)
        wait_until(lambda: len(spooled(path, name)) == 500 * batch + 501, 20, f"{500 * batch + 501} samples spooled")
    filler = fill(small_disk)
    post(sources, client, 3001, 8000)
    wait_until(lambda: spool_alarm(ctxt, prefix)[0] >= MINOR, 10, "SPOOL failing")
    filler.unlink()
    wait_until(lambda: spool_alarm(ctxt, prefix)[0] == NO_ALARM, 10, "SPOOL back to NO_ALARM")
    client.stop()
    values = spooled(path, name)
    lost = ctxt.get(f"{prefix}:coll:SPOOL:rows_lost")["value"]
    # the ring held the newest 1000: what was neither spooled nor held is counted, exactly
    assert list(values[-1000:]) == [float(v) for v in range(7001, 8001)]
    assert len(values) + lost == 8001 and lost > 0
    assert list(values) == sorted(set(values))  # no row twice


def test_a_read_only_disk_refuses_enable_with_the_reason(prefix, sources, run_device, ctxt, tmp_path):
    writable, read_only = tmp_path / "disk", tmp_path / "ro"
    writable.mkdir()
    read_only.mkdir()
    mount("--bind", str(writable), str(read_only))
    try:
        mount("-o", "remount,ro,bind", str(read_only))
        run_device("collect.Collector", f"{prefix}:coll", env={"EMD_DATA_ROOT": str(read_only)},
                   config={"input_pvs": [sources.name("double")], "spool_file": "live.h5"})
        client = CollectorClient(f"{prefix}:coll")
        with pytest.raises(Exception, match="cannot spool to .*live.h5.*Read-only file system"):
            client.start()
        assert client.state.value == "ready" and not list(writable.iterdir())
    finally:
        subprocess.run(["umount", "-l", str(read_only)], check=True)
