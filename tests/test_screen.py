"""``emd screen PREFIX -o device.bob`` (issue 19): a Phoebus Display Builder screen of any device
from its PVI, made with pvi. Phoebus cannot run here, so the tests check what Phoebus relies on:
the file parses as a Display Builder file, every widget is of a Display Builder type, every PV
on it is one the device serves (answers a get, over pva://), every PV the device's PVI lists is
on it, and groups (CONFIG's fields, INFO's) are group widgets of their own."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from epics_meta_devices.testing import run_emd

DISPLAY_BUILDER_WIDGETS = {
    "action_button", "array", "byte_monitor", "checkbox", "combo", "embedded", "group", "image",
    "label", "led", "multi_state_led", "navtabs", "picture", "progressbar", "rectangle", "table",
    "tabs", "textentry", "textupdate", "xyplot",
}
"""Widget types of Phoebus Display Builder (a subset: those a generated screen may hold)."""


def pvi_pvs(ctxt, pvi_name: str) -> set[str]:
    """Every PV a PVI lists, groups included (what a screen must show)."""
    found: set[str] = set()
    for modes in ctxt.get(pvi_name)["value"].todict().values():
        for mode, pv in modes.items():
            found |= pvi_pvs(ctxt, pv) if mode == "d" else {pv}
    return found


def screen_of(prefix: str, path: Path) -> ElementTree.Element:
    done = run_emd("screen", prefix, "-o", path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {path}"
    return ElementTree.parse(path).getroot()


@pytest.mark.parametrize("device_type, config", [
    ("ping.Ping", {}),
    ("collect.Collector", {"input_pvs": ["lab:temperature", "ca://lab:pressure"]}),
    ("calc.Calc", {"expression": "A*2", "inputs": ["lab:temperature"]}),
])
def test_a_screen_has_every_pv_of_the_device_and_only_those(prefix, ctxt, run_device, tmp_path, device_type, config):
    run_device(device_type, prefix, config=config)
    root = screen_of(prefix, tmp_path / "device.bob")

    assert root.tag == "display" and root.get("version") == "2.0.0"
    widgets = list(root.iter("widget"))
    assert {w.get("type") for w in widgets} <= DISPLAY_BUILDER_WIDGETS
    on_screen = {element.text for element in root.iter("pv_name")}
    assert all(name.startswith("pva://") for name in on_screen)  # Phoebus assumes CA for bare names
    served = {name.removeprefix("pva://") for name in on_screen}
    assert served == pvi_pvs(ctxt, f"{prefix}:PVI")
    for name in served:  # every one answers
        ctxt.get(name, timeout=5.0)
    groups = {w.find("name").text for w in widgets if w.get("type") == "group"}
    assert {"Config", "Info"} <= groups
    config_group = next(w for w in widgets if w.get("type") == "group" and w.find("name").text == "Config")
    assert f"pva://{prefix}:CONFIG:" in ElementTree.tostring(config_group, encoding="unicode")


def test_a_collector_screen_follows_its_input_pvs(prefix, ctxt, run_device, tmp_path):
    client = run_device("collect.Collector", prefix, config={"input_pvs": ["lab:a"]})
    first = {e.text for e in screen_of(prefix, tmp_path / "one.bob").iter("pv_name")}
    client.configure(input_pvs=["lab:a", "ca://lab:b"])
    second = {e.text for e in screen_of(prefix, tmp_path / "two.bob").iter("pv_name")}
    assert second - first == {f"pva://{prefix}:OUT:lab:b:TABLE"}


def test_bad_requests_are_one_line_and_write_nothing(prefix, run_device, tmp_path):
    run_device("ping.Ping", prefix)
    done = run_emd("screen", prefix, "-o", tmp_path / "device.png")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "Error: cannot write device.png: screens are .bob or .edl files"
    done = run_emd("screen", f"{prefix}:nothing", "-o", tmp_path / "none.bob", "--timeout", "1")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"Error: {prefix}:nothing:PVI did not answer within 1.0 s: is the device running?"
    assert list(tmp_path.iterdir()) == []
