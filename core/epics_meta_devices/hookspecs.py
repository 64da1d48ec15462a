"""The hooks plugins implement. Each is an empty, documented function; pluggy checks that
implementations match these signatures. Plugins are found through the ``emd`` entry-point group
(and the ``EMD_PLUGINS`` environment variable, a comma-separated list of modules)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

import pluggy

if TYPE_CHECKING:
    import typer

    from ._device import MetaDevice



class Exporter(Protocol):
    """Writes a recording to a file of one format. An exporter that can also write a file
    while recording has ``open_spool(path, options)``, returning an object with
    ``append(recording)`` (only the rows new since the last call) and ``close()``: a
    collector's ``spool_file`` uses it."""

    name: str
    suffixes: list[str]

    def export(self, recording: Any, path: Path, options: Mapping[str, Any]) -> None: ...


class Uploader(Protocol):
    """Hands a file to a data management system (a share, WebDAV, S3, NOMAD, ...).

    ``upload`` sends `path`, calls ``progress(bytes_done, bytes_total)`` as it goes, verifies
    what the target allows (size, checksum) and returns where the file went (a URL or path).
    It raises `UploadError` (``retry=True`` for failures worth retrying: timeouts, 5xx) or
    ValueError for bad options. Credentials come from the environment or a config file on the
    host, never from `options` (which travel through PVs). An uploader may also have
    ``check(path, options)``, raising ValueError for bad options without uploading: a
    collector calls it when UPLOAD is put, so the put is refused at once."""

    name: str

    def upload(self, path: Path, options: Mapping[str, Any], progress: Callable[[int, int], None]) -> str: ...


hookspec = pluggy.HookspecMarker("emd")
hookimpl = pluggy.HookimplMarker("emd")


@hookspec
def emd_device_types() -> list[type[MetaDevice]]:
    """Return the device classes this plugin provides.

    Each becomes a device type (``<group>.<Class>``) that ``emd device run``, ``emd.devices``
    and factories (DEVICETYPES) offer.
    """


@hookspec
def emd_cli(app: typer.Typer) -> None:
    """Add commands or sub-apps to the ``emd`` command line (``app.command()``, ``app.add_typer``)."""


@hookspec
def emd_exporters() -> list[Exporter]:
    """Return exporters: objects with ``name`` (e.g. ``"npz"``), ``suffixes`` (e.g.
    ``[".npz"]``) and ``export(recording, path, options)``, which writes a recording (e.g. a
    collector's `Recording`) to `path`, raising ValueError for options it does not take. A collector's EXPORT PV and clients find them by name or suffix."""


@hookspec
def emd_uploaders() -> list[Uploader]:
    """Return uploaders: objects with ``name`` (e.g. ``"webdav"``) and ``upload(path, options,
    progress)`` (see `Uploader`), which hands a file to a data management system. A collector's UPLOAD PV finds them by name."""
