"""The demo behind ``make demo``: a ping device started in its own process, driven through its
PVs exactly as the seed talk shows, and closed, printing what happened. EPICS stays on loopback
with ports of the demo's own."""

from __future__ import annotations

from epics_meta_devices.testing import DeviceProcess, unique_prefix, use_loopback_environment


def main() -> None:
    env = use_loopback_environment()  # before p4p is imported
    import numpy as np
    from p4p.client.thread import Context, RemoteError

    from ._client import PingClient

    prefix = unique_prefix("demo:ping")
    print(f"EPICS on loopback, search port {env['EPICS_PVA_BROADCAST_PORT']}")
    print(f"$ emd device run ping.Ping {prefix}")
    device = DeviceProcess("ping.Ping", prefix)
    client = device.start()
    print(f"  serving: TYPE={client.device_type} STATE={client.state} pid={client.info['pid']}")
    ctxt = Context("pva", nt=False)
    try:
        try:
            ctxt.put(f"{prefix}:ENABLE", True)
        except RemoteError as refused:
            print(f"  ENABLE before CONFIG is refused: {refused}")
        ctxt.put(f"{prefix}:CONFIG", {"delay": 0.0})
        print(f"  put CONFIG {{'delay': 0.0}} -> STATE={client.state}")
        ctxt.put(f"{prefix}:ENABLE", True)
        print(f"  put ENABLE True -> STATE={client.state}")
        for value in ["hello", 42, np.linspace(0, 1, 3)]:
            ctxt.put(f"{prefix}:PING", value)
            pong = ctxt.get(f"{prefix}:PONG")
            print(f"  put PING {value!r} -> PONG value={pong.value!r} count={pong['count']}")
        with PingClient(prefix) as pinger:
            stats = pinger.ping_many(100).summary()
        print(f"  100 round trips: median {stats['median'] * 1e3:.2f} ms, max {stats['max'] * 1e3:.2f} ms")
        ctxt.put(f"{prefix}:ENABLE", False)
        print(f"  put ENABLE False -> STATE={client.state}")
        ctxt.put(f"{prefix}:CLOSE", True)
        print("  put CLOSE True")
    finally:
        ctxt.close()
        code = device.stop()
    print(f"  device process exited with {code}")


if __name__ == "__main__":
    main()
