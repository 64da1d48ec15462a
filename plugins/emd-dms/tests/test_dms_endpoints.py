"""Credentials bound to endpoints (issue 17), attacked through PVs: a collector process whose
host configures WebDAV, NOMAD and S3 credentials is sent an UPLOAD naming a server of the
attacker's own. The put is refused with a clear message and the attacker's server (a real local
HTTP server recording every request) never hears from the collector, let alone an Authorization
header. Named endpoints of the host's EMD_DMS_CONFIG file carry their own credentials; the
`directory` uploader stays inside the roots the host configures."""

from __future__ import annotations

import time

import pytest

import epics_meta_devices as emd
from emd_collector import CollectorClient


PASSWORD = "wonder-land-7"
TOKEN = "nomad-token-42"


@pytest.fixture
def host(tmp_path, webdav_auth):
    """A data root holding run.h5 and a DMS config naming a WebDAV endpoint with its
    credentials, a share root, and S3 keys."""
    root, share = tmp_path / "root", tmp_path / "share"
    root.mkdir()
    share.mkdir()
    (root / "run.h5").write_bytes(b"recorded data" * 100)
    config = tmp_path / "dms.toml"
    config.write_text(f'''
[webdav.archive]
url = "{webdav_auth.url}"
user = "alice"
password = "{PASSWORD}"

[directory]
roots = ["{share}"]

[s3.store]
endpoint_url = "http://127.0.0.1:1"
access_key_id = "AKIDEXAMPLE"
secret_access_key = "not-for-you"
''')
    config.chmod(0o600)
    return {"root": root, "share": share, "config": config, "dav": webdav_auth}


def collector(run_device, prefix, host, **env: str) -> CollectorClient:
    run_device("collect.Collector", prefix, config={"upload_backoff": 0.1, "upload_retries": 0},
               env={"EMD_DATA_ROOT": str(host["root"]), "EMD_DMS_CONFIG": str(host["config"]), **env})
    return CollectorClient(prefix)


def refused_upload(client: CollectorClient, target: str, **options) -> str:
    with pytest.raises(emd.DeviceError) as refused:
        client.upload("run.h5", target, **options)
    assert client.upload_status()["state"] == "idle"  # nothing queued
    return str(refused.value)


def test_webdav_url_from_a_put_never_gets_the_password(run_device, prefix, host, attacker):
    client = collector(run_device, prefix, host)
    message = refused_upload(client, "webdav", url=attacker.url)
    assert "webdav: option url refused: this host has webdav credentials, which go only to endpoints " \
           "it configures; name one with option endpoint (configured: archive;" in message
    time.sleep(0.5)  # had anything been queued, it would have started by now
    assert attacker.seen == []

    client.upload("run.h5", "webdav", endpoint="archive", remote_path="in")  # the owner's way
    status = client.wait_for_upload(30)
    assert status["state"] == "done", status
    assert (host["dav"].root / "in" / "run.h5").read_bytes() == (host["root"] / "run.h5").read_bytes()
    assert attacker.seen == []


def test_webdav_credentials_from_the_environment_also_bind(run_device, prefix, host, attacker, tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    empty.chmod(0o600)
    client = collector(run_device, prefix, host, EMD_DMS_CONFIG=str(empty), EMD_WEBDAV_USER="alice",
                       EMD_WEBDAV_PASSWORD=PASSWORD)
    assert "option url refused" in refused_upload(client, "webdav", url=attacker.url + "/dav")
    assert attacker.seen == []


def test_nomad_url_from_a_put_never_gets_the_token(run_device, prefix, host, attacker):
    client = collector(run_device, prefix, host, EMD_NOMAD_TOKEN=TOKEN)
    message = refused_upload(client, "nomad", url=attacker.url + "/api/v1")
    assert "nomad: option url refused: this host has nomad credentials" in message
    assert TOKEN not in message
    time.sleep(0.5)
    assert attacker.seen == []


def test_s3_endpoint_url_from_a_put_is_refused_with_keys_configured(run_device, prefix, host, attacker):
    pytest.importorskip("boto3")
    client = collector(run_device, prefix, host)
    message = refused_upload(client, "s3", bucket="b", endpoint_url=attacker.url)
    assert "s3: option endpoint_url refused: this host has s3 credentials" in message
    assert attacker.seen == []


@pytest.mark.parametrize("target, options, reason", [
    ("webdav", {"endpoint": "elsewhere"}, "webdav: no endpoint 'elsewhere' on this host (configured: archive;"),
    ("webdav", {"endpoint": "archive", "url": "http://127.0.0.1:9/"}, "give option endpoint or url, not both"),
    ("nomad", {}, "nomad: option endpoint needed (configured: none;"),
    ("directory", {"destination": "/tmp"}, "destination '/tmp' is outside the directories this host allows"),
])
def test_unknown_endpoints_and_destinations_are_refused(run_device, prefix, host, target, options, reason):
    client = collector(run_device, prefix, host)
    assert reason in refused_upload(client, target, **options)


def test_directory_destination_confined_to_the_roots(run_device, prefix, host, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (host["share"] / "door").symlink_to(outside)  # a link inside the root, leading out
    client = collector(run_device, prefix, host)
    message = refused_upload(client, "directory", destination=str(host["share"] / "door"))
    assert "is outside the directories this host allows" in message
    assert list(outside.iterdir()) == []
    client.upload("run.h5", "directory", destination=str(host["share"]), subdir="beam")
    assert client.wait_for_upload(30)["state"] == "done"
    assert (host["share"] / "beam" / "run.h5").exists()



def test_upload_path_uploads_to_the_configured_target_and_completes_when_done(run_device, prefix, host, ctxt):
    """UPLOAD:path, the put-to-execute form for plans and screens: CONFIG names the target and
    its options once; a put of a path uploads it and completes when the upload has ended."""
    client = collector(run_device, prefix, host)
    with pytest.raises(emd.DeviceError, match="UPLOAD:path uploads to CONFIG upload_target, which is not set"):
        client.put("UPLOAD:path", "run.h5")
    with pytest.raises(Exception, match=r"upload_options must not carry credentials \(password\)"):
        client.configure(upload_target="webdav", upload_options='{"endpoint": "archive", "password": "x"}')
    with pytest.raises(Exception, match="upload_target: no uploader 'ftp' installed"):
        client.configure(upload_target="ftp")
    client.configure(upload_target="webdav", upload_options='{"endpoint": "archive", "remote_path": "nt"}')
    ctxt.put(f"{prefix}:UPLOAD:path", "run.h5", timeout=30)  # returns once uploaded
    assert (host["dav"].root / "nt" / "run.h5").read_bytes() == (host["root"] / "run.h5").read_bytes()
    assert client.upload_status()["state"] == "done"
    assert ctxt.get(f"{prefix}:UPLOAD:path")["value"] == ""  # keeps no request

    host["dav"].stop()  # the server is gone: the put fails with the reason
    with pytest.raises(Exception, match="upload of run.h5 to webdav failed: "):
        ctxt.put(f"{prefix}:UPLOAD:path", "run.h5", timeout=30)
    assert client.upload_status()["state"] == "failed"
