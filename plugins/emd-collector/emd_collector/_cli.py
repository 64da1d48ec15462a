"""``emd collect PV...``: record PVs with a collector in this process, showing live counts."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

import epics_meta_devices as emd
from epics_meta_devices._logging import configure_logging
from epics_meta_devices.cli import AsJson, LogLevel, PVClient, Timeout, parse_pairs

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
    as_json: AsJson = False,
    log_level: LogLevel = "WARNING",
) -> None:
    """Record PVs with a collector served under --prefix, show live counts, export at the end."""
    configure_logging(log_level)
    data_dir = (export.parent if export else Path.cwd()).resolve()
    # the export's directory is this collector's data root (a host setting: no put may move it)
    collector = Collector(prefix or f"emd:collect:{uuid.uuid4().hex[:8]}",
                          config={"input_pvs": pvs, "max_samples": max_samples},
                          host=emd.HostSettings.from_environment(data_root=str(data_dir)))
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
        recording = collector.recording()
        if export:
            collector.export(exporter, recording, data_dir / export.name, {})
            if not as_json:
                typer.echo(f"exported {recording.samples} samples to {data_dir / export.name}")
        if as_json:
            typer.echo(json.dumps({
                "prefix": collector.prefix, "samples": recording.samples,
                "exported": str(data_dir / export.name) if export else None,
                "pvs": {name: dict(recorder.counters) for name, recorder in collector.recorders.items()},
            }))
    finally:
        collector.shutdown()


def export(
    prefix: Annotated[str, typer.Argument(help="PV prefix of the collector.")],
    file: Annotated[str, typer.Argument(help="File to write, relative to the collector's data directory.")],
    format: Annotated[str, typer.Option("--format", "-f", help="Exporter (default: from the suffix).")] = "",
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="Exporter option KEY=VALUE (JSON values), repeatable.")] = None,
    as_json: AsJson = False,
    timeout: Timeout = 600.0,
    log_level: LogLevel = "WARNING",
) -> None:
    """Export what a collector recorded, in any installed format (npz; hdf5 with emd-hdf5)."""
    configure_logging(log_level)
    options = parse_pairs(option or [], "--option")  # a bare word is a string: compression=lzf
    console = Console(stderr=True)
    with CollectorClient(prefix, timeout=10.0) as client:
        with console.status(f"exporting {prefix} to {file} ..."):  # one remote operation: a spinner
            written = client.export(file, format, timeout=timeout, **options)
    typer.echo(json.dumps({"prefix": prefix, "path": written}) if as_json else f"exported {prefix} to {written}")


def upload(
    prefix: Annotated[str, typer.Argument(help="PV prefix of the collector.")],
    file: Annotated[str, typer.Argument(help="File to upload, relative to the collector's data directory.")],
    target: Annotated[str, typer.Argument(help="Uploader, e.g. directory, webdav, s3, nomad (emd-dms).")],
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="Uploader option KEY=VALUE (JSON values), repeatable.")] = None,
    as_json: AsJson = False,
    timeout: Annotated[float, typer.Option("--timeout", "-t", help="Seconds without news from UPLOAD_STATUS before giving up waiting (the upload goes on).")] = 600.0,
    log_level: LogLevel = "WARNING",
) -> None:
    """Upload a file the collector wrote to a target, showing the progress UPLOAD_STATUS reports."""
    configure_logging(log_level)
    options = parse_pairs(option or [], "--option")
    with CollectorClient(prefix, timeout=10.0) as client:
        client.upload(file, target, **options)  # a refusal (bad target, path, options) ends here
    status = follow_upload(f"{prefix}:UPLOAD_STATUS", f"{file} -> {target}", timeout, show=not as_json)
    if as_json:
        typer.echo(json.dumps(status))
    if status["state"] == "failed":
        raise emd.DeviceError(f"upload of {file} to {target} failed after {status['attempt']} attempt(s): "
                              f"{status['message']}")
    if not as_json:
        typer.echo(f"uploaded {file} to {target}: {status['location']}")


def follow_upload(status_pv: str, what: str, timeout: float, show: bool) -> dict[str, Any]:
    """Follow UPLOAD_STATUS from just after an UPLOAD put (so its value is that upload's, or a
    later one's) until done or failed with nothing queued, as a progress bar on stderr."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with PVClient(timeout=10.0) as client, \
            Progress(*columns, console=Console(stderr=True), disable=not show) as progress:
        task = progress.add_task(f"queued {what}", total=None)
        for _, value in client.updates([status_pv], idle_timeout=timeout):
            if value is None:
                raise emd.DeviceError(f"{status_pv} disconnected: the collector closed during the upload")
            status = value.todict()
            if status["state"] == "retrying":
                progress.console.print(f"attempt {status['attempt']} failed: {status['message']}")
            attempt = f" (attempt {status['attempt']})" if status["attempt"] > 1 else ""
            progress.update(task, description=f"{status['state']} {what}{attempt}",
                            completed=status["bytes_done"], total=status["bytes_total"] or None)
            if status["state"] in ("done", "failed") and not status["queued"]:
                return status
    raise AssertionError("unreachable: updates() ends only by raising")
