"""The collector's side of the `emd` command line, run as a user runs it (a subprocess against a
collector process recording real PVs): rpc of HISTORY, export --json, upload with its progress,
collect --json."""

from __future__ import annotations

import json

import pytest

from emd_collector import CollectorClient
from epics_meta_devices.testing import emd_error as refused, run_emd as emd_cli, wait_until


@pytest.fixture
def recorded(monkeypatch, prefix, sources, run_device, tmp_path):
    """A collector process that recorded 1.0 to 5.0 of a double source and is disabled again;
    yields (collector prefix, source PV name, data directory)."""
    data = tmp_path / "data"
    source = sources.name("double")
    collector = f"{prefix}:coll"
    monkeypatch.setenv("EMD_DATA_ROOT", str(data))  # the host's data root: data_dir is relative to it
    run_device("collect.Collector", collector, config={
        "input_pvs": [source], "publish_period": 0.1, "upload_retries": 0})
    with CollectorClient(collector) as client:
        assert emd_cli("enable", collector).returncode == 0
        wait_until(lambda: client.status(source)["connected"], what=f"{collector} to connect to {source}")
        for value in (1.0, 2.0, 3.0, 4.0, 5.0):
            sources.post("double", value)
        wait_until(lambda: client.status(source)["samples"] == 6, what="the initial value and 5 updates recorded")
        assert emd_cli("disable", collector).returncode == 0
    yield collector, source, data


def test_rpc_history_of_a_collector(recorded):
    collector, source, _ = recorded
    result = emd_cli("rpc", f"{collector}:HISTORY", f"pv={source}", "start=0", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["pv"] == f"{collector}:HISTORY" and answer["value"]["value"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    table = emd_cli("rpc", f"{collector}:HISTORY", f"pv={source}", "max_points=2").stdout.splitlines()
    assert table[0] == f"{collector}:HISTORY"
    assert table[1].split() == ["time", "time_ns", "value", "severity", "status"]
    assert [row.split()[2] for row in table[2:]] == ["0.0", "5.0"]  # min/max of one bucket
    assert refused("rpc", f"{collector}:HISTORY", "pv=nope") == (
        f"Error: {collector}:HISTORY refused the call: 'nope' is not recorded here (recorded: {source})")


def test_export_and_upload_to_a_directory(recorded, tmp_path):
    collector, _, data = recorded
    result = emd_cli("export", collector, "run.npz", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"prefix": collector, "path": str(data / "run.npz")}
    assert (data / "run.npz").is_file()

    share = tmp_path / "share"
    share.mkdir()
    result = emd_cli("upload", collector, "run.npz", "directory", "-o", f"destination={share}", "-o", "subdir=runs")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"uploaded run.npz to directory: {share / 'runs' / 'run.npz'}\n"
    size = (data / "run.npz").stat().st_size
    assert (share / "runs" / "run.npz").read_bytes() == (data / "run.npz").read_bytes()
    # The progress bar on stderr, from UPLOAD_STATUS: its last state and the bytes done.
    assert "done run.npz -> directory" in result.stderr and f"{size / 1000:.1f}/{size / 1000:.1f} kB" in result.stderr

    result = emd_cli("upload", collector, "run.npz", "directory", "-o", f"destination={share}", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["state"] == "done" and status["location"] == str(share / "run.npz")
    assert status["bytes_done"] == status["bytes_total"] == size and "done run.npz" not in result.stderr


def test_refused_and_failed_uploads(recorded, tmp_path):
    collector, _, data = recorded
    assert emd_cli("export", collector, "run.npz").returncode == 0
    assert refused("upload", collector, "run.npz", "nosuch") == (
        f"Error: {collector}:UPLOAD refused the put: no uploader 'nosuch' installed "
        "(installed: directory, nomad, s3, webdav)")
    assert refused("upload", collector, "missing.npz", "directory", "-o", "destination=/tmp") == (
        f"Error: {collector}:UPLOAD refused the put: cannot upload {data / 'missing.npz'}: "
        "no such file in the data directory")
    assert refused("upload", collector, "run.npz", "directory", "-o", "password=x").startswith(
        f"Error: {collector}:UPLOAD refused the put: UPLOAD options must not carry credentials (password)")
    assert refused("upload", collector, "run.npz", "directory", "-o", "destination") == (
        "Error: --option 'destination': expected KEY=VALUE")
    absent = tmp_path / "not-mounted"
    assert refused("upload", collector, "run.npz", "directory", "-o", f"destination={absent}") == (
        f"Error: upload of run.npz to directory failed after 1 attempt(s): destination {absent} "
        "is not an existing directory (is the share mounted?)")


def test_collect_json(sources, tmp_path):
    source = sources.name("int32")
    result = emd_cli("collect", source, "--duration", "1.5", "--export", "run.npz", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["prefix"].startswith("emd:collect:") and report["exported"] == str(tmp_path / "run.npz")
    assert report["samples"] == 1 and report["pvs"][source]["stored"] == 1  # the current value
    assert (tmp_path / "run.npz").is_file()
