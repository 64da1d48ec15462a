"""The ``emd`` command line: core commands here, plugin commands added through ``emd_cli``."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .. import __version__
from .._client import DeviceClient
from .._config import config_from_json
from .._device import serve_until_closed
from .._host import HostSettings
from .._logging import configure_logging
from .._plugins import call_isolated, plugin_manager, plugin_reports
from .._registry import registry
from .._state import DeviceError
from ._complete import complete_device_types

CONTEXT = {"help_option_names": ["-h", "--help"]}

LogLevel = Annotated[
    str,
    typer.Option("--log-level", "-l", help="Logging level: DEBUG, INFO, WARNING, ERROR.", envvar="EMD_LOG_LEVEL"),
]
Timeout = Annotated[float, typer.Option("--timeout", "-t", help="Seconds to wait for the device.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

app = typer.Typer(
    name="emd",
    help="epics-meta-devices: run and drive EPICS devices that record and process PVs.",
    context_settings=CONTEXT,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
device_app = typer.Typer(help="Run devices.", context_settings=CONTEXT, no_args_is_help=True)
app.add_typer(device_app, name="device")
factory_app = typer.Typer(help="Run device factories.", context_settings=CONTEXT, no_args_is_help=True)
app.add_typer(factory_app, name="factory")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"emd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    """epics-meta-devices: run and drive EPICS devices that record and process PVs."""


ConfigOption = Annotated[Optional[str], typer.Option(help="CONFIG to apply: JSON or @file.")]
AcfOption = Annotated[Optional[Path], typer.Option(
    "--acf", envvar="EMD_ACF",
    help="EPICS access security file (UAG/HAG/ASG rules) checked on every put; SIGHUP re-reads it.")]

DataRootOption = Annotated[Optional[Path], typer.Option(
    "--data-root", envvar="EMD_DATA_ROOT", show_default=False,
    help="Directory collectors read and write below (their data_dir is relative to it); default ./emd-data.")]
MaxPutBytesOption = Annotated[Optional[int], typer.Option(
    "--max-put-bytes", envvar="EMD_MAX_PUT_BYTES", min=1, show_default=False,
    help="Largest put a device accepts, in bytes; default 16 MiB.")]
MaxMemoryOption = Annotated[Optional[float], typer.Option(
    "--max-memory-mb", envvar="EMD_MAX_MEMORY_MB", show_default=False,
    help="Highest memory_limit_mb a collector's CONFIG may set; default 4096.")]


def host_settings(data_root: Path | None, max_put_bytes: int | None, max_memory_mb: float | None,
                  max_devices: int | None = None) -> HostSettings:
    """The host's limits from the command line (the options read the environment too)."""
    return HostSettings.from_environment(
        {}, data_root=str(data_root) if data_root is not None else None, max_put_bytes=max_put_bytes,
        max_memory_mb=max_memory_mb, max_devices=max_devices)


def parse_config(text: str, what: str = "--config") -> dict[str, Any]:
    """A ``--config`` value (or another argument, named `what` in errors): a JSON object, or
    ``@file`` naming a file that holds one."""
    if not text.startswith("@"):
        return config_from_json(text, what)
    path = Path(text[1:])
    try:
        return config_from_json(path.read_text(), str(path))
    except OSError as exc:
        raise DeviceError(f"cannot read config file {path}: {exc.strerror}") from None


@device_app.command("run")
def device_run(
    device_type: Annotated[str, typer.Argument(help="Device type, e.g. ping.Ping (see `emd types`).",
                                               autocompletion=complete_device_types)],
    prefix: Annotated[str, typer.Argument(help="PV prefix the device serves under.")],
    config: ConfigOption = None,
    acf: AcfOption = None,
    data_root: DataRootOption = None,
    max_put_bytes: MaxPutBytesOption = None,
    max_memory_mb: MaxMemoryOption = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Run a device in this process until it is closed (CLOSE PV) or interrupted (Ctrl-C)."""
    configure_logging(log_level)
    initial = parse_config(config) if config is not None else None
    host = host_settings(data_root, max_put_bytes, max_memory_mb)
    plugin_manager()
    serve_until_closed(registry.get(device_type).cls(prefix, config=initial, acf=acf, host=host))


@app.command("types")
def types(as_json: AsJson = False, log_level: LogLevel = "WARNING") -> None:
    """List the installed device types."""
    configure_logging(log_level)
    plugin_manager()
    infos = registry.infos()
    if as_json:
        typer.echo(json.dumps([{"name": i.name, "plugin": i.plugin, "class": f"{i.cls.__module__}.{i.cls.__qualname__}"} for i in infos], indent=2))
        return
    for info in infos:
        typer.echo(f"{info.name:24} {info.plugin}")


@app.command("plugins")
def plugins(as_json: AsJson = False, log_level: LogLevel = "WARNING") -> None:
    """List installed plugins, their distribution and version, device types, and load errors."""
    configure_logging(log_level)
    reports = plugin_reports()
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in reports], indent=2))
        return
    if not reports:
        typer.echo("no plugins installed")
    for r in reports:
        dist = f"{r.distribution} {r.version}".strip() or "(module)"
        typer.echo(f"{r.name:16} {dist:28} {', '.join(r.device_types) or '-'}")
        if r.error:
            typer.echo(f"{'':16} load error: {r.error}")


@app.command("status")
def status(
    prefix: Annotated[str, typer.Argument(help="PV prefix of the device.")],
    as_json: AsJson = False,
    timeout: Timeout = 5.0,
    log_level: LogLevel = "WARNING",
) -> None:
    """Show a device's type, state, configuration and INFO."""
    configure_logging(log_level)
    with DeviceClient(prefix, timeout=timeout) as client:
        report = {
            "prefix": prefix,
            "type": client.device_type,
            "state": client.state.value,
            "uuid": client.uuid,
            "config": client.config,
            "info": client.info,
        }
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for key in ("prefix", "type", "state", "uuid"):
        typer.echo(f"{key:12} {report[key]}")
    typer.echo(f"{'config':12} {json.dumps(report['config'])}")
    for key, value in report["info"].items():
        typer.echo(f"{key:12} {value}")


@app.command("screen")
def screen(
    prefix: Annotated[str, typer.Argument(help="PV prefix of the device.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Screen file to write: .bob (Phoebus) or .edl.")],
    timeout: Timeout = 5.0,
    log_level: LogLevel = "WARNING",
) -> None:
    """Write a Phoebus (Display Builder) screen of any device, with every PV its PVI lists."""
    configure_logging(log_level)
    from .._screen import write_screen

    typer.echo(f"wrote {write_screen(prefix, output, timeout)}")


from . import _factory  # noqa: E402,F401  (registers the factory commands)
from . import _new  # noqa: E402,F401  (registers `emd new`)
from . import _pv  # noqa: E402,F401  (registers get, put, monitor, rpc)
from . import _control  # noqa: E402,F401  (registers configure, enable, disable, close)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``emd``: load plugin commands, run, and turn device errors into one line."""
    errors: list[str] = []
    call_isolated("emd_cli", errors, app=app)
    for error in errors:
        print(f"warning: a plugin's commands were not added: {error}", file=sys.stderr)
    try:
        app(args=argv, prog_name="emd")
    except (DeviceError, TimeoutError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1)
