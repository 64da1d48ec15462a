"""ping.Ping: echoes whatever is put to PING on PONG."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from p4p import Type
from p4p.nt.common import timeStamp

import epics_meta_devices as emd

PING_TYPE = Type([("value", "v")], id="emd:ping:1.0")
PONG_TYPE = Type([("value", "v"), ("count", "L"), ("timeStamp", timeStamp)], id="emd:pong:1.0")
MAX_DELAY = 5.0


@dataclass
class PingConfig:
    delay: float = 0.0
    """Seconds to wait before answering, to play a slow device (0 to 5)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.delay <= MAX_DELAY:
            raise ValueError(f"delay must be between 0 and {MAX_DELAY} s, got {self.delay}")


@emd.register_device_type
class Ping(emd.MetaDevice):
    """Echo device: a put to PING is answered on PONG while enabled."""

    Config = PingConfig
    client_class = "emd_ping:PingClient"

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self.count = 0
        self.ping_pv = self.add_pv("PING", {}, type=PING_TYPE, on_put=self.on_ping_put)
        self.pong_pv = self.add_pv("PONG", {}, type=PONG_TYPE, nt_fields=True)
        self.count_pv = self.add_pv("COUNT", 0)

    def on_ping_put(self, value: Any) -> None:
        self.require_state(emd.DeviceState.running)
        if self.config.delay:
            time.sleep(self.config.delay)
        self.count += 1
        self.pong_pv.post({"value": value["value"], "count": self.count})
        self.count_pv.post(self.count)
