"""The ``emd`` command line. Plugins add commands with the ``emd_cli`` hook and may reuse the
shared options defined here (``LogLevel``, ``Timeout``, ``AsJson``) and helpers: `PVClient` (any
PV, with DeviceClient's errors, and monitors of several PVs), `parse_value` and `parse_pairs`
(command-line values: JSON, else text), `plain` and `record` (PV values as JSON data)."""

from ._app import AsJson, LogLevel, Timeout, app, main, parse_config
from ._pv import PVClient, parse_pairs, parse_value
from ._values import plain, record

__all__ = ["AsJson", "LogLevel", "PVClient", "Timeout", "app", "main", "parse_config", "parse_pairs",
           "parse_value", "plain", "record"]
