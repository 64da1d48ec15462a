"""ophyd-async devices for epics-meta-devices, thin over PVI: ``EmdDevice`` for any emd device
(its STATE, ENABLE and CONFIG fields as signals, stage = configure and enable, its outputs
readable), ``Factory`` for a factory, and plan stubs in ``emd_ophyd.plans``."""

from ._device import CORE_ENTRIES, EmdDevice, Factory

__all__ = ["CORE_ENTRIES", "EmdDevice", "Factory"]
