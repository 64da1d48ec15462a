"""Collector test fixtures: a real IOC with calc records, and p4p sources of every type."""

from __future__ import annotations

import time
from typing import Iterator

import numpy as np
import pytest
from p4p.nt import NTEnum, NTScalar
from p4p.server import Server
from p4p.server.thread import SharedPV

from epics_meta_devices.testing import IocProcess

CIRCLE_DB = """
record(calc, "$(P)circle:angle") {
    field(SCAN, ".1 second")
    field(CALC, "(A+B)%360")
    field(INPA, "$(P)circle:angle.VAL NPP")
    field(B, "10")
    field(EGU, "deg")
}
record(calc, "$(P)circle:x") {
    field(INPA, "$(P)circle:angle.VAL CP")
    field(CALC, "COS(A*D2R)")
}
record(calc, "$(P)circle:y") {
    field(INPA, "$(P)circle:angle.VAL CP")
    field(CALC, "SIN(A*D2R)")
}
"""


@pytest.fixture
def ioc(prefix) -> Iterator[IocProcess]:
    """A softIoc serving <prefix>:circle:angle (10 Hz), :circle:x = cos, :circle:y = sin."""
    with IocProcess(CIRCLE_DB, {"P": f"{prefix}:"}, wait_for=f"{prefix}:circle:x") as process:
        yield process


class Sources:
    """p4p PVs served by the test process, posted by the test: every type the collector keeps."""

    KINDS = {
        "double": (NTScalar("d"), 0.0),
        "float": (NTScalar("f"), 0.0),
        "int32": (NTScalar("i"), 0),
        "int64": (NTScalar("l"), 0),
        "uint8": (NTScalar("B"), 0),
        "bool": (NTScalar("?"), False),
        "string": (NTScalar("s"), ""),
        "waveform": (NTScalar("ad"), np.zeros(4)),
        "enum": (NTEnum(), {"index": 0, "choices": ["off", "on", "auto"]}),
    }

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.pvs = {kind: SharedPV(nt=nt, initial=initial) for kind, (nt, initial) in self.KINDS.items()}
        self.server = Server(providers=[{self.name(kind): pv for kind, pv in self.pvs.items()}])

    def name(self, kind: str) -> str:
        return f"{self.prefix}:src:{kind}"

    def post(self, kind: str, value: object, **kws: object) -> None:
        self.pvs[kind].post(value, timestamp=kws.pop("timestamp", time.time()), **kws)

    def retype(self, kind: str, nt: NTScalar, value: object) -> None:
        """Serve `kind` with another type from now on (clients see a reconnect)."""
        self.pvs[kind].close()
        self.pvs[kind].open(nt.wrap(value, timestamp=time.time()))

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def sources(prefix) -> Iterator[Sources]:
    served = Sources(prefix)
    yield served
    served.stop()
