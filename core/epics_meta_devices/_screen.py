"""Phoebus screens of any device from its PVI: ``emd screen PREFIX -o device.bob``.

The device's ``PREFIX:PVI`` (see _pvi.py) says which PVs it has and how each may be used; this
module reads it (and the PVI of each group, such as CONFIG's fields), looks at each PV's type,
and builds a `pvi.device.Device` from it, which pvi's DLS formatter writes as a Display Builder
(``.bob``) screen, the way FastCS makes its screens. pvi is Diamond's well-kept screen
generator: its layout, widgets and file format are what facilities already use, so this module
only maps PVI entries and PV types to its widgets. PV names on the screen carry ``pva://``:
emd devices serve PVAccess only, and Phoebus assumes Channel Access for bare names.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from p4p import Value
from p4p.client.thread import Context

from ._pvi import PVI_SUFFIX
from ._state import DeviceError, DeviceTimeout

SCREEN_SUFFIXES = (".bob", ".edl")
"""What pvi writes: Phoebus Display Builder, or EDM."""


def pascal_name(entry: str) -> str:
    """pvi's component name of a PVI entry: ``last_error`` -> ``LastError``."""
    name = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", entry) if part)
    return name if name[:1].isalpha() else f"Pv{name}"


def device_screen(prefix: str, context: Context, timeout: float = 5.0) -> Any:
    """The pvi Device of the emd device served under `prefix`, from its PVI."""
    from pvi.device import Device

    return Device(label=prefix, children=_components(f"{prefix}:{PVI_SUFFIX}", context, timeout))


def write_screen(prefix: str, path: Path, timeout: float = 5.0) -> Path:
    """Write the screen of the device under `prefix` to `path` (``.bob`` or ``.edl``)."""
    if path.suffix not in SCREEN_SUFFIXES:
        raise DeviceError(f"cannot write {path.name}: screens are {' or '.join(SCREEN_SUFFIXES)} files")
    try:
        from pvi._format.dls import DLSFormatter
    except ImportError:
        raise DeviceError("emd screen needs pvi: pip install 'epics-meta-devices[screen]'") from None
    with Context("pva", nt=False) as context:
        device = device_screen(prefix, context, timeout)
    DLSFormatter().format(device, path)
    return path


def _components(pvi_name: str, context: Context, timeout: float) -> list[Any]:
    from pvi.device import Grid, Group

    try:
        entries = context.get(pvi_name, timeout=timeout)["value"].todict()
    except TimeoutError:
        raise DeviceTimeout(f"{pvi_name} did not answer within {timeout} s: is the device running?") from None
    names = sorted({pv for modes in entries.values() for mode, pv in modes.items() if mode != "d"})
    values = dict(zip(names, context.get(names, timeout=timeout))) if names else {}
    components = []
    for entry, modes in entries.items():
        name = pascal_name(entry)
        if "d" in modes:  # a group (CONFIG's fields, INFO's ...): its own PVI
            components.append(Group(name=name, layout=Grid(), children=_components(modes["d"], context, timeout)))
        else:
            components.append(_signal(name, modes, values))
    return components


def _signal(name: str, modes: dict[str, str], values: dict[str, Value]) -> Any:
    from pvi.device import ButtonPanel, SignalR, SignalRW, SignalW, SignalX

    if "x" in modes:
        return SignalX(name=name, write_pv=f"pva://{modes['x']}", value="1",
                       write_widget=ButtonPanel(actions={"Go": "1"}))
    pv = modes.get("rw") or modes.get("r") or modes["w"]
    value = values.get(pv)
    read, write = _widgets(value)
    if "rw" in modes:
        return SignalRW(name=name, write_pv=f"pva://{pv}", write_widget=write,
                        read_pv=f"pva://{pv}", read_widget=read)
    if "w" in modes:
        return SignalW(name=name, write_pv=f"pva://{pv}", write_widget=write)
    return SignalR(name=name, read_pv=f"pva://{pv}", read_widget=read)


def _widgets(value: Value | None) -> tuple[Any, Any]:
    """The read and write widgets for a PV of this value's type."""
    from pvi.device import (
        LED, ArrayTrace, CheckBox, ComboBox, TableRead, TableWrite, TextFormat, TextRead, TextWrite,
    )

    if value is None:
        return TextRead(), TextWrite()
    if value.getID().startswith("epics:nt/NTEnum"):
        return TextRead(), ComboBox(choices=list(value["value.choices"]))
    if value.getID().startswith("epics:nt/NTTable"):
        columns = list(value["value"].keys())
        return TableRead(widgets=[TextRead()] * len(columns)), TableWrite(widgets=[TextWrite()] * len(columns))
    code = value.type().aspy("value") if "value" in value.keys() else "S"
    if not isinstance(code, str):  # a plain structure (INFO, STATUS, ...): its text
        return TextRead(format=TextFormat.string), TextWrite(format=TextFormat.string)
    if code == "?":
        return LED(), CheckBox()
    if code == "s":
        return TextRead(format=TextFormat.string), TextWrite(format=TextFormat.string)
    if code.startswith("a") and code != "as":
        return ArrayTrace(axis="x"), TextWrite()
    return TextRead(), TextWrite()


__all__ = ["SCREEN_SUFFIXES", "device_screen", "pascal_name", "write_screen"]
