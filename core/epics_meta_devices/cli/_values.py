"""PV values as a user reads them: plain JSON-serialisable data, one JSON object per PV or
update, and text lines (``PV value`` for Normative Types, the fields of a plain structure)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import numpy as np
from p4p import Value

SEVERITIES = ("NO_ALARM", "MINOR", "MAJOR", "INVALID")
NT_VALUE_TYPES = ("epics:nt/NTScalar:", "epics:nt/NTScalarArray:", "epics:nt/NTEnum:", "epics:nt/NTTable:")
"""Structure ids printed as ``PV value`` (their ``value`` is what the PV is about)."""


def plain(data: Any) -> Any:
    """`data` as JSON-serialisable Python data: p4p Values as dicts, NumPy arrays as lists,
    NumPy scalars as Python numbers, nested containers converted all the way down."""
    if isinstance(data, Value):
        return plain(data.todict())
    if isinstance(data, dict):
        return {str(key): plain(item) for key, item in data.items()}
    if isinstance(data, (list, tuple)):
        return [plain(item) for item in data]
    if isinstance(data, (np.ndarray, np.generic)):
        return plain(data.tolist())  # tolist of an object array may still hold Values
    return data


def to_json(data: Any) -> str:
    """One line of JSON for `data` (anything `plain` converts)."""
    return json.dumps(plain(data))


def _nt(value: Value) -> str:
    """The Normative Type of `value` ("NTScalar", "NTEnum", ...), "" for a plain structure."""
    ident = value.getID()
    return ident.split("/")[1].split(":")[0] if ident.startswith(NT_VALUE_TYPES) else ""


def _field(value: Value, name: str) -> Any:
    return value[name] if name in value.keys() else None


def _time(value: Value) -> float | None:
    """Seconds since the epoch of ``timeStamp``, None when absent or never set (1970)."""
    stamp = _field(value, "timeStamp")
    if stamp is None or not stamp["secondsPastEpoch"]:
        return None
    return stamp["secondsPastEpoch"] + stamp["nanoseconds"] * 1e-9


def record(name: str, value: Value) -> dict[str, Any]:
    """The JSON object of one PV or update: ``pv`` and ``value`` (the NT value, or the whole of
    a plain structure), plus ``severity``, ``status``, ``message`` and ``time`` where the type
    has them. An NTEnum's value is its choice, with its ``index`` beside it."""
    kind = _nt(value)
    if not kind:
        return {"pv": name, "value": plain(value)}
    result: dict[str, Any] = {"pv": name}
    if kind == "NTEnum":
        index, choices = value["value.index"], list(value["value.choices"])
        result["value"] = choices[index] if 0 <= index < len(choices) else index
        result["index"] = index
    else:
        result["value"] = plain(value["value"])
    alarm = _field(value, "alarm")
    if alarm is not None:
        result.update(severity=SEVERITIES[alarm["severity"]] if 0 <= alarm["severity"] < 4 else alarm["severity"],
                      status=alarm["status"], message=alarm["message"])
    if "timeStamp" in value.keys():
        result["time"] = _time(value)
    return result


def text(value: Any) -> str:
    """A leaf value as text: strings as they are, everything else as JSON (``true``, ``[1, 2]``)."""
    return value if isinstance(value, str) else json.dumps(plain(value))


def lines(name: str, value: Value, *, with_time: bool = False) -> list[str]:
    """Text lines of one PV or update. Normative Types: ``PV [time] value [severity message]``
    (a table as a header and rows under ``PV``); plain structures: ``PV`` and one indented
    ``field value`` line per leaf field."""
    kind = _nt(value)
    if kind == "NTTable":
        return [name, *_table(value["value"])]
    if not kind:
        return [name, *(f"  {field} {text(leaf)}" for field, leaf in _leaves(plain(value)))]
    entry = record(name, value)
    words = [name]
    if with_time and entry.get("time") is not None:
        words.append(datetime.datetime.fromtimestamp(entry["time"]).isoformat(sep=" ", timespec="milliseconds"))
    words.append(text(entry["value"]))
    if entry.get("severity") not in (None, "NO_ALARM"):
        words += [entry["severity"], entry["message"]]
    return [" ".join(word for word in words if word != "")]


def _leaves(data: Any, path: str = "") -> list[tuple[str, Any]]:
    """(dotted field name, value) of every leaf of nested dicts."""
    if isinstance(data, dict) and data:
        return [leaf for key, item in data.items() for leaf in _leaves(item, f"{path}.{key}" if path else key)]
    return [(path, data)]


def _table(columns: Value) -> list[str]:
    """An NTTable's columns as aligned text: a header, then one line per row."""
    names = list(columns.keys())
    cells = [names] + [[text(cell) for cell in row] for row in zip(*(plain(columns[n]) for n in names))]
    widths = [max(len(row[i]) for row in cells) for i in range(len(names))]
    return ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
