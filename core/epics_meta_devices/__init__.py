"""epics-meta-devices: turn recording and processing steps into EPICS devices.

``import epics_meta_devices as emd``; write a device by subclassing `MetaDevice` and decorating
it with `register_device_type` (a `ProcessingDevice` for one that computes outputs from input
PVs); reach installed types as ``emd.devices.<group>.<Class>``; drive
any device with `DeviceClient`.
"""

from __future__ import annotations

import importlib.metadata

from ._access import (
    CONTROL_GROUP, DEFAULT_GROUP, FACTORY_GROUP, PUT, READ, RPC, AccessPolicy, Client, current_client,
)
from ._client import DeviceClient, client_for
from ._config import EmptyConfig, config_from_json, config_to_dict
from ._device import MetaDevice, validate_prefix
from ._host import HostSettings
from ._inputs import InputNameError, InputPV, parse_input, without_scheme
from ._namespace import DeviceNamespace
from ._plugins import (
    ENTRY_POINT_GROUP,
    PluginReport,
    exporters,
    plugin_manager,
    plugin_reports,
    uploaders,
)
from ._processing import InputSample, ProcessingConfig, ProcessingDevice, ProcessingError
from ._pvs import DevicePV
from ._registry import DeviceTypeInfo, register_device_type, registry
from ._state import DeviceError, DeviceState, DeviceTimeout, IllegalTransition, UploadError
from .hookspecs import hookimpl

from . import factory  # noqa: E402  (emd.factory.DeviceFactory, as in the seed)
from .factory import DeviceFactory, FactoryClient  # noqa: E402

__version__ = importlib.metadata.version("epics-meta-devices")

devices = DeviceNamespace()
"""Installed device types: ``emd.devices.ping.Ping('p1')``."""

__all__ = [
    "CONTROL_GROUP",
    "DEFAULT_GROUP",
    "FACTORY_GROUP",
    "PUT",
    "READ",
    "RPC",
    "AccessPolicy",
    "Client",
    "current_client",
    "ENTRY_POINT_GROUP",
    "DeviceClient",
    "DeviceFactory",
    "DeviceError",
    "DevicePV",
    "DeviceState",
    "DeviceTimeout",
    "DeviceTypeInfo",
    "EmptyConfig",
    "FactoryClient",
    "HostSettings",
    "IllegalTransition",
    "InputNameError",
    "InputPV",
    "InputSample",
    "MetaDevice",
    "PluginReport",
    "ProcessingConfig",
    "ProcessingDevice",
    "ProcessingError",
    "UploadError",
    "__version__",
    "client_for",
    "config_from_json",
    "config_to_dict",
    "devices",
    "exporters",
    "factory",
    "hookimpl",
    "parse_input",
    "plugin_manager",
    "plugin_reports",
    "register_device_type",
    "registry",
    "uploaders",
    "validate_prefix",
    "without_scheme",
]
