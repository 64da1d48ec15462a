"""emd-ping: the ping.Ping echo device, its client, and the ``emd ping`` command."""

from __future__ import annotations

from typing import TYPE_CHECKING

import epics_meta_devices as emd

from ._client import PingClient, PingStatistics
from ._device import Ping, PingConfig

if TYPE_CHECKING:
    import typer

__all__ = ["Ping", "PingClient", "PingConfig", "PingStatistics"]


@emd.hookimpl
def emd_device_types() -> list[type[emd.MetaDevice]]:
    return [Ping]


@emd.hookimpl
def emd_cli(app: typer.Typer) -> None:
    from ._cli import ping

    app.command("ping")(ping)
