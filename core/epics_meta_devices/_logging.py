"""Logging: stdlib logging, with the device prefix in every record a device writes."""

from __future__ import annotations

import logging
from typing import Any, MutableMapping

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class DeviceLogAdapter(logging.LoggerAdapter):
    """Prefixes each message with ``[PREFIX]`` and sets ``record.device`` for filters and
    formatters, so the logs of many devices in one file stay attributable."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        prefix = self.extra["device"] if self.extra else "?"
        kwargs.setdefault("extra", {}).update(self.extra or {})
        return f"[{prefix}] {msg}", kwargs


def device_logger(device_type: str, prefix: str) -> DeviceLogAdapter:
    """The logger of one device: ``emd.device.<type>`` with the prefix in every record."""
    return DeviceLogAdapter(logging.getLogger(f"emd.device.{device_type}"), {"device": prefix})


def configure_logging(level: str | int = "WARNING") -> None:
    """Set up stderr logging for a command-line process (idempotent)."""
    if isinstance(level, str):
        level = level.upper()
        if not isinstance(logging.getLevelName(level), int):
            from ._state import DeviceError

            raise DeviceError(f"unknown log level {level!r} (use DEBUG, INFO, WARNING or ERROR)")
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)
