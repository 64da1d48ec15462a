"""A device type for the PVI tests: a CONFIG with a ``Literal`` field (served as NTEnum) and a
range check of its own. A plugin module of its own, loaded through EMD_PLUGINS by test_pvi.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import epics_meta_devices as emd


@dataclass
class ShutterConfig:
    mode: Literal["auto", "open", "closed"] = "auto"
    exposure: float = 0.1
    """Seconds, 0.001 to 10."""
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.001 <= self.exposure <= 10:
            raise ValueError(f"exposure must be 0.001 to 10 s, got {self.exposure}")


@emd.register_device_type(name="pvitest.Shutter")
class Shutter(emd.MetaDevice):
    """Test shutter: a CONFIG of an enum, a float with a range and a list of strings."""

    Config = ShutterConfig

    def __init__(self, prefix: str, **kwargs: object) -> None:
        super().__init__(prefix, **kwargs)  # type: ignore[arg-type]
        self.open_pv = self.add_pv("OPEN", False)
