"""Where EPICS servers listen and clients search: every variable that decides it, for PVAccess
and Channel Access, set in one place.

pvxs servers read ``EPICS_PVAS_*`` before ``EPICS_PVA_*`` (and CA servers ``EPICS_CAS_*`` before
``EPICS_CA_*``), so setting only the client-side names leaves a server on whatever port the
user's shell names while its clients search another. The environment built here therefore sets
both names of each port and address list to the same value, and empties the lists that would
send a search elsewhere (name servers) or make a server ignore its clients.
"""

from __future__ import annotations

import os
import socket
from importlib import resources
from typing import Mapping

LOOPBACK_ENV_FILE = "epics-loopback.env"
"""The file shipped with the package (``core/epics_meta_devices/epics-loopback.env``): loopback
addresses for searches, beacons and servers. Source it in a shell; the code reads it too."""


def _read_env_file() -> dict[str, str]:
    text = resources.files(__package__).joinpath(LOOPBACK_ENV_FILE).read_text()
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


LOOPBACK_ENV: dict[str, str] = _read_env_file()
"""The settings of `LOOPBACK_ENV_FILE`: every search, beacon and server stays on loopback."""

# Lists that would send searches, or accept them, somewhere the settings above do not name.
# Empty values count as unset for pvxs and libca.
_EMPTIED = ("EPICS_PVA_NAME_SERVERS", "EPICS_PVAS_IGNORE_ADDR_LIST",
            "EPICS_CA_NAME_SERVERS", "EPICS_CAS_IGNORE_ADDR_LIST")

PORT_VARIABLES: tuple[str, ...] = (
    "EPICS_PVA_BROADCAST_PORT", "EPICS_PVAS_BROADCAST_PORT",
    "EPICS_PVA_SERVER_PORT", "EPICS_PVAS_SERVER_PORT",
    "EPICS_CA_SERVER_PORT", "EPICS_CAS_SERVER_PORT",
    "EPICS_CA_REPEATER_PORT", "EPICS_CAS_BEACON_PORT",
)
"""Every variable naming a port a server listens on or a client searches (both protocols)."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that is free now, for TCP (default) or UDP (SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_tcp_and_udp_port() -> int:
    """A port free for both TCP and UDP: CA searches (UDP) and serves (TCP) on one port."""
    while True:
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue


def loopback_environment() -> dict[str, str]:
    """Loopback-only EPICS settings with search, server and repeater ports of their own, for
    PVAccess and Channel Access, servers and clients alike: processes started with them never
    see, nor are seen by, any other run on this host, whatever ``EPICS_*`` the shell had."""
    pva_search, pva_server = str(free_port(socket.SOCK_DGRAM)), str(free_port())
    ca_server, ca_repeater = str(_free_tcp_and_udp_port()), str(free_port(socket.SOCK_DGRAM))
    return {
        **LOOPBACK_ENV,
        "EPICS_PVA_INTF_ADDR_LIST": LOOPBACK_ENV["EPICS_PVAS_INTF_ADDR_LIST"],
        **dict.fromkeys(_EMPTIED, ""),
        "EPICS_PVA_BROADCAST_PORT": pva_search, "EPICS_PVAS_BROADCAST_PORT": pva_search,
        "EPICS_PVA_SERVER_PORT": pva_server, "EPICS_PVAS_SERVER_PORT": pva_server,
        "EPICS_CA_SERVER_PORT": ca_server, "EPICS_CAS_SERVER_PORT": ca_server,
        "EPICS_CA_REPEATER_PORT": ca_repeater, "EPICS_CAS_BEACON_PORT": ca_repeater,
    }


def use_loopback_environment() -> dict[str, str]:
    """Put `loopback_environment()` into os.environ. Call it before creating any p4p Context or
    Server: p4p reads the environment when those are created."""
    env = loopback_environment()
    os.environ.update(env)
    return env


def describe_ports(env: Mapping[str, str]) -> str:
    """The search and server settings in `env`, one line, for error messages: why a client
    may not find a server lies in these."""
    names = ("EPICS_PVA_ADDR_LIST", *PORT_VARIABLES, "EPICS_PVAS_INTF_ADDR_LIST")
    return ", ".join(f"{name}={env.get(name, '(unset)')}" for name in names)


def foreign_environment() -> dict[str, str]:
    """Server and client settings as a user's shell at a site may have them, all different from
    what `loopback_environment` chooses (still on loopback addresses, so nothing leaves the
    host): for tests that the project's runs override every one of them."""
    foreign_port = lambda: str(free_port(socket.SOCK_DGRAM))  # noqa: E731
    return {
        **{name: foreign_port() for name in PORT_VARIABLES if name.startswith(("EPICS_PVAS_", "EPICS_CAS_"))},
        "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.2", "EPICS_PVAS_BEACON_ADDR_LIST": "127.0.0.2",
        "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.2", "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.2",
        "EPICS_PVAS_IGNORE_ADDR_LIST": "127.0.0.1", "EPICS_CAS_IGNORE_ADDR_LIST": "127.0.0.1",
        "EPICS_PVA_NAME_SERVERS": f"127.0.0.2:{foreign_port()}",
        "EPICS_CA_NAME_SERVERS": f"127.0.0.2:{foreign_port()}",
    }
