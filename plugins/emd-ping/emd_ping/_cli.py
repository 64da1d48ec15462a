"""``emd ping PREFIX``: round-trip statistics of a ping.Ping device."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from epics_meta_devices._logging import configure_logging
from epics_meta_devices.cli import AsJson, LogLevel, Timeout

from ._client import PingClient


def ping(
    prefix: Annotated[str, typer.Argument(help="PV prefix of a ping.Ping device.")],
    count: Annotated[int, typer.Option("--count", "-c", min=1, help="Number of pings.")] = 10,
    as_json: AsJson = False,
    timeout: Timeout = 5.0,
    log_level: LogLevel = "WARNING",
) -> None:
    """Ping a ping.Ping device (it must be enabled) and print round-trip statistics."""
    configure_logging(log_level)
    with PingClient(prefix, timeout=timeout) as client:
        summary = client.ping_many(count).summary()
    if as_json:
        typer.echo(json.dumps(summary))
        return
    ms = {k: v * 1e3 for k, v in summary.items() if k != "count"}
    typer.echo(
        f"{summary['count']} pings to {prefix}: min {ms['min']:.3f} ms, median {ms['median']:.3f} ms, "
        f"mean {ms['mean']:.3f} ms, p99 {ms['p99']:.3f} ms, max {ms['max']:.3f} ms"
    )
