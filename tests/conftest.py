"""The core's tests also run the device types of emd_test_devices.py, loaded as a local plugin
(EMD_PLUGINS) by the device processes they start."""

from __future__ import annotations

import os
import sys
from pathlib import Path

TESTS_DIR = Path(__file__).parent
os.environ["EMD_PLUGINS"] = "emd_test_devices"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(TESTS_DIR))
