"""What access security costs per put: ping round trips through a ping.Ping device run with an
ACF (`--acf`, every put checked against the rules of its group) against the same device type
run without one, pinged by the same client code in alternating blocks in the same run.

The ACF is a beamline's (operators write, everyone reads, the factory only from the control
host), with this benchmark's own user as the operator, so every put is checked and accepted.
"""

from __future__ import annotations

import getpass
import tempfile
from pathlib import Path

from emd_ping import PingClient
from epics_meta_devices.testing import DeviceProcess, unique_prefix

from ._common import Result
from .ping_roundtrip import ping_alternately

TARGET = 1.1
"""A put under an ACF at most 1.1 times one without (medians)."""

BEAMLINE_ACF = """\
UAG(operators) {{{user}}}
HAG(control) {{"127.0.0.1"}}
ASG(DEFAULT) {{
    RULE(1, READ)
    RULE(1, WRITE) {{ UAG(operators) }}
}}
ASG(FACTORY) {{
    RULE(1, READ)
    RULE(1, WRITE) {{ UAG(operators) HAG(control) }}
}}
"""


def run(count: int = 2000, warmup: int = 100, blocks: int = 20) -> Result:
    """`count` pings to each side after `warmup` each, in `blocks` alternating blocks."""
    with tempfile.TemporaryDirectory(prefix="emd-bench-acf-") as directory:
        acf = Path(directory) / "beamline.acf"
        acf.write_text(BEAMLINE_ACF.format(user=getpass.getuser()))
        checked_prefix, open_prefix = unique_prefix("bench-acf"), unique_prefix("bench-open")
        checked_process = DeviceProcess("ping.Ping", checked_prefix, config={}, args=["--acf", str(acf)])
        open_process = DeviceProcess("ping.Ping", open_prefix, config={})
        with checked_process as checked_client, open_process as open_client:
            checked_client.enable()
            open_client.enable()
            with PingClient(checked_prefix) as checked, PingClient(open_prefix) as bare:
                checked_times, open_times = ping_alternately(checked, bare, count, warmup, blocks)
    return Result("access check per put (ping round trip)", checked_times, open_times,
                  "same device without ACF", TARGET)
