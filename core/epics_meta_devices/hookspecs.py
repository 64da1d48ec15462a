"""The hooks plugins implement. Each is an empty, documented function; pluggy checks that
implementations match these signatures. Plugins are found through the ``emd`` entry-point group
(and the ``EMD_PLUGINS`` environment variable, a comma-separated list of modules)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import typer

    from ._device import MetaDevice

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
