"""emd-dms: uploaders to data management systems, for a collector's UPLOAD PV.

``directory`` (a mounted share), ``webdav``, ``s3`` and ``nomad`` (NOMAD Oasis API v1). Each
verifies what its target allows, raises ``emd.UploadError(retry=...)`` for failed uploads and
ValueError for bad options, and takes credentials from the environment or the file named by
EMD_DMS_CONFIG, never from options. See docs/dms.md.

The uploader modules (and ``requests``) are imported on first use: every device process loads
every plugin, and most never upload.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import epics_meta_devices as emd

_CLASSES = {"DirectoryUploader": "._directory", "WebDavUploader": "._webdav",
            "S3Uploader": "._s3", "NomadUploader": "._nomad"}
__all__ = [*_CLASSES, "uploaders"]


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return getattr(importlib.import_module(_CLASSES[name], __name__), name)
    raise AttributeError(name)


@functools.cache
def uploaders() -> tuple[Any, ...]:
    """One instance of each uploader for the whole process: the NOMAD uploader remembers its
    open upload between files."""
    return tuple(__getattr__(name)() for name in _CLASSES)


@emd.hookimpl
def emd_uploaders() -> list[Any]:
    return list(uploaders())
