"""Ping round trip through a ping.Ping device against a bare p4p echo server.

Both servers run in processes of their own and are pinged from this process with the same
client code (emd_ping.PingClient: a put to PING, then wait for the PONG update). Pings are
taken in alternating blocks, so drifts of the machine hit both sides alike. The ratio of
medians is the cost epics-meta-devices adds to a put-and-post round trip.
"""

from __future__ import annotations


from emd_ping import PingClient
from epics_meta_devices.testing import DeviceProcess, unique_prefix

from ._common import Result, start_helper, stop_helper

TARGET = 1.3
"""Device round trip at most 1.3 times the bare one (medians)."""


def run(count: int = 2000, warmup: int = 100, blocks: int = 20) -> Result:
    """`count` pings to each side after `warmup` each, in `blocks` alternating blocks."""
    device_times: list[float] = []
    bare_times: list[float] = []
    bare_prefix = unique_prefix("bench-bare")
    bare_process = start_helper("bare_echo", bare_prefix)
    try:
        device_prefix = unique_prefix("bench-dev")
        with DeviceProcess("ping.Ping", device_prefix, config={}) as client:
            client.enable()
            with PingClient(device_prefix) as device, PingClient(bare_prefix) as bare:
                device_times, bare_times = ping_alternately(device, bare, count, warmup, blocks)
    finally:
        stop_helper(bare_process)
    return Result("ping round trip", device_times, bare_times, "bare p4p echo", TARGET)


def ping_alternately(first: PingClient, second: PingClient, count: int, warmup: int,
                     blocks: int) -> tuple[list[float], list[float]]:
    """Round trips of `count` pings to each side after `warmup` each, in `blocks` alternating
    blocks (ABBA...), so drifts of the machine hit both sides alike."""
    first_times: list[float] = []
    second_times: list[float] = []
    for pinger in (first, second):
        for _ in range(warmup):
            pinger.ping()
    per_block = max(1, count // blocks)
    for block in range(blocks):
        sides = [(first, first_times), (second, second_times)]
        for pinger, times in sides if block % 2 == 0 else reversed(sides):
            times.extend(pinger.ping() for _ in range(per_block))
    return first_times, second_times
