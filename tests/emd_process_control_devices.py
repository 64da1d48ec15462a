"""Device types of the process-control tests (tests/test_process_control.py): devices that hang
or crash on demand. A plugin module of its own, loaded through EMD_PLUGINS by those tests'
factories only, so the other tests' plugin listings stay as they are."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import epics_meta_devices as emd


@dataclass
class HangConfig:
    hang_on_close: bool = False
    """close() never returns either, holding the device's lock, so the SIGTERM handler (which
    closes the device) hangs too: the process ignores SIGTERM in effect."""
    hang_on_configure: bool = False
    """configure() never returns: the device never finishes starting (a CREATE waits for it)."""


@emd.register_device_type(name="test.Hang")
class Hang(emd.MetaDevice):
    """A device deadlocked on demand: a put to HANG never returns."""

    Config = HangConfig

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self.add_pv("HANG", 0, on_put=lambda _: threading.Event().wait())

    def configure(self, config: HangConfig) -> None:
        if config.hang_on_configure:
            threading.Event().wait()

    def close(self) -> None:
        if self.config.hang_on_close:
            threading.Event().wait()


@dataclass
class CrashyConfig:
    label: str = ""
    crash_after: float = 0.0
    """Seconds after being configured at which the process dies with exit code 5 (0: never)."""


@emd.register_device_type(name="test.Crashy")
class Crashy(emd.MetaDevice):
    """A device whose process dies on demand: a put of CRASH=True, or crash_after s after it
    is configured (a crash loop when restarted with that config)."""

    Config = CrashyConfig

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self.add_pv("CRASH", False, on_put=lambda crash: os._exit(4) if crash else None)

    def configure(self, config: CrashyConfig) -> None:
        if config.crash_after > 0:
            threading.Timer(config.crash_after, os._exit, (5,)).start()


@emd.hookimpl
def emd_device_types() -> list[type[emd.MetaDevice]]:
    return [Hang, Crashy]
