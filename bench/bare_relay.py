"""A bare p4p monitor-to-post relay: the baseline of the processing benchmark, without
epics-meta-devices.

``python -m bench.bare_relay SOURCE OUTPUT`` serves ``OUTPUT`` (an NTScalar double) and
monitors ``SOURCE`` with ``p4p.client.thread.Context('pva', nt=False)`` and the request a
ProcessingDevice uses for its inputs (``record[queueSize=64,pipeline=true]``); the monitor
callback posts each update's value on OUTPUT with that update's timestamp and alarm, as the
device's Y = x does. It prints ``ready`` once serving and exits when its standard input
closes. Run it with the loopback EPICS environment (it inherits the benchmark's).
"""

from __future__ import annotations

import sys
from typing import Any

from p4p.client.thread import Context
from p4p.nt import NTScalar
from p4p.server import Server
from p4p.server.thread import SharedPV

REQUEST = "record[queueSize=64,pipeline=true]"
"""ProcessingConfig's default queue_size, as the device requests it."""


def main(source: str, output: str) -> None:
    nt = NTScalar("d")  # the type the device serves Y = 0.0 with
    pv = SharedPV(nt=nt, initial=0.0)

    def relay(update: Any) -> None:
        if isinstance(update, Exception):  # (dis)connection: nothing to relay
            return
        stamp = update["timeStamp.secondsPastEpoch"] + update["timeStamp.nanoseconds"] * 1e-9
        pv.post(nt.wrap(update["value"], timestamp=stamp,
                        severity=update["alarm.severity"], message=update["alarm.message"]))

    with Server(providers=[{output: pv}]), Context("pva", nt=False) as context:
        subscription = context.monitor(source, relay, request=REQUEST, notify_disconnect=True)
        print("ready", flush=True)
        sys.stdin.read()
        subscription.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
