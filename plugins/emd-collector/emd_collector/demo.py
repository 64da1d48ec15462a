"""The collector part of ``make demo``: a real IOC (a point going round a circle), a factory,
a collector created through it, recording driven through PVs as in the seed talk, the history
read back, an export, and everything closed. EPICS stays on loopback with the demo's own ports."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from epics_meta_devices.testing import DeviceProcess, IocProcess, unique_prefix, use_loopback_environment

CIRCLE_DB = """
record(calc, "$(P)circle:angle") {
    field(SCAN, ".1 second")
    field(CALC, "(A+B)%360")
    field(INPA, "$(P)circle:angle.VAL NPP")
    field(B, "10")
}
record(calc, "$(P)circle:x") { field(INPA, "$(P)circle:angle.VAL CP") field(CALC, "COS(A*D2R)") }
record(calc, "$(P)circle:y") { field(INPA, "$(P)circle:angle.VAL CP") field(CALC, "SIN(A*D2R)") }
"""


def main() -> None:
    use_loopback_environment()  # before any p4p Context or Server
    from p4p.client.thread import Context

    import epics_meta_devices as emd

    from ._recording import load_npz

    stem = unique_prefix("demo")
    x, y = f"{stem}:dummy:circle:x", f"{stem}:dummy:circle:y"
    print(f"$ python -m pvxslibs.ioc  (serving {x}, {y} at 10 Hz)")
    with IocProcess(CIRCLE_DB, {"P": f"{stem}:dummy:"}, wait_for=x), \
            tempfile.TemporaryDirectory(prefix="emd-demo-") as data_name:
        data_dir = Path(data_name)
        print(f"$ emd factory run {stem}:factory")
        factory = DeviceProcess("factory.DeviceFactory", f"{stem}:factory", cli=["factory", "run", f"{stem}:factory"])
        factory.start()
        ctxt = Context("pva", nt=False)
        try:
            print(f"  DEVICETYPES = {list(ctxt.get(f'{stem}:factory:DEVICETYPES').value)}")
            mycollector = f"{stem}:mycollector"
            ctxt.put(f"{stem}:factory:CREATE", {"device_type": "collect.Collector", "device_prefix": mycollector})
            print(f"  put CREATE collect.Collector {mycollector}")
            ctxt.put(f"{mycollector}:CONFIG", {"input_pvs": [x, y], "data_dir": str(data_dir), "publish_period": 0.2})
            ctxt.put(f"{mycollector}:ENABLE", True)
            print("  put CONFIG {'input_pvs': [x, y]}, ENABLE True; recording for 2 s ...")
            time.sleep(2)  # the demo records for a while on purpose
            ctxt.put(f"{mycollector}:ENABLE", False)
            history = ctxt.get(f"{mycollector}:OUT:{x}").history
            print(f"  OUT:...circle:x history: {len(history)} updates, first values "
                  f"{[round(v.value, 3) for v in history[:5]]}")
            status = ctxt.get(f"{mycollector}:STATUS").todict()
            print(f"  STATUS: received {status['received']}, stored {status['stored']}, dropped {status['dropped']}")
            ctxt.put(f"{mycollector}:ANNOTATE", {"key": "sample", "value": "demo"})
            ctxt.put(f"{mycollector}:EXPORT", {"path": "circle.npz", "format": ""})
            exported = load_npz(data_dir / "circle.npz")
            print(f"  put EXPORT circle.npz -> {data_dir / 'circle.npz'}: "
                  f"{len(exported['arrays'][x + '/value'])} samples of x")
            ctxt.put(f"{stem}:factory:DELETE", {"device_prefix": mycollector})
            with emd.FactoryClient(f"{stem}:factory") as factory_client:
                print(f"  put DELETE {mycollector}; devices left: {factory_client.devices()}")
        finally:
            ctxt.close()
            print(f"  factory process exited with {factory.stop()}")


if __name__ == "__main__":
    main()
