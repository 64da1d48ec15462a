"""Run the fenced code blocks of a Markdown page, in order, as a reader would.

Why a collector of our own and not sybil or pytest-examples: a page of these docs is a story
that starts devices, IOCs and shell commands that serve until closed, then drives them. That
needs per-page setup, background processes with a readiness check and cleanup of what a page
left running, and shell transcripts compared with a rule for timestamps and pids. Those would
all be custom code on top of any of those tools; what is left (finding fenced blocks and
HTML-comment markers) is a few lines.

**Which blocks run.** ```python blocks, ```console blocks and ```sh blocks. Other fences
(plain, toml, ini, db, ...) are data, and run only when a marker says so (``file``).

**Markers** are HTML comments, invisible when the page is rendered:

- ``<!-- test: setup NAME ... -->`` anywhere in the page: fixtures the page needs for its whole
  run (see ``SETUPS`` in tests/test_docs.py), e.g. ``circle_ioc``, a real IOC serving the
  ``dummy:circle:*`` records.
- On the line right before a block (several may follow each other):

  - ``<!-- test: skip REASON -->``: not run; the reason is required.
  - ``<!-- test: file NAME -->``: the block is written to NAME in the page's working directory
    (a plugin module, an IOC database, a JSON file) instead of being run.
  - ``<!-- test: background [until PV] -->``: the block serves until closed (``emd device run``,
    a script ending in ``wait_closed()``, an IOC): it runs in a process of its own, with standard
    input kept open, and the page goes on once PV answers a get. The process gets Ctrl-C (SIGINT) at the end of the page, and is
    killed if it does not end.

**Python blocks** of a page run in one namespace, in the page's working directory. The output
of a ``print(...)`` whose line ends in ``# -> TEXT`` is checked: the lines printed by the block
must contain, in order, lines matching each such TEXT (by the rule below).

**Shell blocks**: in ```console blocks, and ```sh blocks that contain a ``$ `` prompt, each
``$ COMMAND`` line (with ``\\`` continuations) is a command and the lines after it are its
output. In other ```sh blocks every line that is not blank or only a comment is a command
(continued while it ends in ``\\`` or a quote is open), with no output shown. Each command runs
with bash in a subprocess, in the page's working directory, with the test run's loopback EPICS
environment and without the test suite's EMD_PLUGINS. Its exit status must be 0, or non-zero
if its shown output has a line starting with ``Error:``.

**Output rule.** Shown output lines are compared with the real ones (stdout then stderr, or
stderr then stdout: the two streams are captured apart), leaving out pvxs's own log lines,
line by line, after both are normalized: every run of whitespace becomes one space and every
word containing a digit (numbers, times, pids, uuids) but no ``/`` (a path) becomes ``#``. In a shown line, ``...``
matches any text; a shown line that is only ``...`` matches any number of lines. A background
command's shown output must match the start of what it printed by the end of the page.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import signal
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

MARKER = re.compile(r"<!--\s*test:\s*(\w+)\s*(.*?)\s*-->", re.S)
FENCE = re.compile(r"^```(\S*)\s*$")
EXPECT = re.compile(r"print\(.*#\s*->\s?(.*)$")
RUNNABLE = {"python", "console", "sh"}
# pvxs's own log lines, e.g. a second server of this run falling back to another TCP port.
PVXS_LOG = re.compile(r"^\S+ (DEBUG|INFO|WARN|ERR)\S* pvxs\.")


@dataclass
class Block:
    """One fenced block: its language, text, the line of its opening fence and its markers."""

    lang: str
    text: str
    line: int
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"line {self.line}"


@dataclass
class Page:
    """A Markdown page: its blocks in order and the setups it names."""

    path: Path
    blocks: list[Block]
    setups: list[str]


def parse_page(path: Path) -> Page:
    """Split `path` into fenced blocks, each with the markers on the lines right before it."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    setups: list[str] = []
    for kind, argument in MARKER.findall("\n".join(lines)):
        if kind == "setup":
            setups += argument.split()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        markers: dict[str, str] = {}
        j = start - 1
        while j >= 0 and lines[j].strip().startswith("<!--") and lines[j].strip().endswith("-->"):
            for kind, argument in MARKER.findall(lines[j]):
                if kind != "setup":
                    markers[kind] = argument
            j -= 1
        blocks.append(Block(match.group(1), "\n".join(body) + "\n", start + 1, markers))
    return Page(path, blocks, setups)


# --- shell transcripts -------------------------------------------------------------------


@dataclass
class Command:
    """A shell command of a block and the output the block shows for it."""

    text: str
    shown: list[str]
    line: int


def commands(block: Block) -> list[Command]:
    """The commands of a ```console or ```sh block (see the module docstring)."""
    lines = block.text.splitlines()
    result: list[Command] = []
    prompted = any(line.startswith("$ ") for line in lines)
    pending = ""
    pending_line = 0
    for number, line in enumerate(lines, start=block.line + 1):
        if pending:
            pending += "\n" + line
        elif prompted and line.startswith("$ "):
            pending, pending_line = line[2:], number
        elif prompted:
            if result:
                result[-1].shown.append(line)
            continue
        elif line.strip() and not line.strip().startswith("#"):
            pending, pending_line = line, number
        else:
            continue
        if not _incomplete(pending):
            result.append(Command(pending, [], pending_line))
            pending = ""
    if pending:
        raise AssertionError(f"{block.where}: unfinished command {pending!r}")
    return result


def _incomplete(command: str) -> bool:
    """Whether a command goes on in the next line: a trailing backslash or an open quote."""
    if command.endswith("\\"):
        return True
    try:
        shlex.split(command, comments=True)
    except ValueError:
        return True
    return False


def _normalize(line: str) -> str:
    words = [("#" if re.search(r"\d", word) and "/" not in word else word) for word in line.split()]
    return " ".join(words)


def _line_matches(shown: str, actual: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in _normalize(shown).split("..."))
    return re.fullmatch(pattern, _normalize(actual)) is not None


def output_matches(shown: list[str], actual: list[str], *, prefix: bool = False) -> bool:
    """Whether `actual` lines match the `shown` ones by the output rule; with `prefix`, only
    the start of `actual` must match."""
    shown = [line for line in shown if line.strip()]
    actual = [line for line in actual if line.strip() and not PVXS_LOG.match(line)]

    def match(i: int, j: int) -> bool:
        if i == len(shown):
            return prefix or j == len(actual)
        if shown[i].strip() == "...":
            return any(match(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and _line_matches(shown[i], actual[j]) and match(i + 1, j + 1)

    return match(0, 0)


def expects_error(command: Command) -> bool:
    return any(line.startswith("Error:") for line in command.shown)


# --- running a page ----------------------------------------------------------------------


class PageRun:
    """Runs a page's blocks in `workdir` with `env` for subprocesses; a context manager that
    stops every background process and releases what the page's Python left open."""

    def __init__(self, page: Page, workdir: Path, env: dict[str, str]) -> None:
        self.page = page
        self.workdir = workdir
        self.env = env
        # The namespace is a registered module's, as a script's is: dataclasses and pickling
        # look classes up through sys.modules.
        self.module = types.ModuleType("docs_" + re.sub(r"\W", "_", page.path.stem))
        sys.modules[self.module.__name__] = self.module
        self.namespace: dict[str, Any] = self.module.__dict__
        self.background: list[tuple[Block | Command, subprocess.Popen[str], Path]] = []

    def __enter__(self) -> PageRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self) -> None:
        for block in self.page.blocks:
            if "skip" in block.markers:
                assert block.markers["skip"], f"{self.where(block)}: a skip needs a reason"
                continue
            if "file" in block.markers:
                (self.workdir / block.markers["file"]).write_text(block.text)
                continue
            if block.lang not in RUNNABLE:
                continue
            if "background" in block.markers:
                self.start_background(block)
            elif block.lang == "python":
                self.run_python(block)
            else:
                for command in commands(block):
                    self.run_command(block, command)

    def where(self, block: Block, line: int | None = None) -> str:
        return f"{self.page.path.name}:{line or block.line}"

    def run_python(self, block: Block) -> None:
        # Leading newlines make tracebacks name the page's own line numbers.
        code = compile("\n" * block.line + block.text, self.where(block), "exec")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), _cwd(self.workdir):
            exec(code, self.namespace)
        expected = [m.group(1) for line in block.text.splitlines() if (m := EXPECT.search(line))]
        if expected:
            shown = ["..."] + [part for text in expected for part in (text, "...")]
            assert output_matches(shown, printed.getvalue().splitlines()), (
                f"{self.where(block)}: printed\n{printed.getvalue()}\nexpected, in order:\n"
                + "\n".join(expected)
            )

    def run_command(self, block: Block, command: Command) -> None:
        result = subprocess.run(["bash", "-c", command.text], cwd=self.workdir, env=self.env,
                                capture_output=True, text=True, timeout=120)
        result.stdout, errors = (f"{result.stdout}\n{result.stderr}", f"{result.stderr}\n{result.stdout}")
        where = self.where(block, command.line)
        if expects_error(command):
            assert result.returncode != 0, f"{where}: {command.text!r} should fail:\n{result.stdout}"
        else:
            assert result.returncode == 0, (
                f"{where}: {command.text!r} exited with {result.returncode}:\n{result.stdout}"
            )
        if command.shown:
            assert any(output_matches(command.shown, text.splitlines())
                       for text in (result.stdout, errors)), (
                f"{where}: {command.text!r} printed\n{result.stdout}\nthe page shows\n"
                + "\n".join(command.shown)
            )

    def start_background(self, block: Block) -> None:
        """Start the block's command (or Python script) and wait until its PV answers."""
        if block.lang == "python":
            script = self.workdir / f"background_{block.line}.py"
            script.write_text(block.text)
            argv, item = [sys.executable, script.name], block
        else:
            (command,) = commands(block)
            argv, item = ["bash", "-c", command.text], command  # bash execs a lone command
        log = self.workdir / f"background_{block.line}.log"
        with open(log, "w") as out:
            # Standard input stays open, as a terminal's would (an IOC's shell ends at its end).
            process = subprocess.Popen(argv, cwd=self.workdir, env=self.env, stdin=subprocess.PIPE,
                                       stdout=out, stderr=subprocess.STDOUT, text=True)
        self.background.append((item, process, log))
        words = block.markers["background"].split()
        if words[:1] == ["until"]:
            _wait_for_pv(words[1], process, log, self.where(block))

    def close(self) -> None:
        """Release the page's clients and in-process devices, then end background processes
        (Ctrl-C first, as a user would) and check what background commands printed."""
        import epics_meta_devices as emd
        from p4p.client.thread import Context

        for value in list(self.namespace.values()):
            with contextlib.suppress(Exception):
                if isinstance(value, emd.MetaDevice):
                    value.shutdown()
                elif isinstance(value, emd.DeviceClient):
                    value.disconnect()
                elif isinstance(value, Context):
                    value.close()
        problems = []
        for item, process, log in reversed(self.background):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                process.stdin.close()  # type: ignore[union-attr]
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            shown = getattr(item, "shown", [])
            if shown and not output_matches(shown, log.read_text().splitlines(), prefix=True):
                problems.append(f"line {item.line}: printed\n{log.read_text()}\nthe page shows\n"
                                + "\n".join(shown))
        self.background.clear()
        sys.modules.pop(self.module.__name__, None)
        assert not problems, "\n".join(problems)


def _wait_for_pv(name: str, process: subprocess.Popen[str], log: Path, where: str) -> None:
    from p4p.client.thread import Context

    from epics_meta_devices.testing import wait_until

    with Context("pva", nt=False) as ctxt:
        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{where}: exited with {process.returncode}:\n{log.read_text()}")
            try:
                ctxt.get(name, timeout=0.5)
                return True
            except Exception:  # p4p's timeout, or a disconnect while it starts
                return False

        wait_until(answers, 30, f"{where}: {name} answers")


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)
