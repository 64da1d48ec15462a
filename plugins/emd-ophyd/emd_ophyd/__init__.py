"""ophyd-async devices for epics-meta-devices, thin over PVI: ``EmdDevice`` for any emd device
(its STATE, ENABLE and CONFIG fields as signals, stage = configure and enable, its outputs
readable), ``Collector`` for a collector in fly scans, ``Factory`` for a factory, and plan
stubs in ``emd_ophyd.plans``."""

from ._collector import Collector, data_key_name
from ._device import CORE_ENTRIES, EmdDevice, Factory

__all__ = ["CORE_ENTRIES", "Collector", "EmdDevice", "Factory", "data_key_name"]
