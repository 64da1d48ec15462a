"""A bare p4p server for the collector's retrieval benchmark: the source the collector records,
and the baseline array a plain client gets.

``python -m bench.bare_source PREFIX`` serves ``PREFIX:SOURCE`` (an NTScalar double; its
initial value is update 0), ``PREFIX:ARRAY`` (an NTScalarArray double) and ``PREFIX:PAIR`` (a
structure of two arrays, ``value`` double and ``time_ns`` int64: the bytes of a collector's
value and time columns), prints ``ready``, then obeys lines on standard input: ``post N``
posts the next N updates of SOURCE as fast as it can (value and ``timeStamp.userTag`` count
the updates, stamped now) and answers ``posted``; ``array N`` posts an N-element array on
ARRAY, and two on PAIR, and answers ``ok``. It exits when its standard input closes. Run it
with the loopback EPICS environment (it inherits the benchmark's).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from p4p import Type, Value
from p4p.nt import NTScalar
from p4p.server import Server
from p4p.server.thread import SharedPV

SCALAR = NTScalar.buildType("d")
ARRAY = NTScalar.buildType("ad")
PAIR = Type([("value", "ad"), ("time_ns", "al")])


def update(n: int) -> Value:
    """Update number `n` of SOURCE: value n, userTag n (the collector counts gaps in it)."""
    now = time.time_ns()
    stamp = {"secondsPastEpoch": now // 10**9, "nanoseconds": now % 10**9, "userTag": n}
    return Value(SCALAR, {"value": float(n), "timeStamp": stamp})


def main(prefix: str) -> None:
    source = SharedPV(initial=update(0))
    array = SharedPV(initial=Value(ARRAY, {"value": np.zeros(0)}))
    pair = SharedPV(initial=Value(PAIR, {"value": np.zeros(0), "time_ns": np.zeros(0, np.int64)}))
    sent = 0
    pvs = {f"{prefix}:SOURCE": source, f"{prefix}:ARRAY": array, f"{prefix}:PAIR": pair}
    with Server(providers=[pvs]):
        print("ready", flush=True)
        for line in sys.stdin:
            command, count = line.split()
            if command == "post":
                for n in range(sent + 1, sent + 1 + int(count)):
                    source.post(update(n))
                sent += int(count)
                print("posted", flush=True)
            elif command == "array":
                values = np.arange(int(count), dtype=np.float64)
                array.post(Value(ARRAY, {"value": values}))
                pair.post(Value(PAIR, {"value": values, "time_ns": np.arange(int(count), dtype=np.int64)}))
                print("ok", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
