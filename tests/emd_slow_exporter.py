"""An exporter that takes its time, for tests of how many EXPORTs a collector runs at once;
loaded in device processes through EMD_PLUGINS."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import epics_meta_devices as emd


class SlowExporter:
    """Writes a one-line file after `seconds` (an option, default 2)."""

    name = "slow"
    suffixes = [".slow"]

    def export(self, recording: Any, path: Path, options: Mapping[str, Any]) -> None:
        time.sleep(float(options.get("seconds", 2.0)))
        path.write_text(f"{recording.samples} samples\n")


@emd.hookimpl
def emd_exporters() -> list[Any]:
    return [SlowExporter()]
