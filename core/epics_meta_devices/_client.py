"""DeviceClient: a small synchronous client for any device, over PVAccess."""

from __future__ import annotations

import queue
import time
from typing import Any, Mapping

import importlib

from p4p import Value
from p4p.client.thread import Context, Disconnected, RemoteError

from ._state import STATE_NAMES, DeviceError, DeviceState, DeviceTimeout


class DeviceClient:
    """Drive a device through its default PVs, from any host that reaches it.

    Every failure raises DeviceError with the device's own reason, e.g. the message of a
    refused CONFIG put; DeviceTimeout when the device does not answer in `timeout` seconds.
    """

    def __init__(self, prefix: str, *, timeout: float = 5.0, context: Context | None = None) -> None:
        self.prefix = prefix
        self.timeout = timeout
        self._owns_context = context is None
        self._context = context if context is not None else Context("pva", nt=False)

    # -- generic access -----------------------------------------------------------------------

    def pv_name(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def get_pv(self, name: str, request: str | None = None) -> Value:
        """The Value of ``PREFIX:name`` (typed clients may give ``get`` a meaning of their own)."""
        pv = self.pv_name(name)
        try:
            return self._context.get(pv, request=request, timeout=self.timeout)
        except TimeoutError:
            raise DeviceTimeout(f"{pv} did not answer within {self.timeout} s: is the device running?") from None
        except RemoteError as exc:
            raise DeviceError(f"{pv}: {exc}") from None

    def put(self, name: str, value: Any, timeout: float | None = None) -> None:
        """Put `value` to ``PREFIX:name``; raises DeviceError with the device's reason if refused."""
        pv = self.pv_name(name)
        timeout = self.timeout if timeout is None else timeout
        try:
            self._context.put(pv, value, timeout=timeout)
        except TimeoutError:
            raise DeviceTimeout(f"{pv} did not answer within {timeout} s: is the device running?") from None
        except RemoteError as exc:
            raise DeviceError(f"{pv} refused the put: {exc}") from None
        except (KeyError, ValueError, TypeError, AttributeError, RuntimeError) as exc:  # refused by p4p locally
            reason = exc.args[0] if exc.args else type(exc).__name__
            raise DeviceError(f"{pv} cannot take that value: {reason}") from None

    # -- default PVs ----------------------------------------------------------------------------

    @property
    def state(self) -> DeviceState:
        return DeviceState(STATE_NAMES[self.get_pv("STATE")["value.index"]])

    @property
    def device_type(self) -> str:
        return self.get_pv("TYPE")["value"]

    @property
    def uuid(self) -> str:
        return self.get_pv("UUID")["value"]

    @property
    def info(self) -> dict[str, Any]:
        return self.get_pv("INFO").todict()

    @property
    def config(self) -> dict[str, Any]:
        return _plain(self.get_pv("CONFIG").todict())

    def configure(self, config: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Put the given CONFIG fields (others keep their values)."""
        self.put("CONFIG", {**(config or {}), **fields})

    def enable(self) -> None:
        self.put("ENABLE", True)

    def disable(self) -> None:
        self.put("ENABLE", False)

    def close(self) -> None:
        """Close the device, then this client's connection."""
        self.put("CLOSE", True)
        self.disconnect()

    def wait_for_state(self, *states: DeviceState | str, timeout: float | None = None) -> DeviceState:
        """Block until the device is in one of `states` and return it. A device that stops
        serving after being seen counts as closed. Raises DeviceTimeout after `timeout` s."""
        wanted = {DeviceState(s) for s in states}
        timeout = self.timeout if timeout is None else timeout
        updates: queue.Queue[Any] = queue.Queue()
        subscription = self._context.monitor(self.pv_name("STATE"), updates.put, notify_disconnect=True)
        deadline = time.monotonic() + timeout
        last: DeviceState | None = None
        try:
            while True:
                try:
                    update = updates.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    seen = last.value if last else "no answer"
                    raise DeviceTimeout(
                        f"{self.prefix} did not reach {' or '.join(sorted(s.value for s in wanted))} "
                        f"within {timeout} s (last state: {seen})"
                    ) from None
                if isinstance(update, Disconnected):
                    if last is not None and DeviceState.closed in wanted:
                        return DeviceState.closed
                    continue
                if isinstance(update, Exception):
                    continue
                last = DeviceState(STATE_NAMES[update["value.index"]])
                if last in wanted:
                    return last
        finally:
            subscription.close()

    # -- connection -----------------------------------------------------------------------------

    def disconnect(self) -> None:
        """Release this client's PVAccess context (the device keeps running)."""
        if self._owns_context:
            self._context.close()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.disconnect()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.prefix!r})"


def _plain(data: Any) -> Any:
    """NumPy arrays in a Value's dict as lists, so configs compare and print as plain data."""
    if isinstance(data, dict):
        return {key: _plain(value) for key, value in data.items()}
    return data.tolist() if hasattr(data, "tolist") else data


def client_for(device_type: str, prefix: str, **kwargs: Any) -> DeviceClient:
    """The typed client of a device type installed here (its ``client_class``), else a
    DeviceClient: a remote device of a type not installed locally is still drivable."""
    from ._plugins import plugin_manager
    from ._registry import registry

    plugin_manager()
    client_class: type[DeviceClient] = DeviceClient
    if device_type in registry and registry.get(device_type).cls.client_class:
        module, _, name = registry.get(device_type).cls.client_class.partition(":")
        client_class = getattr(importlib.import_module(module), name)
    return client_class(prefix, **kwargs)
