"""``emd collect PV...``: record PVs with a collector in this process, showing live counts."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from epics_meta_devices._logging import configure_logging
from epics_meta_devices.cli import LogLevel, Timeout

from ._client import CollectorClient
from ._device import Collector


def _counts(collector: Collector, elapsed: float) -> Table:
    table = Table(title=f"{collector.prefix}: recording for {elapsed:.0f} s")
    for column in ("PV", "connected", "received", "stored", "dropped", "disconnects"):
        table.add_column(column)
    for name, recorder in collector.recorders.items():
        c = recorder.counters
        table.add_row(name, "yes" if recorder.connected else "no", str(c["received"]), str(c["stored"]),
                      str(c["dropped"]), str(c["disconnects"]))
    return table


def collect(
    pvs: Annotated[list[str], typer.Argument(help="PVs to record.")],
    prefix: Annotated[Optional[str], typer.Option(help="PV prefix of the collector (default: a unique one).")] = None,
    duration: Annotated[Optional[float], typer.Option(min=0, help="Seconds to record (default: until Ctrl-C).")] = None,
    export: Annotated[Optional[Path], typer.Option(help="Export to this file at the end (format from its suffix).")] = None,
    max_samples: Annotated[int, typer.Option(help="Samples kept per PV.")] = 100_000,
    log_level: LogLevel = "WARNING",
) -> None:
    """Record PVs with a collector served under --prefix, show live counts, export at the end."""
    configure_logging(log_level)
    data_dir = (export.parent if export else Path.cwd()).resolve()
    collector = Collector(prefix or f"emd:collect:{uuid.uuid4().hex[:8]}",
                          config={"input_pvs": pvs, "max_samples": max_samples, "data_dir": str(data_dir)})
    try:
        exporter = collector.exporter_for("", export) if export else None  # a bad suffix: say so before recording
    except Exception:
        collector.shutdown()
        raise
    console = Console(stderr=True)
    started = time.monotonic()
    try:
        collector.set_enabled(True)
        with Live(_counts(collector, 0), console=console, refresh_per_second=4) as live:
            while duration is None or time.monotonic() - started < duration:
                time.sleep(0.25)  # the display's refresh; recording runs on its own threads
                live.update(_counts(collector, time.monotonic() - started))
    except KeyboardInterrupt:
        pass
    finally:
        collector.set_enabled(False)
    try:
        if export:
            collector.export(exporter, collector.recording(), data_dir / export.name, {})
            typer.echo(f"exported {collector.recording().samples} samples to {data_dir / export.name}")
    finally:
        collector.shutdown()


def export(
    prefix: Annotated[str, typer.Argument(help="PV prefix of the collector.")],
    file: Annotated[str, typer.Argument(help="File to write, relative to the collector's data directory.")],
    format: Annotated[str, typer.Option("--format", "-f", help="Exporter (default: from the suffix).")] = "",
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="Exporter option KEY=VALUE (JSON values), repeatable.")] = None,
    timeout: Timeout = 600.0,
    log_level: LogLevel = "WARNING",
) -> None:
    """Export what a collector recorded, in any installed format (npz; hdf5 with emd-hdf5)."""
    import json

    configure_logging(log_level)
    options = {}
    for item in option or []:
        key, _, text = item.partition("=")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text  # a bare word, e.g. compression=lzf
    console = Console(stderr=True)
    with CollectorClient(prefix, timeout=10.0) as client:
        with console.status(f"exporting {prefix} to {file} ..."):  # one remote operation: a spinner
            written = client.export(file, format, timeout=timeout, **options)
    typer.echo(f"exported {prefix} to {written}")
