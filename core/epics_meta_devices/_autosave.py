"""A factory's state file (``emd factory run PREFIX --state FILE``): the devices it runs, written
on every change and read at start, so a restarted factory recreates them (like EPICS autosave).

The file is JSON, replaced atomically: written to a temporary file in the same directory,
flushed to disk (fsync), then renamed over the old one. A crash at any moment leaves either the
old file or the new one, never a half-written one."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable

from ._state import DeviceError

STATE_FORMAT = "emd-factory-state"
STATE_VERSION = 1


@dataclass(frozen=True)
class SavedDevice:
    """One device of a state file: what recreating it needs."""

    type: str
    prefix: str
    creator: str = ""
    config: dict[str, Any] | None = None
    """Its last accepted CONFIG (None: never configured)."""
    enabled: bool = False
    """Whether it was running: it is enabled again when recreated."""
    restart: str = "never"
    restart_limit: int = 0


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "type": (str,), "prefix": (str,), "creator": (str,), "config": (dict, type(None)),
    "enabled": (bool,), "restart": (str,), "restart_limit": (int,),
}


class StateFile:
    """Reads and atomically writes one factory state file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().absolute()

    def load(self) -> list[SavedDevice]:
        """The saved devices; [] when the file does not exist yet. DeviceError (one line, naming
        the file) when it cannot be read or is not a state file: the factory then refuses to
        start rather than start empty and overwrite the devices the file still describes."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise self._unreadable(str(exc)) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self._unreadable(f"not JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise self._unreadable(f"not an emd factory state file (no \"format\": \"{STATE_FORMAT}\")")
        if data.get("version") != STATE_VERSION:
            raise self._unreadable(f"version {data.get('version')!r}, this emd reads version {STATE_VERSION}")
        devices = data.get("devices")
        if not isinstance(devices, list):
            raise self._unreadable("\"devices\" is not a list")
        return [self._entry(i, entry) for i, entry in enumerate(devices)]

    def save(self, devices: Iterable[SavedDevice]) -> None:
        """Replace the file with `devices`, atomically and durably; OSError if it cannot."""
        text = json.dumps({"format": STATE_FORMAT, "version": STATE_VERSION,
                           "devices": [asdict(d) for d in devices]}, indent=2, default=_plain)
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise
        # The rename is durable only once the directory is on disk too.
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _entry(self, index: int, entry: Any) -> SavedDevice:
        if not isinstance(entry, dict):
            raise self._unreadable(f"device {index} is not an object")
        missing = {"type", "prefix"} - set(entry)
        unknown = set(entry) - {f.name for f in fields(SavedDevice)}
        if missing or unknown:
            raise self._unreadable(f"device {index}: " + (f"missing {', '.join(sorted(missing))}" if missing
                                                          else f"unknown field(s) {', '.join(sorted(unknown))}"))
        for name, value in entry.items():
            if not isinstance(value, _FIELD_TYPES[name]) or (name == "restart_limit" and isinstance(value, bool)):
                raise self._unreadable(f"device {index}: {name} has the wrong type ({type(value).__name__})")
        return SavedDevice(**entry)

    def _unreadable(self, reason: str) -> DeviceError:
        return DeviceError(f"state file {self.path} cannot be used: {reason}. The factory did not start: "
                           "fix or move the file (a missing file starts the factory empty)")


def _plain(value: Any) -> Any:
    """JSON for what a CONFIG PV's todict() holds besides plain values: NumPy arrays and scalars."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot save a {type(value).__name__} in a state file")


__all__ = ["SavedDevice", "StateFile"]
