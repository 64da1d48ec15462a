"""Plugin discovery and the `emd` command line, run as a user runs them: in a subprocess."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

import epics_meta_devices as emd
from epics_meta_devices.testing import run_emd as emd_cli


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A directory put on PYTHONPATH, in which tests write plugins (modules and dist-info)."""
    return tmp_path


def write_entry_point_plugin(where: Path, dist: str, module: str, source: str) -> None:
    """Install a plugin the way pip would leave it: a module plus a dist-info with an ``emd``
    entry point, found by importlib.metadata on sys.path."""
    (where / f"{module}.py").write_text(textwrap.dedent(source))
    info = where / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[emd]\n{module} = {module}\n")


def env_with(where: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(where), os.environ["PYTHONPATH"]])}


def test_version_and_help():
    assert emd_cli("--version").stdout.strip() == f"emd {emd.__version__}"
    for args in (["-h"], ["--help"], ["device", "run", "-h"]):
        result = emd_cli(*args)
        assert result.returncode == 0 and "Usage:" in result.stdout


def test_plugins_lists_installed_plugins_and_types():
    result = emd_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    reports = {r["name"]: r for r in json.loads(result.stdout)}
    assert reports["ping"]["distribution"] == "emd-ping"
    assert reports["ping"]["version"] and reports["ping"]["device_types"] == ["ping.Ping"]
    assert reports["emd_test_devices"]["device_types"] == ["test.Probe", "test.CrashOnStart"]
    assert all(r["error"] == "" for r in reports.values())
    text = emd_cli("plugins").stdout
    assert "emd-ping" in text and "ping.Ping" in text


def test_types_lists_registered_types():
    result = emd_cli("types", "--json")
    types = {t["name"]: t for t in json.loads(result.stdout)}
    assert types["ping.Ping"]["plugin"] == "emd-ping"
    assert types["ping.Ping"]["class"] == "emd_ping._device.Ping"
    assert "ping.Ping" in emd_cli("types").stdout


def test_broken_plugins_are_reported_and_the_rest_works(plugin_dir):
    write_entry_point_plugin(plugin_dir, "emd-broken", "emd_broken", "raise ImportError('missing dependency foo')\n")
    write_entry_point_plugin(plugin_dir, "emd-badhook", "emd_badhook", """
        import epics_meta_devices as emd

        @emd.hookimpl
        def emd_device_types():
            raise RuntimeError("hook exploded")
    """)
    write_entry_point_plugin(plugin_dir, "emd-badcli", "emd_badcli", """
        import epics_meta_devices as emd

        @emd.hookimpl
        def emd_cli(app):
            raise RuntimeError("cli hook exploded")
    """)
    write_entry_point_plugin(plugin_dir, "emd-clash", "emd_clash", """
        import epics_meta_devices as emd

        class Ping(emd.MetaDevice):
            device_type = "ping.Ping"

        @emd.hookimpl
        def emd_device_types():
            return [Ping]
    """)
    result = emd_cli("plugins", "--json", env=env_with(plugin_dir))
    assert result.returncode == 0, result.stderr
    reports = {r["name"]: r for r in json.loads(result.stdout)}
    assert reports["emd_broken"]["error"] == "ImportError: missing dependency foo"
    assert reports["emd_broken"]["distribution"] == "emd-broken"
    assert reports["emd_badhook"]["error"] == "RuntimeError: hook exploded"
    # Two plugins claiming one type name: the one loaded second is refused, never silently swapped.
    clash = [r for r in (reports["emd_clash"], reports["ping"]) if r["error"]]
    assert len(clash) == 1 and "device type 'ping.Ping' is already registered by" in clash[0]["error"]
    assert "cli hook exploded" in result.stderr and "Traceback" not in result.stderr
    text = emd_cli("plugins", env=env_with(plugin_dir)).stdout
    assert "load error: ImportError: missing dependency foo" in text
    types = emd_cli("types", env=env_with(plugin_dir))
    assert types.returncode == 0 and "ping.Ping" in types.stdout


def test_plugin_adds_device_type_and_command(plugin_dir, prefix, run_device):
    """A plugin registered in a fixture: its type runs, its sub-command appears."""
    (plugin_dir / "emd_extra.py").write_text(textwrap.dedent("""
        import typer
        import epics_meta_devices as emd

        @emd.register_device_type
        class Counter(emd.MetaDevice):
            \"\"\"Counts.\"\"\"

        @emd.hookimpl
        def emd_device_types():
            return [Counter]

        extra = typer.Typer(help="Extra commands.")

        @extra.command()
        def hello(name: str) -> None:
            print(f"hello {name}")

        @emd.hookimpl
        def emd_cli(app):
            app.add_typer(extra, name="extra")
    """))
    env = {**env_with(plugin_dir), "EMD_PLUGINS": "emd_test_devices,emd_extra"}
    assert emd_cli("extra", "hello", "world", env=env).stdout.strip() == "hello world"
    assert "extra.Counter" in emd_cli("types", env=env).stdout
    client = run_device("extra.Counter", prefix, env=env)
    assert client.device_type == "extra.Counter" and client.info["description"] == "Counts."


def test_status_of_a_running_device(prefix, run_device):
    run_device("ping.Ping", prefix, config={"delay": 0.0})
    result = emd_cli("status", prefix, "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["type"] == "ping.Ping" and status["state"] == "ready"
    assert status["config"] == {"delay": 0.0} and status["info"]["plugin"] == "emd-ping"
    text = emd_cli("status", prefix).stdout
    assert "ready" in text and "ping.Ping" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["status", "emdtest:absent:device", "--timeout", "0.5"], "Error: emdtest:absent:device:TYPE did not answer within 0.5 s"),
        (["device", "run", "no.Such", "p"], "Error: unknown device type 'no.Such' (known: "),
        (["device", "run", "ping.Ping", "p", "--config", "{not json"], "Error: --config is not valid JSON"),
        (["device", "run", "ping.Ping", "p", "--config", "[1, 2]"], "Error: --config must be a JSON object"),
        (["device", "run", "ping.Ping", "p", "--config", "@/no/such/file.json"], "Error: cannot read config file /no/such/file.json"),
        (["device", "run", "ping.Ping", "emdtest:bad:config", "--config", '{"delay": 99}'], "Error: invalid CONFIG: delay must be between 0 and 5.0 s"),
        (["device", "run", "ping.Ping", "emdtest:bad:config", "--config", '{"color": "red"}'], "Error: unknown CONFIG field(s) color (fields: delay)"),
        (["types", "--log-level", "LOUD"], "Error: unknown log level 'LOUD'"),
        (["device", "run", "ping.Ping", "emdtest:bad:config", "--config", '{"delay": true}'], "Error: CONFIG field 'delay' expects float, got True"),
        (["ping", "emdtest:absent:ping", "--timeout", "0.5"], "Error: emdtest:absent:ping:PONG did not answer within 0.5 s"),
    ],
)
def test_cli_errors_are_one_clear_line(args, message):
    result = emd_cli(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_namespace_resolves_registered_types():
    import emd_ping

    assert emd.devices.ping.Ping is emd_ping.Ping
    assert "ping" in dir(emd.devices) and "Ping" in dir(emd.devices.ping)
    with pytest.raises(AttributeError, match="no device group 'nothing'"):
        emd.devices.nothing
    with pytest.raises(AttributeError, match="no device type 'ping.Pong'"):
        emd.devices.ping.Pong


def test_type_names_and_registry_rules():
    from epics_meta_devices._registry import DeviceTypeRegistry, default_type_name

    class Local(emd.MetaDevice):
        pass

    Local.__module__ = "emd_widgets.device"
    assert default_type_name(Local) == "widgets.Local"
    Local.__module__ = "__main__"
    assert default_type_name(Local) == "local.Local"
    registry = DeviceTypeRegistry()
    registry.add(Local)
    registry.add(Local)  # the same class again is harmless

    class Other(emd.MetaDevice):
        device_type = "local.Local"

    with pytest.raises(emd.DeviceError, match="already registered"):
        registry.add(Other)
    with pytest.raises(emd.DeviceError, match="unknown device type 'x.Y' \\(known: local.Local\\)"):
        registry.get("x.Y")

    class Undecorated(emd.MetaDevice):  # returned by a hook without @register_device_type
        pass

    Undecorated.__module__ = "emd_widgets.device"
    assert registry.add(Undecorated).name == "widgets.Undecorated"
    assert Undecorated.device_type == "widgets.Undecorated"  # TYPE and logs show the full name

    class Child(Undecorated):  # a subclass is its own type, not its parent's
        pass

    Child.__module__ = "emd_widgets.device"
    assert registry.add(Child).name == "widgets.Child"
