"""The queues a device's put and RPC handlers run on.

A device runs its handlers one at a time on a thread of its own. Its queue is bounded: a client
that floods a device (or many clients at once) gets a put or RPC refused as busy, with a reason,
instead of the device holding requests without end. Requests that end work (CLOSE, and a
factory's DELETE) have a queue of their own, so they never wait behind queued work."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from p4p.util import ThreadedWorkQueue

MAX_QUEUED_REQUESTS = 64
"""Puts and RPCs a device holds waiting for its handler thread; more are refused as busy."""


class HandlerQueue(ThreadedWorkQueue):
    """A ThreadedWorkQueue that refuses operations (puts, RPCs) beyond `limit` waiting ones.
    Work without an operation (connection callbacks, the heartbeat) is always queued."""

    def __init__(self, name: str, log: logging.LoggerAdapter | logging.Logger,
                 limit: int = MAX_QUEUED_REQUESTS) -> None:
        super().__init__(name=name, maxsize=0, daemon=True)
        self.limit = limit
        self.log = log
        self.refused = 0
        """Operations refused as busy since the device started."""
        self._last_logged = 0.0

    def push(self, callable: Callable[[], None]) -> None:
        operation = _operation_of(callable)
        if operation is not None and self._Q.qsize() >= self.limit:
            self.refused += 1
            operation.done(error=f"busy: {self.limit} requests are already waiting for this device; try again later")
            if time.monotonic() - self._last_logged > 1.0:  # an attack must not flood the log too
                self._last_logged = time.monotonic()
                self.log.warning("refused requests as busy (%d so far): %d waiting already", self.refused, self.limit)
            return
        super().push(callable)


def _operation_of(work: Any) -> Any:
    """The server operation a work item of p4p's SharedPV answers (``partial(_on_queue, op, ...)``
    in p4p.server.thread), or None for work without one."""
    arguments = getattr(work, "args", ())
    operation = arguments[0] if arguments else None
    return operation if callable(getattr(operation, "done", None)) else None
