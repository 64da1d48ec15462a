"""The copier template (template/) and `emd new`: projects rendered for both kinds of device,
with and without client and command, pass ruff and their own tests once installed; a factory
then lists their types in DEVICETYPES and creates devices that work; bad answers are refused
with one clear line; `copier update` works from a tagged git copy of the template; the core
wheel carries the template for `emd new`.

The projects are installed with pip into a directory of their own that child processes get on
PYTHONPATH (entry points are found there as in site-packages): the shared venv is never
changed, so nothing is left behind, even by a run that is killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import zipfile
from itertools import product
from pathlib import Path

import copier
import pytest
from copier.errors import UserMessageError
from typer.testing import CliRunner

import epics_meta_devices as emd
from epics_meta_devices.cli import app
from epics_meta_devices.testing import DeviceProcess, SourcePVs, foreign_environment, wait_until

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "template"


def variant_name(kind: str, with_cli: bool, with_client: bool) -> str:
    """A distribution name per variant: emd-tt-device-cli-client, emd-tt-processing, ..."""
    return "-".join(["emd-tt", kind] + ["cli"] * with_cli + ["client"] * with_client)


VARIANTS = {
    variant_name(kind, with_cli, with_client): {"kind": kind, "with_cli": with_cli,
                                                "with_client": with_client}
    for kind, with_cli, with_client in product(["device", "processing"], [True, False], [True, False])
}
"""Every combination of the optional parts; all are rendered, linted, installed and listed by
the factory."""
RUN_OWN_TESTS = [name for name, answers in VARIANTS.items() if answers["with_cli"]]
"""The variants whose own tests run: these cover every code path of the template (the others'
tests are subsets of theirs)."""


def answers(name: str) -> dict[str, object]:
    """A variant's full answers: emd-tt-device-cli -> package emd_tt_device_cli, device type
    tt_device_cli.TtDeviceCli (the template's defaults)."""
    group = name.removeprefix("emd-").replace("-", "_")
    return {"distribution": name, **VARIANTS[name], "package": name.replace("-", "_"),
            "device_type": f"{group}.{group.title().replace('_', '')}",
            "cli_command": group.replace("_", "-")}


def render(destination: Path, data: dict[str, object], **kwargs: object) -> None:
    """Copy the template non-interactively, as `copier copy --defaults --data ...` would."""
    copier.run_copy(str(TEMPLATE), destination, data=data, defaults=True, quiet=True,
                           unsafe=False, **kwargs)


def run(*command: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True,
                          timeout=kwargs.pop("timeout", 60), **kwargs)


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every variant rendered, by distribution name."""
    root = tmp_path_factory.mktemp("projects")
    for name in VARIANTS:
        render(root / name, answers(name))
    return {name: root / name for name in VARIANTS}


@pytest.fixture(scope="module")
def plugin_env(projects: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of processes that see the projects installed (pip install, normal wheels)."""
    site = tmp_path_factory.mktemp("site")
    result = run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                 "--no-build-isolation", "--target", site, *projects.values(), timeout=120)
    assert result.returncode == 0, result.stderr
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


# -- the rendered projects ---------------------------------------------------------------------


def test_rendered_files(projects):
    files = {str(p.relative_to(projects["emd-tt-device-cli-client"]))
             for p in projects["emd-tt-device-cli-client"].rglob("*") if p.is_file()}
    assert files == {".copier-answers.yml", ".gitignore", "README.md", "pyproject.toml",
                     "docs/tt_device_cli_client.md", "tests/conftest.py",
                     "tests/test_tt_device_cli_client.py", "emd_tt_device_cli_client/__init__.py",
                     "emd_tt_device_cli_client/_device.py", "emd_tt_device_cli_client/_client.py",
                     "emd_tt_device_cli_client/_cli.py"}
    bare = projects["emd-tt-processing"]
    assert not (bare / "emd_tt_processing/_cli.py").exists()
    assert not (bare / "emd_tt_processing/_client.py").exists()
    pyproject = (bare / "pyproject.toml").read_text()
    assert '[project.entry-points.emd]\nemd_tt_processing = "emd_tt_processing"' in pyproject
    assert 'dependencies = ["epics-meta-devices>=0.1"]' in pyproject
    assert "class TtProcessing(emd.ProcessingDevice):" in (bare / "emd_tt_processing/_device.py").read_text()
    recorded = (bare / ".copier-answers.yml").read_text()
    assert f"_src_path: {TEMPLATE}" in recorded and "device_type: tt_processing.TtProcessing" in recorded
    assert "installed_types" not in recorded  # the hidden lists are not answers


def test_rendered_projects_pass_ruff(projects):
    root = next(iter(projects.values())).parent
    repo_settings = run(sys.executable, "-m", "ruff", "check", "--config", REPO / "pyproject.toml", root)
    assert repo_settings.returncode == 0, repo_settings.stdout
    # pycodestyle too (long lines apart: they depend on the names chosen)
    tidy = run(sys.executable, "-m", "ruff", "check", "--isolated", "--select", "F,E,W",
               "--ignore", "E501", root)
    assert tidy.returncode == 0, tidy.stdout
    for name, path in projects.items():  # each with its own pyproject.toml settings
        own = run(sys.executable, "-m", "ruff", "check", ".", cwd=path)
        assert own.returncode == 0, f"{name}: {own.stdout}"


def test_rendered_projects_pass_their_own_tests(projects, plugin_env):
    """`pytest` in each project, as its README says: all at once, each in its own process, from
    a shell whose EPICS server settings are foreign (the pytest plugin must override them all)."""
    env = {**os.environ, **plugin_env, **foreign_environment()}
    env.pop("EMD_PLUGINS", None)  # only what is installed: no test devices of the core
    # Each in a session of its own, so that a run that hangs goes with all its device processes.
    runs = {name: subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                                   cwd=projects[name], env=env, text=True, start_new_session=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for name in RUN_OWN_TESTS}
    try:
        outputs = {name: process.communicate(timeout=100)[0] for name, process in runs.items()}
    finally:
        for process in runs.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    for name, process in runs.items():
        assert process.returncode == 0, f"{name}:\n{outputs[name]}"
        assert " passed" in outputs[name] and "skipped" not in outputs[name]


# -- installed: `emd types`, a factory ---------------------------------------------------------


def test_factory_lists_creates_and_runs_the_new_types(prefix, plugin_env):
    new_types = {str(answers(name)["device_type"]) for name in VARIANTS}
    listed = run(sys.executable, "-m", "epics_meta_devices", "types", env={**os.environ, **plugin_env})
    assert new_types <= set(listed.stdout.split()), listed.stdout + listed.stderr
    factory_process = DeviceProcess("factory.DeviceFactory", prefix, cli=["factory", "run", prefix],
                                    env=plugin_env)
    factory_process.start()
    source = SourcePVs(prefix)
    try:
        factory = emd.FactoryClient(prefix)
        factory.wait_for_state("running", timeout=10)
        assert new_types <= set(factory.types())

        # A plain device: INPUT -> OUTPUT through its PVs ...
        device_type = answers("emd-tt-device-cli-client")["device_type"]
        device = factory.create(device_type, f"{prefix}:dev", {"gain": 2.0, "offset": 1.0})
        device.enable()
        device.put("INPUT", 3.0)
        assert device.get_pv("OUTPUT")["value"] == 7.0
        # ... and through `emd <command>`, its typed client, in a process that has it installed.
        shown = run(sys.executable, "-m", "epics_meta_devices", "tt-device-cli-client",
                    f"{prefix}:dev", "--value", "4", env={**os.environ, **plugin_env})
        assert shown.stdout == f"{prefix}:dev: OUTPUT 9, COUNT 2\n", shown.stderr
        typed = run(sys.executable, "-c", "import sys, epics_meta_devices as emd; "
                    "print(type(emd.FactoryClient(sys.argv[1]).create(sys.argv[2], sys.argv[3])).__name__)",
                    prefix, device_type, f"{prefix}:dev2", env={**os.environ, **plugin_env})
        assert typed.stdout == "TtDeviceCliClientClient\n", typed.stderr

        # A processing device: Y follows the PV named in its CONFIG.
        processing = factory.create(answers("emd-tt-processing")["device_type"], f"{prefix}:proc",
                                    {"x": source.name("double"), "gain": 3.0})
        processing.enable()
        source.post("double", 2.0)
        wait_until(lambda: processing.get_pv("Y")["value"] == 6.0, what="Y == 3 * 2")
        assert processing.get_pv("Y")["alarm.severity"] == 0

        assert {d["prefix"] for d in factory.devices()} == {f"{prefix}:dev", f"{prefix}:dev2",
                                                            f"{prefix}:proc"}
        factory.disconnect()
    finally:
        source.stop()
        factory_process.stop()


# -- bad answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("data, question, message", [
    ({"distribution": "Emd_Thing"}, "distribution", "must be lowercase letters and digits"),
    ({"distribution": "emd--thing"}, "distribution", "joined by single hyphens"),
    ({"distribution": "emd-ping"}, "distribution", "'emd-ping' is already installed"),
    ({"package": "emd-thing"}, "package", "must be a Python identifier"),
    ({"package": "class"}, "package", "'class' is a Python keyword"),
    ({"package": "epics_meta_devices"}, "package", "already importable"),
    ({"device_type": "Thing"}, "device_type", "must be <group>.<Class>"),
    ({"device_type": "thing.thing"}, "device_type", "CapWords class name"),
    ({"device_type": "ping.Ping"}, "device_type", "'ping.Ping' is already installed"),
    ({"device_type": "collect.Collector"}, "device_type", "already installed"),
    ({"class_name": "thing"}, "class_name", "must be CapWords"),
    ({"description": 'a "quoted" word'}, "description", "without double quotes or backslashes"),
    ({"description": "two\nlines"}, "description", "must be one line"),
    ({"author_email": "nobody"}, "author_email", "not an email address"),
    ({"kind": "robot"}, "kind", "Invalid choice"),
    ({"cli_command": "factory"}, "cli_command", "`emd factory` already exists"),
])
def test_template_refuses_bad_answers(tmp_path, data, question, message):
    with pytest.raises(ValueError, match=message) as refused:
        render(tmp_path / "thing", {"distribution": "emd-thing", **data})
    if question != "kind":
        assert f"Validation error for question '{question}'" in str(refused.value)
    assert not (tmp_path / "thing").exists()


def emd_new(*args: str | Path) -> object:
    """`emd new ARGS...` in this process (stdin is not a terminal, as in CI)."""
    return CliRunner().invoke(app, ["new", *map(str, args)])


def test_emd_new_creates_a_project(tmp_path):
    destination = tmp_path / "my-thermometer"
    result = emd_new(destination, "--defaults", "--distribution", "emd-thermometer",
                     "--type", "thermometer.Thermometer", "--kind", "processing", "--no-cli",
                     "--description", "Reads a thermometer.", "--author", 'Ada "A." Lovelace',
                     "--email", "ada@example.org")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"created {destination}: emd-thermometer, device type "
                                    "thermometer.Thermometer (processing) in package "
                                    "emd_thermometer, with ThermometerClient\n")
    device = (destination / "emd_thermometer/_device.py").read_text()
    assert '@emd.register_device_type(name="thermometer.Thermometer")' in device
    assert "class Thermometer(emd.ProcessingDevice):" in device
    assert not (destination / "emd_thermometer/_cli.py").exists()
    pyproject = (destination / "pyproject.toml").read_text()
    assert 'authors = [{ name = "Ada \\"A.\\" Lovelace", email = "ada@example.org" }]' in pyproject
    if sys.version_info >= (3, 11):
        import tomllib

        project = tomllib.loads(pyproject)["project"]
        assert project["authors"] == [{"name": 'Ada "A." Lovelace', "email": "ada@example.org"}]
        assert project["entry-points"] == {"emd": {"emd_thermometer": "emd_thermometer"}}
    recorded = (destination / ".copier-answers.yml").read_text()
    assert f"_src_path: {TEMPLATE}" in recorded and "taken_packages" not in recorded


@pytest.mark.parametrize("args, message", [
    (["--type", "ping.Ping"], "--type ping.Ping: device type 'ping.Ping' is already installed (by emd-ping)"),
    # test.Scale comes from this test session's EMD_PLUGINS: the check asks the real registry.
    (["--type", "test.Scale"], "--type test.Scale: device type 'test.Scale' is already installed"),
    (["--type", "Thermometer"], "--type: the device type must be <group>.<Class>"),
    (["--distribution", "Emd Thing"], "--distribution: the distribution name must be lowercase"),
    (["--distribution", "pytest"], "--distribution: a distribution named 'pytest' is already installed"),
    (["--package", "json"], "--package: a module named 'json' is already importable"),
    (["--command", "ping"], "--command: `emd ping` already exists"),
    (["--command", "new"], "--command: `emd new` already exists"),
    (["--kind", "robot"], "Invalid value for '--kind'"),
])
def test_emd_new_refuses_bad_answers(tmp_path, args, message):
    result = emd_new(tmp_path / "thing", "--defaults", "--distribution", "emd-thing", *args)
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "thing").exists()


def test_emd_new_refuses_what_it_cannot_do(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken/file").write_text("mine")
    result = emd_new(tmp_path / "taken", "--defaults")
    assert result.exit_code == 1 and "exists and is not an empty directory" in result.output
    result = emd_new(tmp_path / "asked")  # no --defaults, and nobody to ask
    assert result.exit_code == 1 and "no terminal to ask the questions on: add --defaults" in result.output
    result = emd_new(tmp_path / "elsewhere", "--defaults", "--template", tmp_path / "nothing")
    assert result.exit_code == 1 and "Error: " in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_emd_new_as_a_user_runs_it(tmp_path):
    helped = run(sys.executable, "-m", "epics_meta_devices", "new", "--help")
    assert helped.returncode == 0 and "Usage: emd new [OPTIONS]" in helped.stdout
    assert "--type" in helped.stdout and "--defaults" in helped.stdout
    refused = run(sys.executable, "-m", "epics_meta_devices", "new", tmp_path / "x", "--defaults",
                  "--type", "ping.Ping")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == ("Error: --type ping.Ping: device type 'ping.Ping' is already "
                              "installed (by emd-ping); choose another name\n")


# -- copier update, and the template in the wheel ------------------------------------------------


def git(*args: str | Path, cwd: Path) -> str:
    identity = ["-c", "user.name=emd test", "-c", "user.email=test@example.org"]
    result = run("git", *identity, *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_copier_update_needs_a_tagged_git_template(tmp_path):
    # From the plain directory: copy and recopy work, update cannot.
    plain = tmp_path / "plain"
    render(plain, {"distribution": "emd-plain"})
    git("init", "-q", cwd=plain)
    git("add", "-A", cwd=plain)
    git("commit", "-qm", "new", cwd=plain)
    with pytest.raises(UserMessageError, match="cannot obtain old template references"):
        copier.run_update(plain, defaults=True, overwrite=True, quiet=True, unsafe=False)

    # From a git repository of the template with version tags: update merges.
    repository = tmp_path / "template-repo"
    shutil.copytree(TEMPLATE, repository)
    git("init", "-q", cwd=repository)
    git("add", "-A", cwd=repository)
    git("commit", "-qm", "template 0.1.0", cwd=repository)
    git("tag", "v0.1.0", cwd=repository)
    project = tmp_path / "project"
    copier.run_copy(str(repository), project, data={"distribution": "emd-project"}, defaults=True,
                    quiet=True)
    assert "_commit: v0.1.0" in (project / ".copier-answers.yml").read_text()
    git("init", "-q", cwd=project)
    readme = project / "README.md"
    readme.write_text(readme.read_text().replace("# emd-project\n", "# emd-project (our lab)\n"))
    git("add", "-A", cwd=project)
    git("commit", "-qm", "new, with a local change", cwd=project)
    with (repository / "project/.gitignore").open("a") as ignore:
        ignore.write("*.log\n")
    git("commit", "-qam", "ignore logs", cwd=repository)
    git("tag", "v0.2.0", cwd=repository)

    copier.run_update(project, defaults=True, overwrite=True, quiet=True, unsafe=False)
    assert "*.log" in (project / ".gitignore").read_text()          # the template's change
    assert readme.read_text().startswith("# emd-project (our lab)\n")  # ours, kept
    assert "_commit: v0.2.0" in (project / ".copier-answers.yml").read_text()


def test_core_wheel_carries_the_template_for_emd_new(tmp_path):
    built = run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                "--wheel-dir", tmp_path / "wheel", REPO, timeout=120)
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "wheel").glob("epics_meta_devices-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    assert {"epics_meta_devices/_template/copier.yml",
            "epics_meta_devices/_template/project/{{package}}/_device.py.jinja",
            "epics_meta_devices/epics-loopback.env"} <= names  # read by the loopback settings
    # `emd new` of the unpacked wheel (first on PYTHONPATH) copies the template it carries.
    site = os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": site}
    made = run(sys.executable, "-m", "epics_meta_devices", "new", tmp_path / "made", "--defaults",
               env=env)
    assert made.returncode == 0, made.stderr
    recorded = (tmp_path / "made/.copier-answers.yml").read_text()
    assert f"_src_path: {tmp_path / 'site/epics_meta_devices/_template'}" in recorded
