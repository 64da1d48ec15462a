"""Factory commands: run a factory, and create, delete and list its devices (local or remote:
only the factory prefix differs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .._device import serve_until_closed
from .._logging import configure_logging
from ..factory import DeviceFactory, FactoryClient
from ._app import (AcfOption, AsJson, ConfigOption, DataRootOption, LogLevel, MaxMemoryOption, MaxPutBytesOption,
                   Timeout, app, factory_app, host_settings, parse_config)
from ._complete import complete_factory_devices, complete_factory_types

FactoryPrefix = Annotated[str, typer.Argument(help="PV prefix of the factory.")]
DevicePrefix = Annotated[str, typer.Argument(help="PV prefix of the device.")]


@factory_app.command("run")
def factory_run(
    prefix: FactoryPrefix,
    config: ConfigOption = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Start disabled (CREATE refused until ENABLE).")] = False,
    acf: AcfOption = None,
    state: Annotated[Optional[Path], typer.Option(
        "--state", help="Keep the devices (type, config, enabled) in this JSON file, rewritten on every "
                        "change, and recreate them at start (a missing file: start empty).")] = None,
    data_root: DataRootOption = None,
    max_put_bytes: MaxPutBytesOption = None,
    max_memory_mb: MaxMemoryOption = None,
    max_devices: Annotated[Optional[int], typer.Option(
        "--max-devices", envvar="EMD_MAX_DEVICES", min=1, show_default=False,
        help="Highest max_devices the factory's CONFIG may set (and its default); default 100.")] = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Run a factory in this process (configured and enabled) until closed or interrupted.
    Its children get its host settings (--data-root, --max-put-bytes, --max-memory-mb)."""
    configure_logging(log_level)
    host = host_settings(data_root, max_put_bytes, max_memory_mb, max_devices)
    factory = DeviceFactory(prefix, config=parse_config(config) if config else {}, acf=acf, state_file=state,
                            host=host)
    if not disabled:
        factory.set_enabled(True)
    serve_until_closed(factory)


@app.command("create")
def create(
    factory: FactoryPrefix,
    device_type: Annotated[str, typer.Argument(help="Device type, one of the factory's DEVICETYPES.",
                                               autocompletion=complete_factory_types)],
    prefix: DevicePrefix,
    config: ConfigOption = None,
    restart: Annotated[str, typer.Option(
        help="Restart policy: never, or on-failure (a crashed device is started again).")] = "never",
    restart_limit: Annotated[int, typer.Option(
        help="Restarts allowed under on-failure (0: the factory's default_restart_limit).")] = 0,
    as_json: AsJson = False,
    timeout: Timeout = 60.0,
    log_level: LogLevel = "WARNING",
) -> None:
    """Create a device through a factory; returns once the device serves its PVs."""
    configure_logging(log_level)
    with FactoryClient(factory) as client:
        client.create_timeout = timeout
        device = client.create(device_type, prefix, parse_config(config) if config else None,
                               restart=restart, restart_limit=restart_limit)
        state = device.state.value if as_json else ""
        device.disconnect()
    if as_json:
        typer.echo(json.dumps({"factory": factory, "type": device_type, "prefix": prefix, "state": state}))
        return
    typer.echo(f"created {device_type} {prefix}")


@app.command("delete")
def delete(
    factory: FactoryPrefix,
    prefix: Annotated[str, typer.Argument(help="PV prefix of the device.", autocompletion=complete_factory_devices)],
    timeout: Timeout = 60.0,
    log_level: LogLevel = "WARNING",
) -> None:
    """Delete a device of a factory; returns once its process is gone."""
    configure_logging(log_level)
    with FactoryClient(factory) as client:
        client.create_timeout = timeout
        client.delete(prefix)
    typer.echo(f"deleted {prefix}")


@app.command("ls")
def ls(factory: FactoryPrefix, as_json: AsJson = False, timeout: Timeout = 5.0, log_level: LogLevel = "WARNING") -> None:
    """List the devices of a factory."""
    configure_logging(log_level)
    with FactoryClient(factory, timeout=timeout) as client:
        devices = client.devices()
    if as_json:
        typer.echo(json.dumps(devices, indent=2))
        return
    for d in devices:
        typer.echo(f"{d['prefix']:30} {d['type']:20} {d['state']:8} pid {d['pid']:<8} since {d['start_time']}")
    if not devices:
        typer.echo("no devices")
