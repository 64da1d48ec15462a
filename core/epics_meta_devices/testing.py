"""Helpers for testing devices: keep EPICS on loopback with ports of one's own, run a device in
its own process as a user would, and make unique prefixes. Used by this project's tests, its
demo and benchmarks, and by projects made from the template."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
from p4p.nt import NTEnum, NTScalar
from p4p.server import Server
from p4p.server.thread import SharedPV

from ._client import DeviceClient
from ._environment import (  # noqa: F401  (part of this module's API since the first release)
    LOOPBACK_ENV,
    describe_ports,
    foreign_environment,
    free_port,
    loopback_environment,
    use_loopback_environment,
)
from ._state import DeviceError, DeviceState, DeviceTimeout


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "the condition") -> None:
    """Check `condition` every 20 ms until it holds; AssertionError naming `what` after
    `timeout` seconds. For values no PV update announces (process tables, files)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def run_emd(*args: str | Path, env: Mapping[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``emd ARGS`` in a subprocess, as a user runs it (this environment plus `env`), with its
    output captured as text."""
    return subprocess.run([sys.executable, "-m", "epics_meta_devices", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd)


def emd_error(*args: str | Path, env: Mapping[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 60) -> str:
    """The one ``Error: ...`` line of an ``emd`` command that must fail: exit status 1, no
    traceback, exactly one such line on stderr."""
    result = run_emd(*args, env=env, cwd=cwd, timeout=timeout)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def unique_prefix(stem: str = "emdtest") -> str:
    """A PV prefix no other test or run uses."""
    return f"{stem}:{uuid.uuid4().hex[:10]}"


class DeviceProcess:
    """A device run with ``emd device run`` in a process of its own, as a user would run it.

    ``with DeviceProcess('ping.Ping', prefix) as client:`` yields a DeviceClient once the
    device serves its PVs, and on exit closes the device and makes sure the process is gone.
    `cli` replaces ``device run TYPE PREFIX``, e.g. ``['factory', 'run', prefix]``.
    """

    def __init__(
        self,
        device_type: str,
        prefix: str,
        *,
        config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        args: list[str] | None = None,
        cli: list[str] | None = None,
    ) -> None:
        self.device_type = device_type
        self.prefix = prefix
        self.command = [sys.executable, "-m", "epics_meta_devices",
                        *(cli or ["device", "run", device_type, prefix])]
        if config is not None:
            self.command += ["--config", json.dumps(dict(config))]
        self.command += args or []
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[str] | None = None
        self.client: DeviceClient | None = None
        # The device's stdout and stderr go to a file, never to a pipe nobody reads while it
        # runs (a full pipe would block a chatty device).
        self._output = tempfile.TemporaryFile(mode="w+", prefix="emd-device-")

    def output(self) -> str:
        """Everything the device process wrote to stdout and stderr so far (its log)."""
        self._output.flush()
        self._output.seek(0)
        return self._output.read()

    def start(self, timeout: float = 20.0) -> DeviceClient:
        """Start the process and wait until the device answers; raise DeviceError with the
        process's own output if it exits first."""
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=self._output, stderr=subprocess.STDOUT, text=True
        )
        self.client = DeviceClient(self.prefix)
        live = [s for s in DeviceState if s is not DeviceState.closed]
        waited = 0.0
        while True:
            try:
                self.client.wait_for_state(*live, timeout=0.5)
                return self.client
            except DeviceTimeout:
                waited += 0.5
            if self.process.poll() is not None:
                self.client.disconnect()
                raise DeviceError(
                    f"{' '.join(self.command[2:])} exited with {self.process.returncode}: {self.output()}"
                )
            if waited >= timeout:
                self.stop()
                raise DeviceTimeout(self._not_serving(timeout))

    def _not_serving(self, timeout: float) -> str:
        """Why a started device may not be found: the ports each side used, and the end of
        what the device itself said."""
        tail = "\n".join(self.output().splitlines()[-20:]) or "(nothing)"
        return (f"{self.prefix} not serving after {timeout} s. A client finds a device only if "
                f"both use the same search port and addresses.\n"
                f"  device process: {describe_ports(self.env)}\n"
                f"  this client:    {describe_ports(os.environ)}\n"
                f"  the device's last output:\n{tail}")

    def stop(self, timeout: float = 10.0) -> int:
        """Close the device through CLOSE if it still answers, then wait for the process to end
        (terminate, then kill, if it will not). Returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None and self.client is not None:
            try:
                self.client.put("CLOSE", True)
            except DeviceError:
                pass  # already closing or gone
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.client is not None:
            self.client.disconnect()
        return self.process.returncode

    def __enter__(self) -> DeviceClient:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class IocProcess:
    """A real EPICS IOC serving `database` with `macros`:
    ``with IocProcess(db_text, {"P": prefix + ":"}, wait_for=prefix + ":x"):``. By default a
    softIoc with QSRV (pvxslibs), serving PVAccess and Channel Access; ``ca_only=True`` starts
    EPICS base's softIoc without any PVAccess server (epicscorelibs, RSRV only), as most IOCs
    at a facility are. Its standard input stays open while it runs (its shell exits at end of
    input)."""

    def __init__(self, database: str, macros: Mapping[str, str] | None = None, *, wait_for: str = "",
                 ca_only: bool = False) -> None:
        self._db = tempfile.NamedTemporaryFile("w", suffix=".db", prefix="emd-ioc-", delete=False)
        self._db.write(database)
        self._db.close()
        self.macros = ",".join(f"{k}={v}" for k, v in (macros or {}).items())
        self.wait_for = wait_for
        self.ca_only = ca_only
        self.process: subprocess.Popen[bytes] | None = None
        self._output = tempfile.TemporaryFile(prefix="emd-ioc-")

    def start(self, timeout: float = 20.0) -> IocProcess:
        if self.ca_only:  # base's softIoc with no PVAccess server loaded: RSRV alone
            command = [sys.executable, "-c", "from epicscorelibs import ioc; "
                       "ioc.main(extra_dbd_load=(), extra_dso_load=())", "-d", self._db.name]
        else:
            command = [sys.executable, "-m", "pvxslibs.ioc", "-d", self._db.name]
        if self.macros:
            command[-2:-2] = ["-m", self.macros]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=self._output, stderr=subprocess.STDOUT)
        if self.wait_for and self.ca_only:
            from ._inputs import channel_access

            channel_access().get(self.wait_for, timeout)
        elif self.wait_for:
            from p4p.client.thread import Context

            with Context("pva", nt=False) as ctxt:
                ctxt.get(self.wait_for, timeout=timeout)
        return self

    def kill_and_restart(self, status: Callable[[], dict[str, Any]], timeout: float = 40.0) -> None:
        """An IOC crash as a recorder sees it: SIGKILL (no chance to close its connections),
        wait until `status()` (a collector's STATUS:<pv>) shows the disconnect, start the IOC
        again and wait until 5 more samples were stored."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(5)
        wait_until(lambda: not status()["connected"], timeout, "the disconnect noticed")
        before = status()["stored"]
        self.start()
        wait_until(lambda: status()["stored"] >= before + 5, timeout, "recording again after the restart")

    def output(self) -> str:
        """What the IOC printed so far."""
        self._output.seek(0)
        return self._output.read().decode(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()  # type: ignore[union-attr]
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def close(self) -> None:
        self.stop()
        os.unlink(self._db.name)

    def __enter__(self) -> IocProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def script_process(source: str, directory: Path) -> Iterator[subprocess.Popen[str]]:
    """Run a Python script (e.g. a snippet from the docs, exactly as written, with a
    ``print("serving", flush=True)`` once it serves) in its own process; yields the process
    once it said so, and makes sure it is gone afterwards."""
    script = Path(directory) / "script.py"
    script.write_text(source)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=directory)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if line != "serving":
            raise AssertionError(f"{script} did not start serving: {line!r} (exit code {process.poll()})")
        yield process
    finally:
        process.kill()
        process.wait()
        process.stdout.close()  # type: ignore[union-attr]


class SourcePVs:
    """p4p PVs of every type a recording keeps (scalars of several numeric types, bool, string,
    waveform, enum), served by this process under ``<prefix>:src:<kind>`` and posted by a test."""

    KINDS = {
        "double": (NTScalar("d"), 0.0),
        "float": (NTScalar("f"), 0.0),
        "int32": (NTScalar("i"), 0),
        "int64": (NTScalar("l"), 0),
        "uint8": (NTScalar("B"), 0),
        "bool": (NTScalar("?"), False),
        "string": (NTScalar("s"), ""),
        "waveform": (NTScalar("ad"), np.zeros(4)),
        "enum": (NTEnum(), {"index": 0, "choices": ["off", "on", "auto"]}),
    }

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.pvs = {kind: SharedPV(nt=nt, initial=initial) for kind, (nt, initial) in self.KINDS.items()}
        self.types = {kind: nt for kind, (nt, _) in self.KINDS.items()}  # changed by retype()
        self.server = Server(providers=[{self.name(kind): pv for kind, pv in self.pvs.items()}])

    def name(self, kind: str) -> str:
        return f"{self.prefix}:src:{kind}"

    def post(self, kind: str, value: object, **kws: object) -> None:
        # Wrap with the current type: SharedPV keeps wrapping with the type it was made with.
        self.pvs[kind].post(self.types[kind].wrap(value, timestamp=kws.pop("timestamp", time.time()), **kws))

    def retype(self, kind: str, nt: Any, value: object) -> None:
        """Serve `kind` with another type from now on (clients see a reconnect)."""
        self.types[kind] = nt
        self.pvs[kind].close()
        self.pvs[kind].open(nt.wrap(value, timestamp=time.time()))

    def stop(self) -> None:
        self.server.stop()
