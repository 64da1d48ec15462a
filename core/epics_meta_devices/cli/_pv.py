"""``emd get``, ``put``, ``monitor`` and ``rpc``: any PV, with the error messages of DeviceClient
(p4p's own command line crashes on every put, and pip installs no pvget/pvput)."""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import time
from typing import Annotated, Any, Iterator, Optional, Sequence

import numpy as np
import typer
from p4p import Value
from p4p.client.thread import Disconnected, RemoteError
from p4p.nt import NTURI

from .._client import DeviceClient
from .._logging import configure_logging
from .._state import DeviceError, DeviceTimeout
from ._app import AsJson, LogLevel, app
from ._values import lines, record, to_json

PVNames = Annotated[list[str], typer.Argument(help="PV names.", show_default=False)]
PVTimeout = Annotated[float, typer.Option("--timeout", "-t", help="Seconds to wait for each PV.")]


class PVClient(DeviceClient):
    """A DeviceClient for full PV names (no prefix), so `emd get` and the others report errors
    exactly as the device commands do; adds monitors of several PVs and RPC."""

    def __init__(self, *, timeout: float = 5.0) -> None:
        super().__init__("", timeout=timeout)

    def pv_name(self, name: str) -> str:
        return name

    def absent(self, *names: str) -> DeviceTimeout:
        """The error for PVs that did not answer: for a single PV, most likely a typo."""
        return DeviceTimeout(f"{', '.join(names)} did not answer within {self.timeout} s: "
                             "no such PV, or its server is not running")

    def get_pv(self, name: str, request: str | None = None) -> Value:
        try:
            return super().get_pv(name, request)
        except DeviceTimeout:
            raise self.absent(name) from None

    def put(self, name: str, value: Any, timeout: float | None = None) -> None:
        try:
            super().put(name, value, timeout)
        except DeviceTimeout:
            raise self.absent(name) from None

    def updates(self, names: Sequence[str], idle_timeout: float | None = None) -> Iterator[tuple[str, Value | None]]:
        """(name, Value) for every update of `names`, each PV's current value first; (name,
        None) when a PV disconnects after its first value. DeviceTimeout names the PVs with no
        first value within `timeout` s, or says so when none updates for `idle_timeout` s
        (None: wait for ever); DeviceError carries a server's refusal."""
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        subscriptions = [self._context.monitor(name, lambda event, name=name: events.put((name, event)),
                                               notify_disconnect=True) for name in names]
        waiting = dict.fromkeys(names)  # PVs without a first value yet, in the given order
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                wait = deadline - time.monotonic() if waiting else idle_timeout
                try:
                    # never an endless blocking get: waking each second lets Ctrl-C through at
                    # once (p4p's work queues do the same, for the same reason)
                    name, event = events.get(timeout=1.0 if wait is None else max(0.0, wait))
                except queue.Empty:
                    if wait is None:
                        continue
                    if waiting:
                        raise self.absent(*waiting) from None
                    raise DeviceTimeout(f"no update of {', '.join(names)} within {idle_timeout} s") from None
                if isinstance(event, Disconnected):
                    if name not in waiting:
                        yield name, None
                    continue
                if isinstance(event, Exception):  # RemoteError or Cancelled: the server said no
                    raise DeviceError(f"{name}: {event}")
                waiting.pop(name, None)
                yield name, event
        finally:
            for subscription in subscriptions:
                subscription.close()

    def rpc(self, name: str, arguments: dict[str, Any]) -> Value:
        """Call RPC `name` with `arguments` as the query of an NTURI (as pvcall sends them)."""
        uri = NTURI([(key, _rpc_code(key, value)) for key, value in arguments.items()])
        try:
            request = uri.wrap(name, kws=arguments)
        except (TypeError, ValueError) as exc:
            raise DeviceError(f"cannot send these arguments to {name}: {exc}") from None
        try:
            return self._context.rpc(name, request, timeout=self.timeout)
        except TimeoutError:
            raise self.absent(name) from None
        except RemoteError as exc:
            raise DeviceError(f"{name} refused the call: {exc}") from None


_RPC_CODES: list[tuple[type, str]] = [(bool, "?"), (int, "l"), (float, "d"), (str, "s")]


def _rpc_code(key: str, value: Any) -> str:
    """The p4p type code of one RPC argument (bool before int: bool is an int subclass)."""
    for kind, code in _RPC_CODES:
        if isinstance(value, kind):
            return code
    if isinstance(value, list) and value:
        for kind, code in _RPC_CODES:
            if all(isinstance(item, kind) and not (kind is int and isinstance(item, bool)) for item in value):
                return "a" + code
    raise DeviceError(f"argument {key}: give a number, true/false, a string or a list of one of those, "
                      f"not {json.dumps(value)}")


def parse_value(text: str) -> Any:
    """A value typed on the command line: JSON when it parses as JSON (numbers, true/false,
    lists, objects for structures, "quoted strings"), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _sendable(value: Any) -> Any:
    """`value` for a put: lists of numbers as NumPy arrays, also inside objects (p4p takes a
    plain list in a variant field for strings, and refuses numbers)."""
    if isinstance(value, dict):
        return {key: _sendable(item) for key, item in value.items()}
    if isinstance(value, list) and value and all(
            isinstance(item, (int, float)) and not isinstance(item, bool) for item in value):
        return np.asarray(value)
    return value


def parse_pairs(items: Sequence[str], what: str) -> dict[str, Any]:
    """``key=value`` words as a dict, each value read by `parse_value`."""
    pairs = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise DeviceError(f"{what} {item!r}: expected KEY=VALUE")
        pairs[key.strip()] = parse_value(value)
    return pairs


def echo_value(name: str, value: Value, as_json: bool, *, with_time: bool = False) -> None:
    """Print one PV or update: a JSON object, or its text lines."""
    if as_json:
        typer.echo(to_json(record(name, value)))
    else:
        for line in lines(name, value, with_time=with_time):
            typer.echo(line)


@app.command("get")
def get(names: PVNames, as_json: AsJson = False, timeout: PVTimeout = 5.0, log_level: LogLevel = "WARNING") -> None:
    """Print the values of PVs: `PV value` for NT types, every field of other structures."""
    configure_logging(log_level)
    with PVClient(timeout=timeout) as client:
        for name in names:
            echo_value(name, client.get_pv(name), as_json)


@app.command("put")
def put(
    name: Annotated[str, typer.Argument(help="PV name.", show_default=False)],
    value: Annotated[str, typer.Argument(
        help='Value: JSON (42, true, [1, 2], "text", {"field": 1} for a structure) or plain text.',
        show_default=False)],
    as_json: AsJson = False,
    timeout: PVTimeout = 5.0,
    log_level: LogLevel = "WARNING",
) -> None:
    """Put a value to a PV; a refusal prints the server's reason and exits with status 1."""
    configure_logging(log_level)
    parsed = parse_value(value)
    with PVClient(timeout=timeout) as client:
        client.put(name, _sendable(parsed))
    typer.echo(to_json({"pv": name, "value": parsed}) if as_json else f"put {name} {value}")


@app.command("monitor")
def monitor(
    names: PVNames,
    count: Annotated[Optional[int], typer.Option(
        "--count", "-c", min=1, help="Stop after this many updates in all (default: until Ctrl-C).")] = None,
    as_json: AsJson = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", "-t", help="Seconds to wait for each PV's first value.")] = 5.0,
    log_level: LogLevel = "WARNING",
) -> None:
    """Print every update of PVs (current values first) until Ctrl-C or --count updates."""
    configure_logging(log_level)
    signal.signal(signal.SIGINT, _end_at_once)
    seen = 0
    with PVClient(timeout=timeout) as client:
        for name, value in client.updates(names):
            if value is None:
                typer.echo(to_json({"pv": name, "disconnected": True}) if as_json else f"{name} <disconnected>")
                continue
            echo_value(name, value, as_json, with_time=True)
            seen += 1
            if count is not None and seen >= count:
                return


def _end_at_once(signum: int, frame: Any) -> None:
    """Ctrl-C ends a monitor, its normal end: print what was printed, exit 0 at once. Closing
    the monitors and the client first is not needed (the server sees the connection close) and
    once hung under load in CI, after the output was complete."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@app.command("rpc")
def rpc(
    name: Annotated[str, typer.Argument(help="PV name of the RPC.", show_default=False)],
    arguments: Annotated[Optional[list[str]], typer.Argument(
        help="Arguments KEY=VALUE (JSON values, else strings), sent as an NTURI query.", show_default=False)] = None,
    as_json: AsJson = False,
    timeout: PVTimeout = 5.0,
    log_level: LogLevel = "WARNING",
) -> None:
    """Call an RPC PV and print what it returns (a table as rows)."""
    configure_logging(log_level)
    with PVClient(timeout=timeout) as client:
        result = client.rpc(name, parse_pairs(arguments or [], "argument"))
    echo_value(name, result, as_json)
