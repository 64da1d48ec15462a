"""``emd configure``, ``enable``, ``disable`` and ``close``: the default command PVs of any
device, through DeviceClient (so a refusal is the device's own reason)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from .._client import DeviceClient
from .._logging import configure_logging
from ._app import AsJson, LogLevel, Timeout, app, parse_config

Prefix = Annotated[str, typer.Argument(help="PV prefix of the device.", show_default=False)]


def _report(prefix: str, done: str, as_json: bool, **fields: Any) -> None:
    """Print what a command did: ``DONE PREFIX (state STATE)`` or one JSON object."""
    if as_json:
        typer.echo(json.dumps({"prefix": prefix, **fields}))
        return
    state = f" (state {fields['state']})" if "state" in fields else ""
    typer.echo(f"{done} {prefix}{state}")


@app.command("configure")
def configure(
    prefix: Prefix,
    config: Annotated[str, typer.Argument(
        help='CONFIG fields as a JSON object, e.g. \'{"delay": 0.1}\', or @file holding one.', show_default=False)],
    as_json: AsJson = False,
    timeout: Timeout = 5.0,
    log_level: LogLevel = "WARNING",
) -> None:
    """Put CONFIG fields (the others keep their values) and print the whole CONFIG."""
    configure_logging(log_level)
    fields = parse_config(config, "CONFIG")
    with DeviceClient(prefix, timeout=timeout) as client:
        client.configure(fields)
        config_now, state = client.config, client.state.value
    if as_json:
        _report(prefix, "configured", True, state=state, config=config_now)
    else:
        _report(prefix, "configured", False, state=state)
        typer.echo(f"config {json.dumps(config_now)}")


@app.command("enable")
def enable(prefix: Prefix, as_json: AsJson = False, timeout: Timeout = 5.0, log_level: LogLevel = "WARNING") -> None:
    """Enable a device (ENABLE=true): it starts working, in state running."""
    _set_enabled(prefix, True, as_json, timeout, log_level)


@app.command("disable")
def disable(prefix: Prefix, as_json: AsJson = False, timeout: Timeout = 5.0, log_level: LogLevel = "WARNING") -> None:
    """Disable a device (ENABLE=false): it stops working and keeps its CONFIG."""
    _set_enabled(prefix, False, as_json, timeout, log_level)


def _set_enabled(prefix: str, enabled: bool, as_json: bool, timeout: float, log_level: str) -> None:
    configure_logging(log_level)
    with DeviceClient(prefix, timeout=timeout) as client:
        client.put("ENABLE", enabled)
        _report(prefix, "enabled" if enabled else "disabled", as_json, state=client.state.value)


@app.command("close")
def close(prefix: Prefix, as_json: AsJson = False, timeout: Timeout = 5.0, log_level: LogLevel = "WARNING") -> None:
    """Close a device (CLOSE=true): it stops serving its PVs (`emd device run` then returns)."""
    configure_logging(log_level)
    with DeviceClient(prefix, timeout=timeout) as client:
        client.put("CLOSE", True)
    _report(prefix, "closed", as_json, closed=True)
