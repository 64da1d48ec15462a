"""HostSettings: limits the host sets for its devices (command line or environment), which no
put can change: the collectors' data root, the largest put, ceilings for collector memory and
for a factory's max_devices.

Why outside CONFIG: CONFIG is what clients put, so a guard kept there is a guard any client can
lift. These come from whoever starts the process; a factory hands its settings to every child,
as it hands its access security file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from p4p import Value

from ._state import DeviceError

DATA_ROOT_ENV = "EMD_DATA_ROOT"
MAX_PUT_BYTES_ENV = "EMD_MAX_PUT_BYTES"
MAX_MEMORY_ENV = "EMD_MAX_MEMORY_MB"
MAX_DEVICES_ENV = "EMD_MAX_DEVICES"
DEFAULT_DATA_ROOT = "emd-data"
"""Relative to the working directory of the process, as ``data_dir=""`` always was."""
DEFAULT_MAX_PUT_BYTES = 16 << 20
DEFAULT_MAX_MEMORY_MB = 4096.0
DEFAULT_MAX_DEVICES = 100


@dataclass(frozen=True)
class HostSettings:
    """What the host allows its devices; set by ``--data-root``, ``--max-put-bytes``,
    ``--max-memory-mb`` and ``--max-devices`` (or EMD_DATA_ROOT, EMD_MAX_PUT_BYTES,
    EMD_MAX_MEMORY_MB, EMD_MAX_DEVICES), never through a PV."""

    data_root: str = DEFAULT_DATA_ROOT
    """Collectors read and write files only below this directory (their data_dir is relative
    to it)."""
    max_put_bytes: int = DEFAULT_MAX_PUT_BYTES
    """The largest put (strings and arrays of the value, in bytes) a device accepts."""
    max_memory_mb: float = DEFAULT_MAX_MEMORY_MB
    """The highest memory_limit_mb a collector's CONFIG may set."""
    max_devices: int = DEFAULT_MAX_DEVICES
    """The highest max_devices a factory's CONFIG may set."""

    def __post_init__(self) -> None:
        if not str(self.data_root).strip():
            raise DeviceError("the data root must not be empty")
        if self.max_put_bytes < 1:
            raise DeviceError(f"max put bytes must be >= 1, got {self.max_put_bytes}")
        if not self.max_memory_mb > 0:
            raise DeviceError(f"max memory must be > 0 MB, got {self.max_memory_mb}")
        if self.max_devices < 1:
            raise DeviceError(f"max devices must be >= 1, got {self.max_devices}")

    @property
    def root(self) -> Path:
        """The data root as an absolute path (a relative one is taken from the working
        directory of the process)."""
        return Path(self.data_root).expanduser().resolve()

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None, **given: Any) -> HostSettings:
        """Settings from `given` (the command line's values; None: not given), else from the
        environment, else the defaults. The data root is made absolute here, so a child
        started in another directory uses the same one."""
        env = os.environ if env is None else env
        names = {"data_root": (DATA_ROOT_ENV, str), "max_put_bytes": (MAX_PUT_BYTES_ENV, int),
                 "max_memory_mb": (MAX_MEMORY_ENV, float), "max_devices": (MAX_DEVICES_ENV, int)}
        values: dict[str, Any] = {}
        for field, (variable, kind) in names.items():
            value = given.get(field)
            if value is None and env.get(variable, "").strip():
                try:
                    value = kind(env[variable].strip())
                except ValueError:
                    raise DeviceError(f"{variable} must be a number, got {env[variable]!r}") from None
            if value is not None:
                values[field] = value
        settings = cls(**values)
        return cls(**{**values, "data_root": str(settings.root)})


def put_bytes(value: Any) -> int:
    """The size of a put's value: bytes of its strings and arrays (8 per other scalar), summed
    over every field. Walks the value without copying its arrays."""
    if isinstance(value, Value):
        return sum(put_bytes(value[key]) for key in value.keys())
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(put_bytes(item) for item in value)
    return 8


__all__ = ["DATA_ROOT_ENV", "MAX_PUT_BYTES_ENV", "MAX_MEMORY_ENV", "MAX_DEVICES_ENV",
           "HostSettings", "put_bytes"]
