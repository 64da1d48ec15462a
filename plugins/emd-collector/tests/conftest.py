"""Collector test fixtures: a real IOC with calc records, and p4p sources of every type."""

from __future__ import annotations

from typing import Iterator

import pytest

from emd_collector.demo import CIRCLE_DB
from epics_meta_devices.testing import IocProcess, SourcePVs


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
