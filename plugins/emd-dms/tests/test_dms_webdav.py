"""The WebDAV uploader against WsgiDAV (anonymous and with basic authentication), a server
answering 503 and one that never answers."""

from __future__ import annotations

import logging
import time

import pytest
from epics_meta_devices.testing import free_port

import epics_meta_devices as emd
from emd_dms import WebDavUploader

PASSWORD = "wonder-land-7"


def test_put_into_new_collections(webdav, data_file, progress):
    where = WebDavUploader().upload(data_file, {"url": webdav.url + "/", "remote_path": "beam time/run 1"},
                                    progress)
    assert where == f"{webdav.url}/beam%20time/run%201/run1.h5"
    assert (webdav.root / "beam time" / "run 1" / "run1.h5").read_bytes() == data_file.read_bytes()
    progress.check(data_file.stat().st_size)
    # again, into the collections that now exist: the file is replaced
    data_file.write_bytes(b"shorter")
    WebDavUploader().upload(data_file, {"url": webdav.url, "remote_path": "beam time/run 1"})
    assert (webdav.root / "beam time" / "run 1" / "run1.h5").read_bytes() == b"shorter"


def test_basic_authentication_from_the_environment(webdav_auth, data_file, monkeypatch, caplog):
    monkeypatch.setenv("EMD_WEBDAV_USER", "alice")
    monkeypatch.setenv("EMD_WEBDAV_PASSWORD", PASSWORD)
    monkeypatch.setenv("EMD_WEBDAV_URL", webdav_auth.url)  # the credentials go only there
    with caplog.at_level(logging.DEBUG):
        where = WebDavUploader().upload(data_file, {})
    assert where == f"{webdav_auth.url}/run1.h5"
    assert (webdav_auth.root / "run1.h5").read_bytes() == data_file.read_bytes()
    assert PASSWORD not in caplog.text


def test_basic_authentication_from_the_config_file(webdav_auth, data_file, tmp_path, monkeypatch):
    config = tmp_path / "dms.toml"
    config.write_text(f'[webdav]\nurl = "{webdav_auth.url}"\nuser = "alice"\npassword = "{PASSWORD}"\n')
    config.chmod(0o600)
    monkeypatch.setenv("EMD_DMS_CONFIG", str(config))
    WebDavUploader().upload(data_file, {"remote_path": "in"})
    assert (webdav_auth.root / "in" / "run1.h5").exists()


@pytest.mark.parametrize("password", ["wrong-password", None])
def test_refused_credentials_are_permanent(webdav_auth, data_file, monkeypatch, password):
    if password:
        monkeypatch.setenv("EMD_WEBDAV_USER", "alice")
        monkeypatch.setenv("EMD_WEBDAV_PASSWORD", password)
        monkeypatch.setenv("EMD_WEBDAV_URL", webdav_auth.url)
    options = {} if password else {"url": webdav_auth.url}  # a put's url: only without credentials
    with pytest.raises(emd.UploadError, match="HTTP 401 .*check the credentials .*EMD_WEBDAV_PASSWORD") as failed:
        WebDavUploader().upload(data_file, options)
    assert failed.value.retry is False
    assert "wrong-password" not in str(failed.value)
    assert list(webdav_auth.root.iterdir()) == []


def test_base_that_does_not_exist(webdav, data_file):
    with pytest.raises(emd.UploadError, match=r"WebDAV base .*/nothere does not exist \(HTTP 404\)") as failed:
        WebDavUploader().upload(data_file, {"url": webdav.url.replace("/dav", "/nothere")})
    assert failed.value.retry is False


def test_vanished_file(webdav, tmp_path):
    with pytest.raises(emd.UploadError, match="cannot upload .*gone.h5: no such file") as failed:
        WebDavUploader().upload(tmp_path / "gone.h5", {"url": webdav.url})
    assert failed.value.retry is False


def test_server_error_is_worth_retrying(unavailable_server, data_file):
    url = f"http://127.0.0.1:{unavailable_server.port}/dav"
    with pytest.raises(emd.UploadError, match=r"WebDAV base .*: HTTP 503 Service Unavailable \(down for maintenance\)") as failed:
        WebDavUploader().upload(data_file, {"url": url})
    assert failed.value.retry is True


def test_timeout_is_worth_retrying(silent_server, data_file):
    started = time.monotonic()
    with pytest.raises(emd.UploadError, match=rf"no answer from http://127.0.0.1:{silent_server.port} within 0.5 s") as failed:
        WebDavUploader().upload(data_file, {"url": f"http://127.0.0.1:{silent_server.port}/dav", "timeout": 0.5})
    assert failed.value.retry is True
    assert time.monotonic() - started < 5


def test_refused_connection_is_worth_retrying(data_file):
    port = free_port()  # nothing listens there
    with pytest.raises(emd.UploadError, match=rf"connection to http://127.0.0.1:{port} failed \(Connection refused\)") as failed:
        WebDavUploader().upload(data_file, {"url": f"http://127.0.0.1:{port}/dav"})
    assert failed.value.retry is True


def test_size_mismatch_is_reported(webdav, data_file, monkeypatch):
    monkeypatch.setattr(WebDavUploader, "stored_size", staticmethod(lambda call, target: 17))
    with pytest.raises(emd.UploadError, match=r"verification of .*run1.h5 failed: the server holds 17 bytes, the file has 200000") as failed:
        WebDavUploader().upload(data_file, {"url": webdav.url})
    assert failed.value.retry is False
