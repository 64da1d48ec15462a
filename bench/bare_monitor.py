"""A bare p4p monitor: the baseline of the collector's ingest, without epics-meta-devices.

``python -m bench.bare_monitor NAME...`` prints ``ready`` once its thread-client Context
exists, then obeys lines on standard input: ``start`` subscribes to every name with
``p4p.client.thread.Context('pva', nt=False)`` and a callback that only counts, and answers
``started``; ``stop`` closes the subscriptions and answers the number of updates counted since
``start``. It exits when its standard input closes. Run it with the loopback EPICS environment
(it inherits the benchmark's).
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
        subscriptions: list[Any] = []
        for line in sys.stdin:
            if line.strip() == "start":
                counter.count = 0
                subscriptions = [context.monitor(name, counter) for name in names]
                print("started", flush=True)
            elif line.strip() == "stop":
                for subscription in subscriptions:
                    subscription.close()
                subscriptions = []
                print(counter.count, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
