"""Test set-up: EPICS on loopback with ports of this run's own, test device types for child
processes, and fixtures that run devices in their own processes as a user would."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterator

# Before anything imports p4p: loopback only, and a search/server port of this session's own.
from epics_meta_devices.testing import DeviceProcess, unique_prefix, use_loopback_environment

use_loopback_environment()

TESTS_DIR = Path(__file__).parent
# Child processes (`emd device run`) load the test device types as a local plugin.
os.environ["EMD_PLUGINS"] = "emd_test_devices"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(TESTS_DIR))

import pytest  # noqa: E402
from p4p.client.thread import Context  # noqa: E402

from epics_meta_devices import DeviceClient  # noqa: E402


@pytest.fixture
def prefix() -> str:
    """A PV prefix no other test uses."""
    return unique_prefix()


@pytest.fixture
def ctxt() -> Iterator[Context]:
    """A p4p client as in the seed: ``Context('pva', nt=False)``."""
    context = Context("pva", nt=False)
    yield context
    context.close()


@pytest.fixture
def run_device() -> Iterator[Callable[..., DeviceClient]]:
    """Start devices with ``emd device run`` in their own processes; all are closed (and their
    processes gone) at the end of the test."""
    started: list[DeviceProcess] = []

    def start(device_type: str, prefix: str, **kwargs: object) -> DeviceClient:
        process = DeviceProcess(device_type, prefix, **kwargs)  # type: ignore[arg-type]
        started.append(process)
        return process.start()

    start.processes = started  # type: ignore[attr-defined]
    yield start
    for process in started:
        process.stop()
