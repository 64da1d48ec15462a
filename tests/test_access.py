"""Access security (issue 17): devices and factories run with an EPICS ACF (--acf) refuse the
controls of users the file does not allow, performed as an attacker would: through PVs, from a
client process of another OS user (setpriv), with the refusal's message, and the value read
back unchanged. The owner's own work still passes."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import epics_meta_devices as emd
from epics_meta_devices.testing import DeviceProcess, unique_prefix, wait_until

GUEST = "emdguest"
"""The other person: an OS user the tests create (when missing) to run attacking clients."""

OWNERS_ONLY = """\
UAG(owners) {root}
ASG(DEFAULT) {
    RULE(1, READ)
    RULE(1, WRITE) { UAG(owners) }
}
"""
"""Everyone reads, only root writes. CONTROL and FACTORY are not defined: they fall back to
DEFAULT, as an IOC's undefined groups do."""

CLIENT = """\
import json, sys, time
from p4p.client.thread import Context
ctxt = Context("pva", nt=False)
results = []
for action, name, value in json.loads(sys.argv[1]):
    try:
        if action == "get":
            got = ctxt.get(name, timeout=float(value))
            results.append(["ok", str(got.get("value", got))])
        elif action == "until_accepted":  # put until the policy lets it through (after SIGHUP)
            deadline = time.monotonic() + 20
            while True:
                try:
                    ctxt.put(name, value, timeout=5)
                    results.append(["ok", "accepted"])
                    break
                except Exception as exc:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        else:
            ctxt.put(name, value, timeout=10)
            results.append(["ok", "accepted"])
    except Exception as exc:
        results.append(["error", f"{type(exc).__name__}: {exc}"])
print(json.dumps(results))
"""


def _python_for(user: pwd.struct_passwd) -> list[str] | None:
    """An interpreter the user can run with this environment's packages: this one, or the
    system's of the same version given our site-packages (a venv whose base interpreter lives
    in a directory the user cannot enter fails inside setuptools' startup checks)."""
    site = next(p for p in sys.path if p.endswith("site-packages"))
    boot = f"import site; site.addsitedir({site!r}); "
    candidates = [[python, "-c"] for python in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3")
                  if os.path.exists(python)]
    for command in candidates:
        probe = _setpriv(user) + command + [boot + "import p4p, sys; print(sys.version_info[:2])"]
        done = subprocess.run(probe, capture_output=True, text=True, timeout=60, cwd="/tmp")
        if done.returncode == 0 and done.stdout.strip() == str(tuple(sys.version_info[:2])):
            return command + [boot]
    return None


def _setpriv(user: pwd.struct_passwd) -> list[str]:
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]


@pytest.fixture(scope="session")
def guest():
    """``guest(actions)`` runs the actions (``[action, pv, value]``: put, get with a timeout,
    until_accepted) in one client process of the OS user emdguest; returns [status, text] each."""
    if os.geteuid() != 0:
        pytest.skip("access security tests need root: they create an OS user and run clients as it")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    try:
        user = pwd.getpwnam(GUEST)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", GUEST], check=True)
        user = pwd.getpwnam(GUEST)
    python = _python_for(user)
    if python is None:
        pytest.skip(f"no Python with p4p that {GUEST} can run")

    def run(actions: list[list[object]]) -> list[list[str]]:
        command = _setpriv(user) + python[:-1] + [python[-1] + CLIENT, json.dumps(actions)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/tmp",
                              env={**os.environ, "HOME": "/tmp"})
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    return run


def _acf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "emd.acf"
    path.write_text(text)
    return path


def test_another_user_is_refused_every_control_but_reads(guest, tmp_path):
    """A factory under OWNERS_ONLY: its children enforce the same file. emdguest's CONFIG,
    ENABLE, CLOSE, PING, CREATE, DELETE and the factory's own controls are all refused with the
    message and change nothing; its gets work; root's work passes; the log says who."""
    acf = _acf(tmp_path, OWNERS_ONLY)
    fprefix, dprefix = unique_prefix("acffac"), unique_prefix("acfdev")
    factory = DeviceProcess("", fprefix, cli=["factory", "run", fprefix], args=["--acf", str(acf)])
    with factory as fclient:
        owner = emd.FactoryClient(fprefix)
        device = owner.create("ping.Ping", dprefix, {"delay": 0.0})
        [row] = owner.devices()
        assert row["creator"].startswith("root@")

        results = guest([
            ["put", f"{dprefix}:CONFIG", {"delay": 5.0}],
            ["put", f"{dprefix}:ENABLE", True],
            ["put", f"{dprefix}:CLOSE", True],
            ["put", f"{dprefix}:PING", {}],
            ["put", f"{fprefix}:CREATE", {"device_type": "ping.Ping", "device_prefix": dprefix + "x"}],
            ["put", f"{fprefix}:DELETE", {"device_prefix": dprefix}],
            ["put", f"{fprefix}:CONFIG", {"max_devices": 1000000}],
            ["put", f"{fprefix}:ENABLE", False],
            ["put", f"{fprefix}:CLOSE", True],
            ["get", f"{dprefix}:CONFIG", 5],
            ["get", f"{fprefix}:DEVICES", 5],
        ])
        names = ["CONFIG", "ENABLE", "CLOSE", "PING", "CREATE", "DELETE", "CONFIG", "ENABLE", "CLOSE"]
        targets = [dprefix] * 4 + [fprefix] * 5
        for (status, text), target, name in zip(results[:9], targets, names):
            assert status == "error"
            assert f"put to {target}:{name} refused by access security for {GUEST}@127.0.0.1" in text
        assert [status for status, _ in results[9:]] == ["ok", "ok"]

        # nothing changed
        assert device.config["delay"] == 0.0
        assert device.state is emd.DeviceState.ready
        assert fclient.state is emd.DeviceState.running
        assert fclient.config["max_devices"] == 100
        assert [d["prefix"] for d in owner.devices()] == [dprefix]

        # the owner's work passes
        device.configure(delay=0.01)
        device.enable()
        device.put("PING", {})
        owner.delete(dprefix)
        assert owner.devices() == []
        owner.disconnect()
    log = factory.output()
    assert f"put to {fprefix}:CREATE by {GUEST}@127.0.0.1 refused" in log
    assert f"put to {fprefix}:CREATE by root@127.0.0.1" in log
    assert log.count("no access security file") == 0


def test_read_restriction_denies_gets_from_other_hosts(guest, tmp_path, prefix):
    """CONTROL readable and writable only from a host that is not here: CONFIG cannot even be
    read from loopback (root included); DEFAULT PVs stay readable and writable by the owner."""
    acf = _acf(tmp_path, OWNERS_ONLY + textwrap.dedent("""\
        HAG(control_host) {"10.203.0.1"}
        ASG(CONTROL) {
            RULE(1, WRITE) { HAG(control_host) }
        }
        """))
    process = DeviceProcess("test.Probe", prefix, args=["--acf", str(acf)])
    client = process.start()
    try:
        client.put("INPUT", 2.5)
        assert client.get_pv("INPUT")["value"] == 2.5
        client.timeout = 2.0
        with pytest.raises(emd.DeviceTimeout):
            client.get_pv("CONFIG")
        [(status, text)] = guest([["get", f"{prefix}:CONFIG", 2]])
        assert status == "error" and "Timeout" in text
        wait_until(lambda: f"read of {prefix}:CONFIG refused by access security for 127.0.0.1" in process.output(),
                   what="the refused read in the log")
    finally:
        process.process.send_signal(signal.SIGTERM)  # CLOSE is refused from here too
        process.stop()


def test_sighup_rereads_the_file_and_a_bad_one_keeps_the_rules(guest, tmp_path, prefix):
    acf = _acf(tmp_path, OWNERS_ONLY)
    process = DeviceProcess("test.Probe", prefix, args=["--acf", str(acf)])
    with process as client:
        [(status, text)] = guest([["put", f"{prefix}:INPUT", 1.0]])
        assert status == "error" and "refused by access security" in text
        assert client.get_pv("INPUT")["value"] == 0.0

        acf.write_text(OWNERS_ONLY.replace("{root}", f"{{root, {GUEST}}}"))
        process.process.send_signal(signal.SIGHUP)
        assert guest([["until_accepted", f"{prefix}:INPUT", 3.0]]) == [["ok", "accepted"]]
        assert client.get_pv("INPUT")["value"] == 3.0

        acf.write_text("ASG(DEFAULT) { RULE(1, WRITE }\n")  # broken: the rules in force stay
        process.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "keeping the rules in force" in process.output(), what="the bad file reported")
        assert guest([["put", f"{prefix}:INPUT", 4.0]]) == [["ok", "accepted"]]


@pytest.mark.parametrize("cli", [["device", "run", "ping.Ping"], ["factory", "run"]])
@pytest.mark.parametrize("content, message", [
    (None, "cannot read access security file"),
    ("ASG(DEFAULT) { RULE(1, WRITE }\n", "bad access security file"),
])
def test_a_bad_acf_is_one_clear_error_at_start(tmp_path, prefix, cli, content, message):
    acf = tmp_path / "emd.acf"
    if content is not None:
        acf.write_text(content)
    done = subprocess.run([sys.executable, "-m", "epics_meta_devices", *cli, prefix, "--acf", str(acf)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "Error" in line or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {message} {acf}")


def test_emd_acf_environment_and_the_open_factory_warning(tmp_path):
    """EMD_ACF works like --acf; a factory without a file says once that it is open."""
    acf = _acf(tmp_path, OWNERS_ONLY)
    with_file, open_one = unique_prefix("acfenv"), unique_prefix("acfopen")
    first = DeviceProcess("", with_file, cli=["factory", "run", with_file], env={"EMD_ACF": str(acf)})
    second = DeviceProcess("", open_one, cli=["factory", "run", open_one], env={"EMD_ACF": ""})
    with first, second:
        pass
    assert "no access security file" not in first.output()
    assert second.output().count("no access security file") == 1


def test_policy_groups_fall_back_to_default_and_roles_count():
    """AccessPolicy in the device's own process: groups the file does not define use DEFAULT;
    UAG members ``role/NAME`` match a client's roles; READ from a HAG is decided by host."""
    import tempfile

    text = OWNERS_ONLY + "UAG(ops) {\"role/operators\"}\nHAG(ctl) {\"127.0.0.1\"}\n" + textwrap.dedent("""\
        ASG(FACTORY) {
            RULE(1, READ) { HAG(ctl) }
            RULE(1, WRITE) { UAG(ops) HAG(ctl) }
        }
        """)
    with tempfile.NamedTemporaryFile("w", suffix=".acf") as file:
        file.write(text)
        file.flush()
        policy = emd.AccessPolicy(file.name)
    guest_here = emd.Client(GUEST, "127.0.0.1")
    operator_here = emd.Client(GUEST, "127.0.0.1", ("operators",))
    operator_away = emd.Client(GUEST, "10.203.0.2", ("operators",))
    assert not policy.allows(emd.CONTROL_GROUP, emd.PUT, guest_here)  # CONTROL -> DEFAULT
    assert policy.allows(emd.CONTROL_GROUP, emd.PUT, emd.Client("root", "10.203.0.2"))
    assert policy.allows(emd.FACTORY_GROUP, emd.PUT, operator_here)
    assert not policy.allows(emd.FACTORY_GROUP, emd.PUT, operator_away)
    assert not policy.allows(emd.FACTORY_GROUP, emd.PUT, guest_here)
    assert policy.may_read_from(emd.FACTORY_GROUP, "127.0.0.1")
    assert not policy.may_read_from(emd.FACTORY_GROUP, "10.203.0.2")


@pytest.mark.skipif(not os.environ.get("EMD_ACF"), reason="the suite runs without the owner's ACF (EMD_TEST_ACF=none)")
def test_the_whole_suite_runs_under_the_owner_s_acf(guest, run_device, prefix):
    """The root conftest.py gives every device the tests start an ACF that lets only this user
    write: the rest of the suite is the owner's normal work under access security, and a
    device started the ordinary way refuses another user."""
    device = run_device("ping.Ping", prefix)
    [(status, text)] = guest([["put", f"{prefix}:CONFIG", {"delay": 5.0}]])
    assert status == "error" and "refused by access security for emdguest@" in text
    assert device.config["delay"] != 5.0
