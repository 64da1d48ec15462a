"""A bare p4p echo server: the baseline of the ping round trip, without epics-meta-devices.

``python -m bench.bare_echo PREFIX`` serves ``PREFIX:PING`` and ``PREFIX:PONG`` with the same
types as the ping.Ping device; a put to PING is posted (with a count and a timestamp) on PONG,
then acknowledged. It prints ``ready`` once serving and exits when its standard input closes.
Run it with the loopback EPICS environment (it inherits the benchmark's).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from p4p import Type, Value
from p4p.nt.common import timeStamp
from p4p.server import Server
from p4p.server.thread import SharedPV

PING_TYPE = Type([("value", "v")])
PONG_TYPE = Type([("value", "v"), ("count", "L"), ("timeStamp", timeStamp)])


def pong(value: Any, count: int) -> Value:
    """A PONG value carrying `value`, stamped now."""
    now = time.time()
    stamp = {"secondsPastEpoch": int(now), "nanoseconds": int((now % 1) * 1e9)}
    return Value(PONG_TYPE, {"value": value, "count": count, "timeStamp": stamp})


class Echo:
    """SharedPV put handler of PING: post the value on PONG, then complete the put."""

    def __init__(self, pong_pv: SharedPV) -> None:
        self.pong_pv = pong_pv
        self.count = 0

    def put(self, pv: SharedPV, op: Any) -> None:
        self.count += 1
        self.pong_pv.post(pong(op.value()["value"], self.count))
        op.done()


def main(prefix: str) -> None:
    pong_pv = SharedPV(initial=pong(0, 0))
    ping_pv = SharedPV(initial=Value(PING_TYPE, {"value": 0}), handler=Echo(pong_pv))
    with Server(providers=[{f"{prefix}:PING": ping_pv, f"{prefix}:PONG": pong_pv}]):
        print("ready", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main(sys.argv[1])
