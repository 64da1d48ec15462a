"""Local and remote are one API: a factory and its devices on one "host", the client on another.
The hosts are network namespaces joined by a veth pair that the test creates; EPICS on each is
pointed at that link's broadcast address and nowhere else."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from typing import Iterator

import pytest

import epics_meta_devices as emd


@dataclass
class Host:
    namespace: str
    address: str
    broadcast: str

    def env(self) -> dict[str, str]:
        """EPICS settings for this host: the test link only, with this run's ports."""
        return {
            **os.environ,
            "EPICS_PVA_AUTO_ADDR_LIST": "NO",
            "EPICS_PVA_ADDR_LIST": self.broadcast,
            "EPICS_PVAS_INTF_ADDR_LIST": self.address,
            "EPICS_PVAS_BEACON_ADDR_LIST": self.broadcast,
            "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
        }

    def command(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *args]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def two_hosts() -> Iterator[tuple[Host, Host]]:
    tag = uuid.uuid4().hex[:6]
    subnet = f"10.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
    server = Host(f"emd-srv-{tag}", f"{subnet}.1", f"{subnet}.255")
    client = Host(f"emd-cli-{tag}", f"{subnet}.2", f"{subnet}.255")
    try:
        _ip("netns", "add", server.namespace)
    except (OSError, subprocess.CalledProcessError) as exc:
        reason = getattr(exc, "stderr", "") or exc
        pytest.skip(f"cannot create network namespaces here (needs root and iproute2): {reason}")
    try:
        _ip("netns", "add", client.namespace)
        _ip("link", "add", f"v{tag}s", "type", "veth", "peer", "name", f"v{tag}c")
        for host, link in ((server, f"v{tag}s"), (client, f"v{tag}c")):
            _ip("link", "set", link, "netns", host.namespace)
            _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "broadcast", host.broadcast, "dev", link)
            _ip("-n", host.namespace, "link", "set", link, "up")
            _ip("-n", host.namespace, "link", "set", "lo", "up")
        yield server, client
    finally:
        for host in (server, client):
            pids = subprocess.run(["ip", "netns", "pids", host.namespace], capture_output=True, text=True).stdout.split()
            for pid in pids:
                subprocess.run(["kill", "-9", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)


CLIENT_SCRIPT = textwrap.dedent("""
    import json, sys
    import epics_meta_devices as emd

    factory_prefix, device_prefix = sys.argv[1:]
    factory = emd.FactoryClient(factory_prefix, timeout=20)
    factory.wait_for_state("running", timeout=30)
    report = {"types": factory.types()}
    ping = factory.create("ping.Ping", device_prefix, config={"delay": 0.0})
    ping.enable()
    report["client"] = type(ping).__name__
    report["rtt"] = ping.ping()
    report["info_host_pid"] = ping.info["pid"]
    report["devices"] = factory.devices()
    factory.delete(device_prefix)
    report["after_delete"] = factory.devices()
    factory.close()
    print(json.dumps(report, default=str))
""")


def test_remote_factory_is_used_exactly_like_a_local_one(two_hosts, prefix, tmp_path):
    server, client = two_hosts
    factory = subprocess.Popen(
        server.command(sys.executable, "-m", "epics_meta_devices", "factory", "run", prefix),
        env=server.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        script = tmp_path / "client.py"
        script.write_text(CLIENT_SCRIPT)
        result = subprocess.run(
            client.command(sys.executable, str(script), prefix, f"{prefix}:ping"),
            env=client.env(), capture_output=True, text=True, timeout=90,
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert "ping.Ping" in report["types"] and report["client"] == "PingClient"
        assert 0 < report["rtt"] < 1.0
        [row] = report["devices"]
        assert row["prefix"] == f"{prefix}:ping" and row["pid"] == report["info_host_pid"]
        assert report["after_delete"] == []
        assert factory.wait(20) == 0  # closed by the remote client
    finally:
        factory.kill()
        factory.wait()
        factory.stderr.close()


def test_remote_factory_is_invisible_from_loopback(two_hosts, prefix):
    """The factory's EPICS traffic stays on the test link: the loopback world never sees it."""
    server, client = two_hosts
    factory = subprocess.Popen(
        server.command(sys.executable, "-m", "epics_meta_devices", "factory", "run", prefix),
        env=server.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        probe = subprocess.run(
            client.command(sys.executable, "-c", f"import epics_meta_devices as emd; print(emd.DeviceClient({prefix!r}, timeout=20).wait_for_state('running', timeout=30))"),
            env=client.env(), capture_output=True, text=True, timeout=60,
        )
        assert probe.stdout.strip() == "running", probe.stderr
        with emd.DeviceClient(prefix, timeout=1.0) as local, pytest.raises(emd.DeviceTimeout):
            local.state
    finally:
        factory.kill()
        factory.wait()


PUT_SCRIPT = textwrap.dedent("""
    import sys
    from p4p.client.thread import Context

    name, value = sys.argv[1:]
    with Context("pva", nt=False) as ctxt:
        try:
            ctxt.put(name, {"delay": float(value)}, timeout=20)
            print("accepted")
        except Exception as exc:
            print(f"refused: {exc}")
""")


def test_host_access_group_refuses_a_client_on_another_host(two_hosts, prefix, tmp_path):
    """A HAG rule of the device's ACF (only its own host writes) decides by the host a put comes
    from: the same put is refused from the other namespace and accepted from the device's own."""
    server, client = two_hosts
    acf = tmp_path / "beamline.acf"
    acf.write_text(textwrap.dedent(f"""\
        HAG(beamline) {{"{server.address}"}}
        ASG(DEFAULT) {{
            RULE(1, READ)
            RULE(1, WRITE) {{ HAG(beamline) }}
        }}
        """))
    device = subprocess.Popen(
        server.command(sys.executable, "-m", "epics_meta_devices", "device", "run", "ping.Ping", prefix,
                       "--acf", str(acf)),
        env=server.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        script = tmp_path / "put.py"
        script.write_text(PUT_SCRIPT)
        local = {**server.env(), "EPICS_PVA_ADDR_LIST": server.address}  # the device's own host

        def put(host: Host, env: dict[str, str], delay: str) -> str:
            done = subprocess.run(host.command(sys.executable, str(script), f"{prefix}:CONFIG", delay),
                                  env=env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            return done.stdout.strip()

        refused = put(client, client.env(), "0.25")
        assert refused.startswith("refused:") and \
            f"put to {prefix}:CONFIG refused by access security for root@{client.address}" in refused
        assert put(server, local, "0.5") == "accepted"
    finally:
        device.terminate()
        try:
            device.wait(10)
        except subprocess.TimeoutExpired:
            device.kill()
            device.wait()
        device.stderr.close()
