# Shared by tests/ and plugins/*/tests: loopback EPICS with ports of this run's own, and fixtures.
#
# The whole suite runs as the owner works on a shared network: every device and factory the
# tests start (through `emd ... run`, which reads EMD_ACF) enforces an access security file
# that lets only this OS user write and everyone read. A test of open behaviour says so with
# env={"EMD_ACF": ""}; EMD_TEST_ACF=none runs the suite without the file.
import getpass
import os
import tempfile
from pathlib import Path

pytest_plugins = ["epics_meta_devices.pytest_plugin"]

OWNER_ACF = f"""\
UAG(owner) {{{getpass.getuser()}}}
ASG(DEFAULT) {{
    RULE(1, READ)
    RULE(1, WRITE) {{ UAG(owner) }}
}}
"""


def pytest_configure(config):
    if os.environ.get("EMD_TEST_ACF", "owner") != "owner" or hasattr(config, "workerinput"):
        return
    directory = Path(tempfile.mkdtemp(prefix="emd-owner-acf-"))
    directory.chmod(0o755)  # devices run as other users in some tests must read it too
    acf = directory / "owner.acf"
    acf.write_text(OWNER_ACF)
    acf.chmod(0o644)
    os.environ["EMD_ACF"] = str(acf)
