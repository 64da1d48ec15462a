"""emd-hdf5: NeXus/HDF5 export for emd-collector recordings (the ``hdf5`` exporter)."""

from __future__ import annotations

from typing import Any

import epics_meta_devices as emd

from ._exporter import Hdf5Exporter
from ._loader import load_hdf5
from ._spool import Hdf5Spool

__all__ = ["Hdf5Exporter", "Hdf5Spool", "load_hdf5"]


@emd.hookimpl
def emd_exporters() -> list[Any]:
    return [Hdf5Exporter()]
