"""OUT:<pv>:ROWS:<first> (issue 19): an incremental read without RPC. Rows are numbered from
the collector's start, so a reader that asks for the row after the last it read gets every
sample once, and sees in the row numbers what it could not get (a full ring, a CLEAR)."""

from __future__ import annotations

import pytest
from p4p.client.thread import Context, TimeoutError

from emd_collector import CollectorClient
from emd_collector._device import MAX_ROW_READS
from epics_meta_devices.testing import wait_until


def collector(run_device, prefix, **config) -> CollectorClient:
    base = run_device("collect.Collector", f"{prefix}:coll", config={"publish_period": 0.1, **config})
    return CollectorClient(base.prefix)


def start(client, name) -> None:
    """Record, and wait for the first update (the source's value at connect): posts made before
    the subscription is up would reach it as one value."""
    before = client.status(name)["stored"]
    client.start()
    wait_until(lambda: client.status(name)["stored"] > before, 10, "the first update")


def post_and_wait(sources, client, values) -> None:
    name = sources.name("double")
    before = client.status(name)["stored"]
    for value in values:
        sources.post("double", value)
    wait_until(lambda: client.status(name)["stored"] >= before + len(values), 10, f"stored, from {before}")


def rows(ctxt, client, name, first):
    """One read of ROWS:<first>, with its channel closed after it (as a reader should)."""
    pv = f"{client.prefix}:OUT:{name}:ROWS:{first}"
    try:
        return ctxt.get(pv, timeout=5).value
    finally:
        ctxt.disconnect(pv)


def test_reading_from_the_next_row_gets_every_sample_once(prefix, sources, run_device, ctxt):
    name = sources.name("double")
    client = collector(run_device, prefix, input_pvs=[name])
    start(client, name)
    table = rows(ctxt, client, name, 0)
    assert list(table["row"]) == list(range(len(table["row"])))  # the first update, numbered from 0
    read = list(table["value"])
    next_row = len(read)
    for chunk in ([1.0, 2.0, 3.0], [4.0], [5.0, 6.0]):
        post_and_wait(sources, client, chunk)
        table = rows(ctxt, client, name, next_row)
        assert list(table["row"]) == list(range(next_row, next_row + len(chunk)))
        assert list(table["value"]) == chunk
        read += chunk
        next_row += len(chunk)
    assert len(rows(ctxt, client, name, next_row)["row"]) == 0  # nothing new: an empty table
    whole = ctxt.get(f"{client.prefix}:OUT:{name}:TABLE").value
    assert list(whole["value"]) == read
    newest = rows(ctxt, client, name, -1)  # negative: the newest rows
    assert list(newest["row"]) == [next_row - 1] and list(newest["value"]) == [6.0]
    assert list(newest["time_ns"]) == [whole["time_ns"][-1]]


def test_rows_lost_to_a_full_ring_or_a_clear_show_in_the_row_numbers(prefix, sources, run_device, ctxt):
    name = sources.name("double")
    client = collector(run_device, prefix, input_pvs=[name], max_samples=4)
    start(client, name)
    post_and_wait(sources, client, [float(i) for i in range(10)])
    table = rows(ctxt, client, name, 0)
    assert len(table["row"]) == 4 and table["row"][0] == 7  # rows 0-6 were dropped by the ring
    assert list(table["value"]) == [6.0, 7.0, 8.0, 9.0]
    client.stop()
    client.clear()
    start(client, name)
    post_and_wait(sources, client, [20.0, 21.0])
    # rows 0-10 were recorded before the CLEAR; a reader that had read up to row 8 asks for 9
    table = rows(ctxt, client, name, 9)
    assert list(table["row"]) == [11, 12, 13]  # numbering goes on: rows 9 and 10 were cleared
    assert list(table["value"]) == [9.0, 20.0, 21.0]  # the value at the new start, then the new ones


def test_only_rows_of_recorded_pvs_with_a_number_are_served(prefix, sources, run_device, ctxt):
    name = sources.name("double")
    client = collector(run_device, prefix, input_pvs=[name])
    for bad in (f"OUT:{name}:ROWS:abc", f"OUT:{name}:ROWS:", "OUT:not:recorded:ROWS:0"):
        with pytest.raises(TimeoutError):
            ctxt.get(f"{client.prefix}:{bad}", timeout=1.5)


def test_a_client_cannot_hold_more_than_the_ceiling_of_row_reads(prefix, sources, run_device):
    name = sources.name("double")
    client = collector(run_device, prefix, input_pvs=[name])
    with Context("pva", nt=False) as greedy:  # keeps every channel it opened
        for first in range(MAX_ROW_READS):
            greedy.get(f"{client.prefix}:OUT:{name}:ROWS:{first}", timeout=5)
        with pytest.raises(TimeoutError):
            greedy.get(f"{client.prefix}:OUT:{name}:ROWS:{MAX_ROW_READS}", timeout=1.5)
    # once that client is gone, its reads are let go
    with Context("pva", nt=False) as reader:
        def served() -> bool:
            return not isinstance(reader.get(f"{client.prefix}:OUT:{name}:ROWS:-1", timeout=1.5, throw=False),
                                  Exception)
        wait_until(served, 15, "ROWS served again")
