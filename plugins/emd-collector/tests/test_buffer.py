"""RingBuffer against a plain list of the samples it should hold: what OUT, exports and the
spool read (columns, and since a cursor) must be the newest samples, oldest first, whether the
buffer has grown, wrapped around or both."""

from __future__ import annotations

import random

import numpy as np
import pytest
from emd_collector._buffer import RingBuffer


@pytest.mark.parametrize("max_samples", [1, 3, 10, 37])
def test_columns_and_since_match_the_newest_samples(max_samples):
    rng = random.Random(max_samples)
    buffer = RingBuffer(np.dtype(np.float64), max_samples)
    kept: list[int] = []
    for n in range(200):
        buffer.append(float(n), n, n % 3, n % 5)
        kept = [*kept, n][-max_samples:]
        first = rng.randint(0, len(kept))
        columns = buffer.columns(first)
        assert columns["time_ns"].tolist() == kept[first:]
        assert columns["value"].tolist() == [float(k) for k in kept[first:]]
        assert columns["severity"].tolist() == [k % 3 for k in kept[first:]]
        assert columns["status"].tolist() == [k % 5 for k in kept[first:]]
        cursor = rng.randint(0, n + 1)  # samples appended before an earlier read
        new, dropped = buffer.since(cursor)
        unread = list(range(cursor, n + 1))
        assert new["time_ns"].tolist() == [k for k in unread if k in kept]
        assert dropped == len([k for k in unread if k not in kept])


def test_columns_are_copies_and_waveform_rows_keep_their_lengths():
    buffer = RingBuffer(np.dtype(np.float64), 4, width=3)
    for n in range(6):  # wraps: rows 2..5 kept
        buffer.append([float(n)] * (1 + n % 3), n, 0, 0)
    columns = buffer.columns()
    assert columns["time_ns"].tolist() == [2, 3, 4, 5]
    assert columns["length"].tolist() == [3, 1, 2, 3]
    assert columns["value"].shape == (4, 3) and columns["value"][1].tolist() == [3.0, 0.0, 0.0]
    columns["value"][0, 0] = -1.0
    assert buffer.columns()["value"][0, 0] == 2.0  # the caller's copy, not the buffer
