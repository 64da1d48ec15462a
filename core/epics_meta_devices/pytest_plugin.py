"""pytest fixtures for device tests: ``pytest_plugins = ["epics_meta_devices.pytest_plugin"]``
in a conftest.py. Importing it puts EPICS on loopback with this session's own ports (before
any test creates a p4p Context or Server)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from .testing import DeviceProcess, unique_prefix, use_loopback_environment

# Before any test creates a p4p Context or Server: loopback only, and a search/server port of this session's own.
use_loopback_environment()

import pytest  # noqa: E402
from p4p.client.thread import Context  # noqa: E402

from ._client import DeviceClient  # noqa: E402


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
    """``run_device(type, prefix, config=..., args=...)`` runs a device with ``emd device run``
    in its own process and returns a DeviceClient; every device is closed and its process gone
    at the end of the test. ``run_device.processes`` lists the DeviceProcess objects."""
    started: list[DeviceProcess] = []

    def start(device_type: str, prefix: str, **kwargs: Any) -> DeviceClient:
        process = DeviceProcess(device_type, prefix, **kwargs)
        started.append(process)
        return process.start()

    start.processes = started  # type: ignore[attr-defined]
    yield start
    for process in started:
        process.stop()
