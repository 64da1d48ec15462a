"""The fixtures of epics_meta_devices.pytest_plugin: `prefix` (a PV prefix of the test's own),
`ctxt` (a p4p client) and `run_device` (a device in its own process, closed after the test).
Importing the plugin also keeps EPICS on loopback with ports of this test session's own."""

pytest_plugins = ["epics_meta_devices.pytest_plugin"]
