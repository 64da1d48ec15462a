"""Continuing a spool file whose writer died (a crash, SIGKILL, a power cut), so that a collector
started again (by a factory's ``--state``) goes on appending to the same file.

HDF5 marks a file opened for SWMR writing in its superblock and refuses to open it for writing
again until that mark is cleared (HDF5's ``h5clear -s``, which h5py does not ship). Readers can
still open it, so the file is copied, object by object (H5Ocopy keeps chunking and resizable
shapes), into a new file that then replaces it atomically: everything the writer flushed is
kept. Each PV log then gets a gap marker row (collector.md, "Gaps in the data") just after its
last row, because what was recorded after the last flush died with the writer."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np

from emd_collector._recorder import GAP_SEVERITY, GAP_STATUS

log = logging.getLogger("emd.hdf5")

LEFT_OPEN = "already open for write"
"""What HDF5 says when it refuses a file another writer left open (part of its message)."""


def open_for_append(path: Path) -> h5py.File:
    """`path` opened for appending (made if missing); a file left open by a writer that died is
    recovered first (see the module docstring). Other errors are raised as they are."""
    try:
        return h5py.File(path, "a", libver="latest")
    except OSError as exc:
        if LEFT_OPEN not in str(exc):
            raise
    marked = recover(path)
    log.warning("%s was left open by a writer that stopped without closing it: continued in a copy of "
                "what it had flushed, with a gap marker after the last row of %d PV(s)", path, marked)
    return h5py.File(path, "a", libver="latest")


def recover(path: Path) -> int:
    """Replace the spool file `path` that its writer left open with a copy that can be opened
    for writing, with a gap marker row after each PV log's last row; the number of logs marked."""
    temporary = path.with_name(f".{path.name}.recovering")
    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as source, \
                h5py.File(temporary, "w", libver="latest") as copy:
            copy.attrs.update(dict(source.attrs))
            for name in source:
                source.copy(source[name], copy, name=name)
            marked = sum(_mark_gap(group) for group in copy.get("entry", {}).values()
                         if isinstance(group, h5py.Group) and "pv_name" in group.attrs)
        os.replace(temporary, path)  # atomic: a reader sees the old file or the whole new one
    finally:
        temporary.unlink(missing_ok=True)
    return marked


def _mark_gap(group: h5py.Group) -> bool:
    """Append a gap marker row to one PV log (1 ns after its last row); False if it is empty."""
    rows = group["time"].shape[0]
    if rows == 0:
        return False
    marker = {"time": int(group["time"][rows - 1]) + 1, "alarm_severity": GAP_SEVERITY,
              "alarm_status": GAP_STATUS, "length": 0}
    value = group["value"]
    if h5py.check_string_dtype(value.dtype) is not None:
        marker["value"] = ""
    elif value.ndim > 1:  # a waveform: an empty row (length 0)
        marker["value"] = np.zeros(value.shape[1:], value.dtype)
    else:
        marker["value"] = np.nan if value.dtype.kind == "f" else 0
    for name, data in marker.items():
        if name in group:
            dataset = group[name]
            dataset.resize(rows + 1, axis=0)
            dataset[rows] = data
    return True
