"""emd-collector: the collect.Collector device, its client, the built-in .npz exporter, the
``emd collect`` and ``emd plot`` commands, and recordings as pandas/xarray objects and plots."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import epics_meta_devices as emd

from ._client import CollectorClient, CollectorManagement
from ._device import Collector, CollectorConfig
from ._frames import to_pandas, to_xarray
from ._plot import plot_recording
from ._recording import NpzExporter, RecordedPV, Recording, load_npz
from ._sources import read_recording

if TYPE_CHECKING:
    import typer

__all__ = ["Collector", "CollectorClient", "CollectorConfig", "CollectorManagement",
           "NpzExporter", "RecordedPV", "Recording", "load_npz", "plot_recording", "read_recording",
           "to_pandas", "to_xarray"]


@emd.hookimpl
def emd_device_types() -> list[type[emd.MetaDevice]]:
    return [Collector]


@emd.hookimpl
def emd_exporters() -> list[Any]:
    return [NpzExporter()]


@emd.hookimpl
def emd_cli(app: typer.Typer) -> None:
    from ._cli import collect, export, upload
    from ._plot_cli import plot

    app.command("collect")(collect)
    app.command("export")(export)
    app.command("plot")(plot)
    app.command("upload")(upload)
