"""The ``emd`` command line. Plugins add commands with the ``emd_cli`` hook and may reuse the
shared options defined here (``LogLevel``, ``Timeout``, ``AsJson``)."""

from ._app import AsJson, LogLevel, Timeout, app, main, parse_config

__all__ = ["AsJson", "LogLevel", "Timeout", "app", "main", "parse_config"]
