"""``emd plot SOURCE [PV...] -o FILE``: plot a collector's recording, or an exported file, into
an image (plot_recording). Bad input gives one line and exit code 1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from epics_meta_devices.cli import Timeout

from ._frames import require
from ._sources import HDF5_SUFFIXES


def _moment(text: str | None) -> float | str | None:
    """A --start/--end value: seconds since the epoch, or an ISO 8601 text."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _fail(message: str) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(1)


def plot(
    source: Annotated[str, typer.Argument(help="A collector's PV prefix, or an exported .npz/.h5 file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Image to write; its suffix picks the format (png, pdf, svg).")],
    pvs: Annotated[Optional[list[str]], typer.Argument(help="PVs to plot (default: every recorded PV).")] = None,
    start: Annotated[Optional[str], typer.Option(help="Only samples from this time on (epoch seconds or ISO 8601; UTC unless given).")] = None,
    end: Annotated[Optional[str], typer.Option(help="Only samples up to this time.")] = None,
    timeout: Timeout = 10.0,
) -> None:
    """Plot recorded values against time: one panel per unit, lines broken where the source was
    disconnected (needs matplotlib: pip install 'emd-collector[plot]')."""
    from ._client import CollectorClient
    from ._plot import plot_recording

    try:
        require("matplotlib", "emd plot", "plot")
    except ImportError as exc:
        raise _fail(str(exc)) from None
    is_file = Path(source).suffix in (".npz", *HDF5_SUFFIXES) or Path(source).exists()
    client = None if is_file else CollectorClient(source, timeout=timeout)
    try:
        figure = plot_recording(source if is_file else client, output, pvs or None, _moment(start), _moment(end))
    except (ValueError, OSError, ImportError) as exc:  # bad PV, time, file or format: one line
        raise _fail(str(exc)) from None
    finally:
        if client is not None:
            client.disconnect()
    lines = sum(len(ax.get_lines()) for ax in figure.axes)
    typer.echo(f"plotted {lines} PV{'s' if lines != 1 else ''} to {output}")
