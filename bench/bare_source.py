"""A bare p4p server for the collector's retrieval benchmark: the source the collector records,
and the baseline array a plain client gets.

``python -m bench.bare_source PREFIX`` serves ``PREFIX:SOURCE`` (an NTScalar double; its
initial value is update 0) and ``PREFIX:ARRAY`` (an NTScalarArray double), prints ``ready``,
then obeys lines on standard input: ``post N`` posts the next N updates of SOURCE as fast as it
can (value and ``timeStamp.userTag`` count the updates, stamped now) and answers ``posted``;
``array N`` posts an N-element array on ARRAY and answers ``ok``. It exits when its standard
input closes. Run it with the loopback EPICS environment (it inherits the benchmark's).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from p4p import Value
from p4p.nt import NTScalar
from p4p.server import Server
from p4p.server.thread import SharedPV

SCALAR = NTScalar.buildType("d")
ARRAY = NTScalar.buildType("ad")


def update(n: int) -> Value:
    """Update number `n` of SOURCE: value n, userTag n (the collector counts gaps in it)."""
    now = time.time_ns()
    stamp = {"secondsPastEpoch": now // 10**9, "nanoseconds": now % 10**9, "userTag": n}
    return Value(SCALAR, {"value": float(n), "timeStamp": stamp})


def main(prefix: str) -> None:
    source = SharedPV(initial=update(0))
    array = SharedPV(initial=Value(ARRAY, {"value": np.zeros(0)}))
    sent = 0
    with Server(providers=[{f"{prefix}:SOURCE": source, f"{prefix}:ARRAY": array}]):
        print("ready", flush=True)
        for line in sys.stdin:
            command, count = line.split()
            if command == "post":
                for n in range(sent + 1, sent + 1 + int(count)):
                    source.post(update(n))
                sent += int(count)
                print("posted", flush=True)
            elif command == "array":
                array.post(Value(ARRAY, {"value": np.arange(int(count), dtype=np.float64)}))
                print("ok", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
