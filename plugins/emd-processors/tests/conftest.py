"""Fixtures of the processor tests: p4p source PVs served by the test process."""

from __future__ import annotations

from typing import Iterator

import pytest

from epics_meta_devices.testing import SourcePVs


@pytest.fixture
def sources(prefix) -> Iterator[SourcePVs]:
    """``<prefix>:src:<kind>`` PVs of every type (double, int32, waveform, ...) to post to."""
    served = SourcePVs(prefix)
    yield served
    served.stop()
