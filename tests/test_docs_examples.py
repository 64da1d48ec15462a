"""The docs' code is the code: examples from docs/ are extracted and run as a user would."""

from __future__ import annotations

import re
from pathlib import Path

from epics_meta_devices.testing import DeviceProcess, SourcePVs, wait_until

DOCS = Path(__file__).parent.parent / "docs"


def python_block_after(page: str, heading: str) -> str:
    """The first ```python block after `heading` in docs/`page`."""
    text = (DOCS / page).read_text()
    after = text[text.index(heading):]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match, f"no python block after {heading!r} in {page}"
    return match.group(1)


def test_the_shortest_processing_device_runs_as_documented(prefix, tmp_path):
    """writing-a-device.md: the Gain processing device, under 20 lines, saved as emd_gain.py."""
    code = python_block_after("writing-a-device.md", "## Processing devices")
    assert len([line for line in code.splitlines() if line.strip()]) < 20
    (tmp_path / "emd_gain.py").write_text(code + "\n\n@emd.hookimpl\ndef emd_device_types():\n"
                                          "    return [Gain]\n")
    sources = SourcePVs(prefix)
    try:
        device = DeviceProcess("gain.Gain", f"{prefix}:gain",
                               config={"x": sources.name("double"), "gain": 10},
                               env={"EMD_PLUGINS": "emd_gain", "PYTHONPATH": str(tmp_path)})
        with device as client:
            client.enable()
            sources.post("double", 4.2)
            wait_until(lambda: client.get_pv("Y")["value"] == 42.0, 10, "Y = 42")
    finally:
        sources.stop()
