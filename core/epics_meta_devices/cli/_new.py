"""``emd new DEST``: start a device plugin project from the copier template.

The template is the repository's ``template/`` directory. A wheel of epics-meta-devices carries
it as ``epics_meta_devices/_template`` (hatch ``force-include`` in pyproject.toml); an editable
install from a checkout uses ``template/`` in place; ``--template`` names any other copy (a
directory or a git URL). The questions are the template's own (template/copier.yml): options
answer them, copier asks the rest, or takes their defaults with ``--defaults``.

Copier's validators cannot see what is installed, so this command hands the template the names
in use here (device types of the installed plugins, importable modules, installed distributions,
``emd`` commands); the template refuses those, as it refuses the first-party names by itself
when run with plain ``copier copy``.
"""

from __future__ import annotations

import enum
import importlib.metadata
import pkgutil
import re
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

from .._plugins import call_isolated, plugin_manager
from .._registry import registry
from ._app import app

PACKAGED_TEMPLATE = Path(__file__).resolve().parent.parent / "_template"
"""Where a wheel install has the template (see ``force-include`` in pyproject.toml)."""
CHECKOUT_TEMPLATE = Path(__file__).resolve().parents[3] / "template"
"""Where a source checkout (an editable install) has it: core/epics_meta_devices/cli/ -> template/."""

OPTIONS = {
    "distribution": "--distribution",
    "package": "--package",
    "device_type": "--type",
    "class_name": "--class",
    "description": "--description",
    "author_name": "--author",
    "author_email": "--email",
    "kind": "--kind",
    "with_client": "--client",
    "with_cli": "--cli",
    "cli_command": "--command",
}
"""Template question -> the option of `emd new` that answers it (for error messages)."""
NO_TERMINAL = "no terminal to ask the questions on: add --defaults (and options for the answers you want)"


class Kind(str, enum.Enum):
    """The template's `kind` question: which base class the new device type has."""

    device = "device"
    processing = "processing"


def fail(message: str, code: int = 1) -> NoReturn:
    """End the command with one line on stderr, as ``emd`` does for device errors."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def find_template(given: Optional[str]) -> str:
    """The template to copy: `given`, else the packaged one, else the checkout's. A directory
    is made absolute: copier records it in the answers file, for `copier update` and `recopy`
    run from inside the new project."""
    if given:
        return str(Path(given).resolve()) if Path(given).is_dir() else given
    for candidate in (PACKAGED_TEMPLATE, CHECKOUT_TEMPLATE):
        if (candidate / "copier.yml").is_file():
            return str(candidate)
    fail("the device template is not installed with epics-meta-devices here: "
         "pass --template PATH_OR_URL (the template/ directory of an epics-meta-devices checkout)")


def names_in_use() -> dict[str, list[str]]:
    """What a new project must not take, as the template's hidden questions expect it."""
    plugin_manager()
    # `app` has the plugins' commands only when run through main(); ask the plugins again on
    # a scratch app so the list is complete however this command was invoked.
    plugin_commands = typer.Typer()
    plugin_commands.callback()(lambda: None)
    call_isolated("emd_cli", app=plugin_commands)
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    commands |= set(typer.main.get_command(plugin_commands).commands)  # type: ignore[attr-defined]
    modules = {module.name for module in pkgutil.iter_modules()}
    modules |= set(sys.stdlib_module_names) | set(sys.builtin_module_names)
    distributions = {_canonical(d.metadata["Name"]) for d in importlib.metadata.distributions()
                     if d.metadata["Name"]}
    return {
        "installed_types": registry.names(),
        "taken_packages": sorted(modules),
        "taken_distributions": sorted(distributions),
        "taken_commands": sorted(commands),
    }


def _canonical(distribution: str) -> str:
    """A distribution name as pip compares them (PEP 503): lowercase, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


@app.command("new")
def new(
    destination: Annotated[Path, typer.Argument(help="Directory to create (must not exist or be empty).")],
    distribution: Annotated[Optional[str], typer.Option(
        help="Distribution name for pip, e.g. emd-thermometer (default: the name of DESTINATION).")] = None,
    package: Annotated[Optional[str], typer.Option(
        help="Python package name (default: the distribution name with _ for -).")] = None,
    device_type: Annotated[Optional[str], typer.Option(
        "--type", help="Device type <group>.<Class>, e.g. thermometer.Thermometer (default: from the package).")] = None,
    class_name: Annotated[Optional[str], typer.Option(
        "--class", help="Python class name of the device (default: the <Class> of --type).")] = None,
    description: Annotated[Optional[str], typer.Option(help="One line saying what the device does.")] = None,
    author: Annotated[Optional[str], typer.Option(help="Author name for pyproject.toml.")] = None,
    email: Annotated[Optional[str], typer.Option(help="Author email for pyproject.toml.")] = None,
    kind: Annotated[Optional[Kind], typer.Option(
        help="device: a MetaDevice with input, command and output PVs; processing: a ProcessingDevice.")] = None,
    with_client: Annotated[Optional[bool], typer.Option(
        "--client/--no-client", help="Add a typed client class (default: yes).")] = None,
    with_cli: Annotated[Optional[bool], typer.Option(
        "--cli/--no-cli", help="Add an `emd` sub-command (default: yes).")] = None,
    cli_command: Annotated[Optional[str], typer.Option(
        "--command", help="Name of the `emd` sub-command (default: the <group> of --type).")] = None,
    defaults: Annotated[bool, typer.Option(
        "--defaults", help="Take the default of every question no option answers, instead of asking.")] = False,
    template: Annotated[Optional[str], typer.Option(
        help="Template directory or git URL (default: the template installed with epics-meta-devices).")] = None,
    vcs_ref: Annotated[Optional[str], typer.Option(
        help="Git tag or commit of a git --template (default: its latest version tag).")] = None,
) -> None:
    """Create a new device plugin project (a pip-installable package) from the copier template."""
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        fail(f"{destination} exists and is not an empty directory: emd new only starts new projects "
             "(to re-render one, run `copier recopy` in it)")
    if not defaults and not sys.stdin.isatty():
        fail(NO_TERMINAL)
    plugin_manager()
    if device_type is not None and device_type in registry:
        info = registry.get(device_type)
        owner = info.plugin or f"{info.cls.__module__}.{info.cls.__qualname__}"
        fail(f"--type {device_type}: device type {device_type!r} is already installed (by {owner}); "
             "choose another name")
    given = {
        "distribution": distribution, "package": package, "device_type": device_type,
        "class_name": class_name, "description": description, "author_name": author,
        "author_email": email, "kind": kind.value if kind else None, "with_client": with_client,
        "with_cli": with_cli, "cli_command": cli_command,
    }
    data = {name: value for name, value in given.items() if value is not None}
    done = copy_template(find_template(template), destination, {**data, **names_in_use()},
                         defaults=defaults, vcs_ref=vcs_ref)
    extras = []
    if done.get("with_client"):
        extras.append(f"{done['class_name']}Client")
    if done.get("with_cli"):
        extras.append(f"`emd {done['cli_command']}`")
    typer.echo(f"created {destination}: {done['distribution']}, device type {done['device_type']} "
               f"({done['kind']}) in package {done['package']}"
               + (f", with {' and '.join(extras)}" if extras else ""))
    typer.echo(f"next: cd {destination} && pip install -e '.[test]' && pytest && emd types")


def copy_template(source: str, destination: Path, data: dict[str, Any], *, defaults: bool,
                  vcs_ref: Optional[str]) -> dict[str, Any]:
    """Run copier (questions not in `data` are asked, or defaulted with `defaults`) and return
    all answers; every failure ends the command with one line."""
    try:
        import copier
        from copier.errors import CopierAnswersInterrupt, CopierError, InteractiveSessionError
        from plumbum import ProcessExecutionError  # how copier reports a failed git command
    except ImportError:
        fail("emd new needs copier: pip install 'epics-meta-devices[template]'")
    try:
        worker = copier.run_copy(source, destination, data=data, defaults=defaults,
                                 vcs_ref=vcs_ref, unsafe=False, quiet=True)
    except InteractiveSessionError:
        fail(NO_TERMINAL)
    except CopierAnswersInterrupt:
        fail("interrupted: nothing was created", code=130)
    except ValueError as exc:  # a validator refused an answer given as an option or a default
        match = re.match(r"Validation error for question '(\w+)': (.*)", str(exc), re.DOTALL)
        if match is None:
            fail(str(exc))
        question, reason = match.groups()
        fail(f"{OPTIONS.get(question, question)}: {' '.join(reason.split())}")
    except CopierError as exc:
        fail(str(exc))
    except ProcessExecutionError as exc:
        reason = (exc.stderr or "").strip().splitlines() or [str(exc)]
        fail(f"git could not get the template {source}: {reason[-1]}")
    except OSError as exc:
        fail(f"{exc.filename or destination}: {exc.strerror or exc}")
    return dict(worker.answers.combined)
