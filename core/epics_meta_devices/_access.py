"""EPICS access security for devices: an ACF file loaded with `p4p.asLib`, evaluated for the
client of each put, RPC and new channel, and the identity of that client for the log.

PVAccess identifies a client by what the client claims (account, host address, roles), so
these rules are policy, not authentication, exactly as on an IOC.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p4p.asLib import PUT, READ, RPC, Engine
from p4p.asLib.yacc import ACFError

from ._state import DeviceError

DEFAULT_GROUP = "DEFAULT"
"""The group of a PV that names none, and of every group the file does not define (as on an IOC)."""
CONTROL_GROUP = "CONTROL"
"""CONFIG, ENABLE and CLOSE of every device (and controls a device type puts with them)."""
FACTORY_GROUP = "FACTORY"
"""A factory's CREATE and DELETE."""

__all__ = [
    "CONTROL_GROUP", "DEFAULT_GROUP", "FACTORY_GROUP", "PUT", "READ", "RPC",
    "AccessPolicy", "Client", "current_client",
]

_log = logging.getLogger("emd.access")


@dataclass(frozen=True)
class Client:
    """Who sent a put or RPC, as PVAccess reports it: the account the client claims, the
    address it connects from, and the roles (OS groups) the server found for that account."""

    account: str
    host: str
    roles: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.account or '?'}@{self.host or '?'}"

    @classmethod
    def of(cls, op: Any) -> Client:
        """The client of a p4p server operation (put or RPC)."""
        return cls(op.account(), host_of(op.peer()), tuple(sorted(op.roles())))


def host_of(peer: str) -> str:
    """The address part of a p4p peer string: ``'10.0.0.2:5076'`` -> ``'10.0.0.2'``,
    ``'[::1]:5076'`` -> ``'::1'``."""
    host = peer.rsplit(":", 1)[0] if peer.count(":") == 1 or peer.startswith("[") else peer
    return host.strip("[]")


_current: contextvars.ContextVar[Client | None] = contextvars.ContextVar("emd_client", default=None)


def current_client() -> Client | None:
    """The client whose put or RPC is being handled, inside an ``on_put``/``on_rpc`` handler
    (None elsewhere, e.g. for a configuration applied by the process itself)."""
    return _current.get()


class handling:
    """``with handling(client):`` makes `current_client` answer `client` inside the block."""

    def __init__(self, client: Client | None) -> None:
        self._client = client

    def __enter__(self) -> None:
        self._token = _current.set(self._client)

    def __exit__(self, *exc_info: object) -> None:
        _current.reset(self._token)


class AccessPolicy:
    """The rules of one ACF file. `allows` answers whether a client may READ, PUT or RPC a
    PV of an access security group; `reload` re-reads the file (on SIGHUP), keeping the rules
    in force if the new file is bad.

    p4p's `Engine.create` reports only put/rpc permissions to a gateway channel, so this class
    evaluates the parsed rules itself, in the same order and with the same meaning (a group the
    file does not define uses DEFAULT; UAG members ``role/NAME`` match a client's roles; HAG
    hosts are resolved to addresses when the file is read). Answers are cached per client and
    group until the next reload: a put pays one dictionary lookup.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str, str, tuple[str, ...], bool], int] = {}
        self._engine = self._load()

    def _load(self) -> Engine:
        try:
            text = self.path.read_text()
        except OSError as exc:
            raise DeviceError(f"cannot read access security file {self.path}: {exc.strerror}") from None
        try:
            engine = Engine(text)
        except ACFError as exc:
            raise DeviceError(f"bad access security file {self.path}: {exc}") from None
        except Exception as exc:  # the parser raises plain errors for some malformed files
            raise DeviceError(f"bad access security file {self.path}: {type(exc).__name__}: {exc}") from None
        for group, (rules, _inputs) in sorted(engine._asg.items()):
            by_user = [any(c[0] == "UAG" for c in conds) for mask, _level, _trap, conds in rules if mask & READ]
            if by_user and all(by_user):  # only some users may read: not enforceable on a get
                _log.warning("%s: ASG(%s) grants READ by UAG; PVAccess names the user only on "
                             "puts, so gets are limited by HAG alone", self.path, group)
        return engine

    def reload(self) -> None:
        """Read the file again; on an error keep the rules in force and raise DeviceError."""
        engine = self._load()
        with self._lock:
            self._engine = engine
            self._cache = {}

    @property
    def groups(self) -> list[str]:
        """The groups the file defines."""
        return sorted(self._engine._asg)

    def allows(self, group: str, action: int, client: Client) -> bool:
        """Whether `client` may do `action` (READ, PUT or RPC) on a PV of `group`."""
        return bool(self.permissions(group, client.account, client.host, client.roles) & action)

    def may_read_from(self, group: str, host: str) -> bool:
        """Whether some account on `host` may READ a PV of `group`: what a new channel can be
        checked against, since PVAccess tells a server only the address of a client that
        connects to get or monitor (UAG conditions count as met, HAG ones are enforced)."""
        return bool(self.permissions(group, "", host, (), any_account=True) & READ)

    def permissions(self, group: str, account: str, host: str, roles: tuple[str, ...] = (),
                    *, any_account: bool = False) -> int:
        """The asLib mask (READ | PUT | RPC bits) of the rules of `group` for this client."""
        key = (group, account, host, roles, any_account)
        mask = self._cache.get(key)
        if mask is None:
            with self._lock:
                mask = self._evaluate(self._engine, *key)
                self._cache[key] = mask
        return mask

    @staticmethod
    def _evaluate(engine: Engine, group: str, account: str, host: str, roles: tuple[str, ...],
                  any_account: bool) -> int:
        uags = set(engine._uag.get(account, ()))
        for role in roles:
            uags |= engine._uag.get("role/" + role, set())
        hags = engine._hag_addr.get(host, set())
        rules, inputs = engine._asg.get(group) or engine._asg_DEFAULT
        mask = 0
        for rule_mask, _level, _trap, conditions in rules:
            if all(_met(condition, uags, hags, inputs, any_account) for condition in conditions):
                mask |= rule_mask
        return mask


def _met(condition: tuple[Any, ...], uags: set[str], hags: set[str], inputs: dict[str, float],
         any_account: bool) -> bool:
    kind = condition[0]
    if kind == "UAG":
        return any_account or bool(condition[1] & uags)
    if kind == "HAG":
        return bool(condition[1] & hags)
    if kind == "CALC":  # asLib's own reading of CALC: a Python expression of the INP values
        try:
            return float(eval(condition[2], {}, inputs) or 0.0) >= 0.5
        except Exception:
            return False
    return False  # an unknown condition grants nothing

