"""A bare Channel Access monitor that only counts: the baseline of the collector's CA ingest,
and how the CA client library was chosen.

``python -m bench.bare_ca_monitor LIBRARY NAME...`` (LIBRARY: ``aioca`` or ``pyepics``) prints
``ready``, then obeys lines on standard input: ``start`` subscribes to every name with DBR_TIME
updates, every update delivered (aioca: ``all_updates=True``), and a callback that counts and
notes a jump in the value (the IOC's records count up by one: a jump is an update lost or
merged), then answers ``started``; ``count`` answers ``UPDATES JUMPS``. Run it with the
loopback EPICS environment (it inherits the benchmark's).
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable


class Counter:
    """Counts updates and the ones whose value is not the last one + 1 (after the first)."""

    def __init__(self) -> None:
        self.count = 0
        self.jumps = 0
        self.last: dict[str, float] = {}
        self.lock = threading.Lock()

    def saw(self, name: str, value: float) -> None:
        with self.lock:
            self.count += 1
            last = self.last.get(name)
            if last is not None and value != last + 1:
                self.jumps += 1
            self.last[name] = value


def _commands(counter: Counter, start: Callable[[], None]) -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "start":
            with counter.lock:
                counter.count, counter.jumps = 0, 0
            start()
            print("started", flush=True)
        elif line.strip() in ("count", "stop"):
            with counter.lock:
                print(counter.count, counter.jumps, flush=True)


def with_aioca(names: list[str]) -> None:
    """aioca: libca's callback converts the DBR and queues it; the asyncio loop (here in a
    thread of its own) runs the callbacks in batches."""
    import asyncio

    from aioca import FORMAT_TIME, camonitor

    counter = Counter()
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    subscriptions: list[Any] = []

    def start() -> None:
        async def subscribe() -> None:
            subscriptions.extend(camonitor(
                names, lambda value, index: counter.saw(value.name, float(value)),
                format=FORMAT_TIME, all_updates=True))
        asyncio.run_coroutine_threadsafe(subscribe(), loop).result(30)

    _commands(counter, start)


def with_pyepics(names: list[str]) -> None:
    """pyepics' low-level `epics.ca`: the callback runs in libca's thread with the value unpacked."""
    from epics import ca

    counter = Counter()
    subscriptions: list[Any] = []  # kept: pyepics cancels a subscription that is let go of

    def start() -> None:
        channels = [ca.create_channel(name, connect=False, auto_cb=False) for name in names]
        for chid in channels:
            ca.connect_channel(chid, timeout=10)
        for name, chid in zip(names, channels):
            def callback(value: Any = None, pvname: str = name, **_: Any) -> None:
                counter.saw(pvname, float(value))
            subscriptions.append(ca.create_subscription(chid, use_time=True, callback=callback))

    _commands(counter, start)


if __name__ == "__main__":
    library, *pv_names = sys.argv[1:]
    {"aioca": with_aioca, "pyepics": with_pyepics}[library](pv_names)
