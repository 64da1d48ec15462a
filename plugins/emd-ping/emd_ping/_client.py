"""PingClient: ping a ping.Ping device and measure round trips."""

from __future__ import annotations

import itertools
import queue
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

import epics_meta_devices as emd


@dataclass
class PingStatistics:
    """Round-trip times of a series of pings, in seconds."""

    times: list[float]

    @property
    def count(self) -> int:
        return len(self.times)

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.times)
        return {
            "count": self.count,
            "min": ordered[0],
            "median": statistics.median(ordered),
            "mean": statistics.fmean(ordered),
            "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
            "max": ordered[-1],
        }


class PingClient(emd.DeviceClient):
    """Client of ping.Ping: `ping()` puts a token to PING and waits for the PONG carrying it."""

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self._pongs: queue.Queue[Any] = queue.Queue()
        self._subscription: Any = None
        # Tokens unique to this client, so other clients' pongs are never taken for ours.
        self._tokens = itertools.count(random.randrange(2**52))

    def ping(self) -> float:
        """Round-trip time in seconds from the PING put to the PONG update that answers it."""
        if self._subscription is None:
            self._subscription = self._context.monitor(
                self.pv_name("PONG"), self._pongs.put, request="record[queueSize=100]"
            )
            self._next_pong()  # the current value, sent on connect
        token = next(self._tokens)
        started = time.perf_counter()
        self.put("PING", token)
        while self._next_pong()["value"] != token:
            pass  # a pong for someone else
        return time.perf_counter() - started

    def _next_pong(self) -> Any:
        try:
            return self._pongs.get(timeout=self.timeout)
        except queue.Empty:
            raise emd.DeviceTimeout(
                f"{self.pv_name('PONG')} did not answer within {self.timeout} s: is the device running?"
            ) from None

    def ping_many(self, count: int) -> PingStatistics:
        return PingStatistics([self.ping() for _ in range(count)])

    def disconnect(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        super().disconnect()
