"""emd-dms: uploaders to data management systems, for a collector's UPLOAD PV.

``directory`` (a mounted share), ``webdav``, ``s3`` and ``nomad`` (NOMAD Oasis API v1). Each
verifies what its target allows, raises ``emd.UploadError(retry=...)`` for failed uploads and
ValueError for bad options, and takes credentials from the environment or the file named by
EMD_DMS_CONFIG, never from options. See docs/dms.md.
"""

from __future__ import annotations

from typing import Any

import epics_meta_devices as emd

from ._directory import DirectoryUploader
from ._nomad import NomadUploader
from ._s3 import S3Uploader
from ._webdav import WebDavUploader

__all__ = ["DirectoryUploader", "NomadUploader", "S3Uploader", "WebDavUploader", "UPLOADERS"]

UPLOADERS: list[Any] = [DirectoryUploader(), WebDavUploader(), S3Uploader(), NomadUploader()]
"""One instance each for the whole process: the NOMAD uploader remembers its open upload."""


@emd.hookimpl
def emd_uploaders() -> list[Any]:
    return list(UPLOADERS)
