"""CONFIG: a device type declares its configuration as a dataclass; this module serves it as a
PVAccess structure, gives the schema of each field for its own Normative Type PV
(``CONFIG:<field>``), and turns puts of a subset of fields into a new, validated dataclass.

The schema comes from the dataclass's type hints alone: no second, hand-written mapping."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Mapping

import numpy as np
from p4p import Type, Value

from ._state import DeviceError

# Python annotation -> PVAccess type code. Only these are allowed, so every CONFIG field can be
# put by any PVAccess client (pvput, p4p, Phoebus) without custom structures.
_TYPE_CODES: dict[Any, str] = {
    bool: "?",
    int: "l",
    float: "d",
    str: "s",
    list[str]: "as",
    list[int]: "al",
    list[float]: "ad",
}


@dataclasses.dataclass
class EmptyConfig:
    """The configuration of a device type that declares none: CONFIG is an empty structure."""


def _choices(annotation: Any) -> tuple[str, ...] | None:
    """The strings of a ``Literal["a", "b"]`` annotation (served as NTEnum), else None."""
    if typing.get_origin(annotation) is typing.Literal:
        args = typing.get_args(annotation)
        if args and all(isinstance(arg, str) for arg in args):
            return tuple(args)
    return None


@dataclasses.dataclass(frozen=True)
class ConfigField:
    """One CONFIG field served as its own PV, ``CONFIG:<name>``: an NTScalar or NTScalarArray
    of type `code`, or an NTEnum of `choices` (a ``Literal`` of strings), so that clients that
    read only Normative Types (ophyd-async, screens) can read and set it."""

    name: str
    code: str
    """The p4p type code of the field (``?``, ``l``, ``d``, ``s``, ``as``, ``al``, ``ad``)."""
    choices: tuple[str, ...] | None = None

    def to_pv(self, value: Any) -> Any:
        """The PV value of a field value (an NTEnum serves the index of the choice)."""
        return self.choices.index(value) if self.choices is not None else value

    def from_pv(self, value: Any) -> Any:
        """The field value of a value put to the PV (an NTEnum index names the choice)."""
        return self.choices[value] if self.choices is not None else value


def config_fields(config_class: type) -> list[ConfigField]:
    """The schema of every CONFIG field of a config dataclass, in declaration order."""
    codes = config_pv_type(config_class)  # also refuses unsupported field types
    return [
        ConfigField(name, codes[name], _choices(annotation))
        for name, annotation in _field_types(config_class).items()
    ]


def _field_types(config_class: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_class)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_class)}


def config_pv_type(config_class: type) -> Type:
    """The PVAccess structure Type of CONFIG for a config dataclass."""
    spec = []
    for name, annotation in _field_types(config_class).items():
        try:
            spec.append((name, "s" if _choices(annotation) else _TYPE_CODES[annotation]))
        except (KeyError, TypeError):  # TypeError: an unhashable annotation
            allowed = 'bool, int, float, str, list[str], list[int], list[float], Literal["a", ...]'
            raise TypeError(
                f"{config_class.__qualname__}.{name}: unsupported CONFIG field type "
                f"{annotation!r} (allowed: {allowed})"
            ) from None
    return Type(spec, id="emd:config:1.0")


def config_to_dict(config: Any) -> dict[str, Any]:
    """The fields of a config dataclass as plain Python values."""
    return dataclasses.asdict(config)


def _coerce(name: str, annotation: Any, value: Any) -> Any:
    """Convert a value arriving from PVAccess (or Python) to the field's declared type."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    choices = _choices(annotation)
    if choices is not None:
        if value not in choices:
            raise DeviceError(
                f"CONFIG field {name!r} expects one of {', '.join(map(repr, choices))}, got {value!r}"
            )
        return value
    origin = typing.get_origin(annotation)
    try:
        if origin is list:
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise TypeError("expected a list")
            (item_type,) = typing.get_args(annotation)
            return [_coerce_scalar(item_type, item) for item in value]
        return _coerce_scalar(annotation, value)
    except (TypeError, ValueError) as exc:
        raise DeviceError(
            f"CONFIG field {name!r} expects {getattr(annotation, '__name__', annotation)}, "
            f"got {value!r}: {exc}"
        ) from None


def _coerce_scalar(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, (bool, np.bool_, int, np.integer)) and value in (0, 1):
            return bool(value)
        raise TypeError("expected a bool")
    if kind is int:
        if isinstance(value, (bool, float)) or not isinstance(value, (int, np.integer)):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise TypeError("expected an integer")
        return int(value)
    if kind is float:
        if isinstance(value, (str, bytes, bool, np.bool_)):
            raise TypeError("expected a number")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise TypeError("expected a string")
        return value
    raise TypeError(f"unsupported type {kind!r}")


def merge_config(config: Any, changes: Mapping[str, Any]) -> Any:
    """A new config: `config` with `changes` applied, coerced and validated.

    Raises DeviceError for unknown fields, values of the wrong type, or a value the dataclass's
    own validation (its ``__post_init__``) rejects. `config` itself is never modified.
    """
    field_types = _field_types(type(config))
    unknown = sorted(set(changes) - set(field_types))
    if unknown:
        known = ", ".join(field_types) or "none"
        raise DeviceError(f"unknown CONFIG field(s) {', '.join(unknown)} (fields: {known})")
    coerced = {name: _coerce(name, field_types[name], value) for name, value in changes.items()}
    try:
        return dataclasses.replace(config, **coerced)
    except (TypeError, ValueError) as exc:
        raise DeviceError(f"invalid CONFIG: {exc}") from None


def changes_from_put(value: Value) -> dict[str, Any]:
    """The fields a CONFIG put touched, as Python values (p4p marks them in changedSet)."""
    return {name: value[name] for name in value.changedSet() if "." not in name}


def config_from_json(text: str, source: str = "config") -> dict[str, Any]:
    """CONFIG fields from JSON text (a JSON object); DeviceError saying what is wrong otherwise."""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeviceError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise DeviceError(f"{source} must be a JSON object of CONFIG fields, not {type(config).__name__}")
    return config
