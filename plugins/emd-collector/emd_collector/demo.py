"""The collector part of ``make demo``: the whole chain a user comes for, printed step by step.

A real IOC (a point going round a circle), a factory, a processor (``calc.Calc``: the radius of
the point) and a collector created through it, recording the IOC's PVs and the processor's
output; an HDF5 export, an upload of it to a directory target, and a plot written to a file.
EPICS stays on loopback with the demo's own ports, whatever the shell's ``EPICS_*`` say.

``python -m emd_collector.demo [OUTPUT_DIR]`` (default ``emd-demo``): the export, the upload's
copy and the plot stay there for you to open.
"""

from __future__ import annotations

import sys
from pathlib import Path

from epics_meta_devices.testing import DeviceProcess, IocProcess, unique_prefix, use_loopback_environment

CIRCLE_DB = """
record(calc, "$(P)circle:angle") {
    field(SCAN, ".1 second")
    field(CALC, "(A+B)%360")
    field(INPA, "$(P)circle:angle.VAL NPP")
    field(B, "10")
    field(EGU, "deg")
}
record(calc, "$(P)circle:x") { field(INPA, "$(P)circle:angle.VAL CP") field(CALC, "COS(A*D2R)") field(EGU, "mm") }
record(calc, "$(P)circle:y") { field(INPA, "$(P)circle:angle.VAL CP") field(CALC, "SIN(A*D2R)") field(EGU, "mm") }
"""

SAMPLES = 30
"""Updates of each PV the demo records (3 s of the IOC's 10 Hz) before it stops recording."""

NEEDED_TYPES = ("calc.Calc", "collect.Collector")
NEEDED_EXPORTER = "hdf5"
NEEDED_UPLOADER = "directory"


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main(output: Path) -> None:
    use_loopback_environment()  # before any p4p Context or Server
    from p4p.client.thread import Context

    import epics_meta_devices as emd
    from epics_meta_devices.testing import wait_until

    from ._client import CollectorClient
    from ._plot import plot_recording

    output = output.resolve()
    data_dir, share = output / "data", output / "share"
    share.mkdir(parents=True, exist_ok=True)
    stem = unique_prefix("demo")
    x, y = f"{stem}:dummy:circle:x", f"{stem}:dummy:circle:y"
    factory_prefix, radius, collector_prefix = f"{stem}:factory", f"{stem}:radius", f"{stem}:mycollector"

    step(f"an IOC: python -m pvxslibs.ioc -d circle.db, serving {x} and {y} at 10 Hz")
    with IocProcess(CIRCLE_DB, {"P": f"{stem}:dummy:"}, wait_for=x):
        step(f"a factory: emd factory run {factory_prefix} --data-root {output}")
        # the data root is the host's: its collectors read and write only below it
        factory_process = DeviceProcess("factory.DeviceFactory", factory_prefix,
                                        cli=["factory", "run", factory_prefix, "--data-root", str(output)])
        factory_process.start()
        ctxt = Context("pva", nt=False)
        try:
            factory = emd.FactoryClient(factory_prefix)
            types = factory.types()
            print(f"   DEVICETYPES = {types}")
            missing = [t for t in NEEDED_TYPES if t not in types]
            if missing or NEEDED_EXPORTER not in emd.exporters() or NEEDED_UPLOADER not in emd.uploaders():
                raise SystemExit("the demo needs emd-processors, emd-collector, emd-hdf5 and emd-dms "
                                 "installed: make demo installs them")

            step(f"a processor through the factory: put {factory_prefix}:CREATE calc.Calc {radius}")
            calc = factory.create("calc.Calc", radius)
            # trigger "all": compute once both coordinates of a new point have arrived
            ctxt.put(f"{radius}:CONFIG", {"expression": "sqrt(A*A + B*B)", "inputs": [x, y], "trigger": "all"})
            ctxt.put(f"{radius}:ENABLE", True)
            print("   put CONFIG {expression: 'sqrt(A*A + B*B)', inputs: [x, y], trigger: all}, ENABLE True "
                  f"-> STATE={calc.state}")
            wait_until(lambda: ctxt.get(f"{radius}:VAL")["alarm.severity"] == 0, 10, "VAL valid")
            print(f"   {radius}:VAL = {ctxt.get(f'{radius}:VAL').value:.3f} (the circle's radius, EPICS out)")

            step(f"a collector through the factory: put {factory_prefix}:CREATE collect.Collector "
                 f"{collector_prefix}")
            factory.create("collect.Collector", collector_prefix).disconnect()
            recorded = [x, y, f"{radius}:VAL"]
            ctxt.put(f"{collector_prefix}:CONFIG", {"input_pvs": recorded, "data_dir": data_dir.name,
                                                    "publish_period": 0.2})
            ctxt.put(f"{collector_prefix}:ENABLE", True)
            print(f"   put CONFIG input_pvs {recorded}, ENABLE True; recording {SAMPLES} updates of each ...")
            collector = CollectorClient(collector_prefix)
            wait_until(lambda: all(collector.status(pv)["stored"] >= SAMPLES for pv in recorded), 30,
                       f"{SAMPLES} updates of each PV")
            ctxt.put(f"{collector_prefix}:ENABLE", False)
            history = ctxt.get(f"{collector_prefix}:OUT:{x}").history
            print(f"   put ENABLE False; OUT:...circle:x history: {len(history)} updates, first values "
                  f"{[round(v.value, 3) for v in history[:4]]}")
            status = collector.status()
            print(f"   STATUS: received {status['received']}, stored {status['stored']}, "
                  f"dropped {status['dropped']}")

            step("an HDF5 export: put EXPORT {path: circle.h5, format: hdf5}")
            written = collector.export("circle.h5", "hdf5")
            print(f"   wrote {written} ({Path(written).stat().st_size} bytes, NeXus/HDF5)")

            step(f"an upload to a directory target: put UPLOAD {{circle.h5, directory, destination {share}}}")
            collector.upload("circle.h5", "directory", destination=str(share))
            upload = collector.wait_for_upload(timeout=60)
            print(f"   UPLOAD_STATUS: {upload['state']}, {upload['location'] or upload['message']}")
            if upload["state"] != "done":
                raise SystemExit(f"the upload failed: {upload['message']}")

            step("a plot of the recording: emd plot")
            plot_recording(collector, output / "circle.png", title="the demo's circle")
            print(f"   wrote {output / 'circle.png'}: one panel per unit (mm for x and y)")
            collector.disconnect()

            step(f"clean up: put {factory_prefix}:DELETE for both devices")
            calc.disconnect()
            factory.delete(collector_prefix)
            factory.delete(radius)
            print(f"   devices left: {factory.devices()}")
            factory.disconnect()
        finally:
            ctxt.close()
            print(f"   factory process exited with {factory_process.stop()}")
    print(f"\nDone. Open {output / 'circle.png'}, {data_dir / 'circle.h5'} and {share}.")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "emd-demo"))
