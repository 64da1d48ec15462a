"""emd-collector: the collect.Collector device, its client, the built-in .npz exporter and the
``emd collect`` command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import epics_meta_devices as emd

from ._client import CollectorClient, CollectorManagement
from ._device import Collector, CollectorConfig
from ._recording import NpzExporter, RecordedPV, Recording, load_npz

if TYPE_CHECKING:
    import typer

__all__ = ["Collector", "CollectorClient", "CollectorConfig", "CollectorManagement",
           "NpzExporter", "RecordedPV", "Recording", "load_npz"]


@emd.hookimpl
def emd_device_types() -> list[type[emd.MetaDevice]]:
    return [Collector]


@emd.hookimpl
def emd_exporters() -> list[Any]:
    return [NpzExporter()]


@emd.hookimpl
def emd_cli(app: typer.Typer) -> None:
    from ._cli import collect, export, upload

    app.command("collect")(collect)
    app.command("export")(export)
    app.command("upload")(upload)
