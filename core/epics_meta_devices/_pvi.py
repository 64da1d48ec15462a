"""PVI: the structure a device serves at ``PREFIX:PVI`` to say which PVs it has and how each
may be used, as FastCS devices serve it, so that ophyd-async's ``PviDeviceConnector`` (and
other PVI readers) builds a Device for any emd device with no device-specific code.

The value is ``{"value": {<entry>: {<mode>: <PV name>}}}`` plus alarm, timeStamp and
``display.description``; a mode is ``r`` (read), ``w`` (write), ``rw``, ``x`` (a command) or
``d`` (the PVI PV of a sub-device). PVs whose names start with a group (``CONFIG:<field>``)
go into the group's own PVI PV (``PREFIX:CONFIG:PVI``), named by the entry ``config``, so
ophyd-async shows them as ``device.config.<field>``.
"""

from __future__ import annotations

import keyword
import re
from typing import Collection, Mapping

from p4p import Type, Value
from p4p.nt.common import alarm, timeStamp

PVI_SUFFIX = "PVI"
"""The PVI PV of a device is ``PREFIX:PVI``, of a group ``PREFIX:<GROUP>:PVI``."""
PVI_MODES = ("r", "w", "rw", "x", "d")

_NOT_IN_NAMES = re.compile(r"[^a-z0-9_]")
_VECTOR_ENTRY = re.compile(r"^__\d+$")  # ophyd-async reads "__N" entries as DeviceVector items
DEVICE_ATTRIBUTES = frozenset({
    "check_value", "children", "clear_sub", "collect", "collect_asset_docs", "collect_pages", "complete",
    "connect", "describe", "describe_collect", "describe_configuration", "get_index", "hints", "kickoff",
    "locate", "log", "name", "parent", "pause", "prepare", "read", "read_configuration", "resume", "set",
    "set_name", "stage", "stop", "subscribe", "trigger", "unstage",
})
"""Attributes of an ophyd-async Device and the bluesky protocols (0.21): an entry of one of
these names would shadow it and fail the connect, so such entries get a trailing ``_``, as
ophyd-async itself names such children (a CONFIG field ``name`` is ``device.config.name_``)."""


def entry_name(suffix: str) -> str:
    """The PVI entry of the PV ``PREFIX:<suffix>``: lower case, with every character a
    structure field name cannot hold (``:``, ``-``, ...) replaced by ``_``."""
    name = _NOT_IN_NAMES.sub("_", suffix.lower())
    if not name or name[0].isdigit() or keyword.iskeyword(name) or _VECTOR_ENTRY.match(name):
        name = f"pv_{name}"
    return f"{name}_" if name in DEVICE_ATTRIBUTES else name


def _unique(name: str, taken: set[str]) -> str:
    # "OUT:a-b" and "OUT:a:b" both give out_a_b: number the later one, never drop a PV
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}_{number}", number + 1
    taken.add(candidate)
    return candidate


def pvi_value(entries: Mapping[str, Mapping[str, str]], description: str = "") -> Value:
    """The PVI Value of `entries` ({entry: {mode: PV name}}), stamped now."""
    for entry, modes in entries.items():
        unknown = set(modes) - set(PVI_MODES)
        if unknown:
            raise ValueError(f"PVI entry {entry!r}: unknown access modes {sorted(unknown)}")
    value_type = ("S", "structure", [
        (entry, ("S", "structure", [(mode, "s") for mode in modes])) for entry, modes in entries.items()
    ])
    pvi_type = Type([
        ("alarm", alarm),
        ("timeStamp", timeStamp),
        ("display", ("S", None, [("description", "s")])),
        ("value", value_type),
    ])
    return Value(pvi_type, {"display": {"description": description}, "value": dict(entries)})


def device_pvi(
    prefix: str,
    modes: Mapping[str, str],
    groups: Collection[str] = (),
    description: str = "",
) -> dict[str, Value]:
    """Every PVI PV of a device: {PV suffix: Value}, the device's own (``PVI``) and one per
    group (``<GROUP>:PVI``, always served, empty when the group has no PVs).

    `modes` maps the suffix of each PV to list (``STATE``, ``CONFIG:gain``, ...) to its access
    mode. Entries are in the order given, so PVI reads like the device's PV list."""
    tables: dict[str, dict[str, dict[str, str]]] = {"": {}}
    taken: dict[str, set[str]] = {"": set()}
    for group in groups:
        tables[group], taken[group] = {}, set()
        tables[""][_unique(entry_name(group), taken[""])] = {"d": f"{prefix}:{group}:{PVI_SUFFIX}"}
    for suffix, mode in modes.items():
        group, _, rest = suffix.partition(":")
        if not rest or group not in tables:
            group, rest = "", suffix
        tables[group][_unique(entry_name(rest), taken[group])] = {mode: f"{prefix}:{suffix}"}
    return {
        (f"{group}:{PVI_SUFFIX}" if group else PVI_SUFFIX): pvi_value(entries, description)
        for group, entries in tables.items()
    }


def pvi_entries(value: Value) -> dict[str, dict[str, str]]:
    """The entries of a PVI Value as plain dicts (to compare two PVIs)."""
    return value["value"].todict()
