"""The device state machine: the states a device can be in and the legal moves between them."""

from __future__ import annotations

import enum


class DeviceError(Exception):
    """A device refused a request; the message says why and is what a p4p client sees."""


class DeviceTimeout(DeviceError, TimeoutError):
    """A device did not answer, or did not reach a state, in time."""


class UploadError(DeviceError):
    """An upload failed; ``retry=True`` when trying again later may succeed (a timeout, a
    server error), False when it cannot (no such file, refused credentials)."""

    def __init__(self, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


class IllegalTransition(DeviceError):
    """A request would move a device between two states that are not connected."""


class DeviceState(str, enum.Enum):
    """The states of every device, in the order they are served as the STATE NTEnum choices."""

    created = "created"
    """Serving its PVs, not yet configured."""
    ready = "ready"
    """Configured and idle: ENABLE starts it."""
    running = "running"
    """Enabled: doing its work."""
    error = "error"
    """Something failed; INFO.last_error says what. A successful configure leaves it."""
    closed = "closed"
    """Final: the device has released everything and stops serving."""

    def __str__(self) -> str:
        return self.value


# Why this table: every state change goes through `check_transition`, so the rules are in one
# place. Error is reachable from every live state; closed is final.
LEGAL_TRANSITIONS: dict[DeviceState, frozenset[DeviceState]] = {
    DeviceState.created: frozenset({DeviceState.ready, DeviceState.error, DeviceState.closed}),
    DeviceState.ready: frozenset(
        {DeviceState.ready, DeviceState.running, DeviceState.error, DeviceState.closed}
    ),
    DeviceState.running: frozenset({DeviceState.ready, DeviceState.error, DeviceState.closed}),
    DeviceState.error: frozenset({DeviceState.ready, DeviceState.error, DeviceState.closed}),
    DeviceState.closed: frozenset(),
}

STATE_NAMES: list[str] = [state.value for state in DeviceState]


def check_transition(current: DeviceState, new: DeviceState) -> None:
    """Raise `IllegalTransition` unless a device may move from `current` to `new`."""
    if new not in LEGAL_TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in LEGAL_TRANSITIONS[current])) or "nothing"
        raise IllegalTransition(
            f"illegal state transition {current.value} -> {new.value} "
            f"(from {current.value} a device may go to: {allowed})"
        )
