"""Collector test fixtures: a real IOC with calc records, and p4p sources of every type."""

from __future__ import annotations

from typing import Iterator

import pytest

from epics_meta_devices.testing import IocProcess, SourcePVs

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


@pytest.fixture
def sources(prefix) -> Iterator[SourcePVs]:
    served = SourcePVs(prefix)
    yield served
    served.stop()
