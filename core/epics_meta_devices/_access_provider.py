"""GuardedProvider: serves a device's PVs like a p4p StaticProvider, but asks the access policy
whether the connecting host may READ a PV before giving it a channel (gets and monitors)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from p4p.server import DynamicProvider
from p4p.server.thread import SharedPV

from ._access import AccessPolicy, host_of

_log = logging.getLogger("emd.access")


class _Channels:
    """The p4p DynamicProvider handler: names served, and their access groups."""

    def __init__(self, policy: AccessPolicy) -> None:
        self.policy = policy
        self.pvs: dict[str, tuple[SharedPV, str]] = {}
        self.lock = threading.Lock()

    def testChannel(self, name: str) -> bool:
        return name in self.pvs

    def makeChannel(self, name: str, peer: str) -> SharedPV | None:
        # Checked again here: p4p may ask for names testChannel never approved.
        with self.lock:
            entry = self.pvs.get(name)
        if entry is None:
            return None
        pv, group = entry
        host = host_of(peer)
        if not self.policy.may_read_from(group, host):
            # p4p refuses the channel; the client's get or monitor times out.
            _log.warning("read of %s refused by access security for %s", name, host)
            return None
        return pv


class GuardedProvider(DynamicProvider):
    """`add(name, pv, group)` and `remove(name)`, as on a StaticProvider; a channel is given
    only to a host the policy lets READ the PV's group. Channels already open stay open when
    the policy is reloaded (as on a gateway); puts and RPCs are checked on every operation."""

    def __init__(self, name: str, policy: AccessPolicy) -> None:
        self._channels = _Channels(policy)
        super().__init__(name, self._channels)

    def add(self, name: str, pv: SharedPV, group: str = "DEFAULT") -> None:
        with self._channels.lock:
            self._channels.pvs[name] = (pv, group)

    def remove(self, name: str) -> None:
        with self._channels.lock:
            entry = self._channels.pvs.pop(name, None)
        if entry is not None:
            entry[0].close()  # clients see a disconnect, as with StaticProvider.remove

    def keys(self) -> Any:
        return list(self._channels.pvs)
