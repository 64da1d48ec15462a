"""A bare p4p monitor: the baseline of the collector's ingest, without epics-meta-devices.

``python -m bench.bare_monitor NAME...`` prints ``ready`` once its thread-client Context
exists, then obeys lines on standard input: ``start`` subscribes to every name with
``p4p.client.thread.Context('pva', nt=False)`` and a callback that only counts, and answers
``started``; ``count`` (or ``stop``) answers the number of updates counted since ``start``. One
window per process, which is then killed: the subscriptions stay open until then, because
closing a thread-client subscription while the network thread is delivering to it can
deadlock (most likely close waiting for a delivery that waits for the GIL close holds; seen after a
few windows of 1000 PVs at 10 Hz). Run it with the loopback EPICS environment (it inherits the
benchmark's).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from p4p.client.thread import Context


class Counter:
    """The monitor callback: counts updates, nothing else (the floor of any recording)."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()  # callbacks run on several worker threads

    def __call__(self, value: Any) -> None:
        with self.lock:
            self.count += 1


def main(names: list[str]) -> None:
    with Context("pva", nt=False) as context:
        print("ready", flush=True)
        counter = Counter()
        subscriptions: list[Any] = []  # kept: a subscription that is let go of closes
        for line in sys.stdin:
            if line.strip() == "start":
                counter.count = 0
                subscriptions.extend(context.monitor(name, counter) for name in names)
                print("started", flush=True)
            elif line.strip() in ("count", "stop"):
                print(counter.count, flush=True)  # subscriptions end with the process (see above)


if __name__ == "__main__":
    main(sys.argv[1:])
