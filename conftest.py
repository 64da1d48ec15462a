# Shared by tests/ and plugins/*/tests: loopback EPICS with ports of this run's own, and fixtures.
pytest_plugins = ["epics_meta_devices.pytest_plugin"]
