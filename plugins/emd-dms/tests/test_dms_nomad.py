"""The NOMAD uploader against NomadStandIn (conftest.py: a stand-in implementing the NOMAD API v1
endpoints used, NOT NOMAD), a server answering 503 and one that never answers."""

from __future__ import annotations

import time

import pytest

import epics_meta_devices as emd
from emd_dms import NomadUploader

TOKEN = "nomad-token-42"


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("EMD_NOMAD_TOKEN", TOKEN)


class HostUrlUploader(NomadUploader):
    """A NomadUploader whose tests name the server as the host would: the url moves from the
    options to EMD_NOMAD_URL (a put's url is refused while a token is configured)."""

    def __init__(self, monkeypatch) -> None:
        super().__init__()
        self.monkeypatch = monkeypatch

    def upload(self, path, options, progress=None):
        options = dict(options)
        if "url" in options:
            self.monkeypatch.setenv("EMD_NOMAD_URL", options.pop("url"))
        return super().upload(path, options, progress) if progress else super().upload(path, options)


@pytest.fixture
def uploader(monkeypatch):
    """A new uploader, so no open upload carries over from another test."""
    return HostUrlUploader(monkeypatch)


def second_file(tmp_path, name="run2.nxs", size=5000):
    path = tmp_path / name
    path.write_bytes(b"\x42" * size)
    return path


def test_successive_files_share_one_open_upload(nomad, token, uploader, data_file, tmp_path, progress):
    first = uploader.upload(data_file, {"url": nomad.url}, progress)
    progress.check(data_file.stat().st_size)
    (upload_id,) = nomad.uploads
    assert first == f"{nomad.url}/uploads/{upload_id}/raw/run1.h5"
    # the next file goes into the same upload, in a directory, once NOMAD has processed the first
    second = uploader.upload(second_file(tmp_path), {"url": nomad.url, "remote_path": "scans/b"})
    assert second == f"{nomad.url}/uploads/{upload_id}/raw/scans/b/run2.nxs"
    assert list(nomad.uploads) == [upload_id]
    assert nomad.uploads[upload_id]["files"] == {"run1.h5": data_file.read_bytes(),
                                                  "scans/b/run2.nxs": b"\x42" * 5000}
    writes = [r for r in nomad.requests if r[0] in ("POST", "PUT")]
    assert writes == [("POST", "/nomad-oasis/api/v1/uploads"),
                      ("PUT", f"/nomad-oasis/api/v1/uploads/{upload_id}/raw/scans/b")]


def test_first_file_into_a_directory_creates_an_empty_upload(nomad, token, uploader, data_file):
    where = uploader.upload(data_file, {"url": nomad.url, "remote_path": "raw data"})
    (upload_id,) = nomad.uploads
    assert where == f"{nomad.url}/uploads/{upload_id}/raw/raw%20data/run1.h5"
    assert list(nomad.uploads[upload_id]["files"]) == ["raw data/run1.h5"]


def test_into_a_given_upload(nomad, token, uploader, data_file):
    upload_id = nomad.add_upload({"notes.txt": b"made in the GUI"})
    uploader.upload(data_file, {"url": nomad.url, "upload_id": upload_id})
    assert set(nomad.uploads[upload_id]["files"]) == {"notes.txt", "run1.h5"}
    assert ("POST", "/nomad-oasis/api/v1/uploads") not in nomad.requests


def test_publish_then_a_new_upload(nomad, token, uploader, data_file, tmp_path):
    uploader.upload(data_file, {"url": nomad.url, "publish": True})
    (published,) = nomad.uploads
    assert nomad.uploads[published]["published"] is True
    uploader.upload(second_file(tmp_path), {"url": nomad.url})
    (new,) = set(nomad.uploads) - {published}
    assert list(nomad.uploads[new]["files"]) == ["run2.nxs"] and not nomad.uploads[new]["published"]


def test_waits_for_processing_before_adding(nomad, token, uploader, data_file):
    upload_id = nomad.add_upload({"a.txt": b"1"})
    nomad.uploads[upload_id]["busy_until"] = time.monotonic() + 1.0  # processing something else
    uploader.upload(data_file, {"url": nomad.url, "upload_id": upload_id})
    assert set(nomad.uploads[upload_id]["files"]) == {"a.txt", "run1.h5"}
    gets = [r for r in nomad.requests if r == ("GET", f"/nomad-oasis/api/v1/uploads/{upload_id}")]
    assert len(gets) > 2  # polled until idle, then once more after the PUT


def test_a_published_or_unknown_upload_id_is_refused(nomad, token, uploader, data_file):
    published = nomad.add_upload({"a": b"1"}, published=True)
    with pytest.raises(emd.UploadError, match=f"NOMAD upload {published} is published") as failed:
        uploader.upload(data_file, {"url": nomad.url, "upload_id": published})
    assert failed.value.retry is False
    with pytest.raises(emd.UploadError, match=r"reading NOMAD upload nope: no such upload .*\(HTTP 404\)") as failed:
        uploader.upload(data_file, {"url": nomad.url, "upload_id": "nope"})
    assert failed.value.retry is False


def test_an_open_upload_deleted_meanwhile_is_replaced(nomad, token, uploader, data_file, tmp_path):
    uploader.upload(data_file, {"url": nomad.url})
    nomad.uploads.clear()  # deleted in the GUI
    uploader.upload(second_file(tmp_path), {"url": nomad.url})
    (upload,) = nomad.uploads.values()
    assert list(upload["files"]) == ["run2.nxs"]


def test_limit_of_unpublished_uploads(nomad, token, uploader, data_file):
    for _ in range(nomad.limit):
        nomad.add_upload()
    with pytest.raises(emd.UploadError, match=r"HTTP 400 .*Limit of unpublished uploads exceeded") as failed:
        uploader.upload(data_file, {"url": nomad.url})
    assert failed.value.retry is False


@pytest.mark.parametrize("token_value", ["wrong-token", None])
def test_refused_or_missing_token(nomad, uploader, data_file, monkeypatch, token_value):
    if token_value:
        monkeypatch.setenv("EMD_NOMAD_TOKEN", token_value)
        message = r"HTTP 401 .*check the credentials .*EMD_NOMAD_TOKEN"
    else:
        message = "no NOMAD token: set EMD_NOMAD_TOKEN"
    with pytest.raises(emd.UploadError, match=message) as failed:
        uploader.upload(data_file, {"url": nomad.url})
    assert failed.value.retry is False
    assert "wrong-token" not in str(failed.value)
    assert nomad.uploads == {}


def test_token_from_the_config_file(nomad, uploader, data_file, tmp_path, monkeypatch):
    config = tmp_path / "dms.toml"
    config.write_text(f'[nomad]\ntoken = "{TOKEN}"\n')
    config.chmod(0o600)
    monkeypatch.setenv("EMD_DMS_CONFIG", str(config))
    uploader.upload(data_file, {"url": nomad.url})
    assert len(nomad.uploads) == 1


def test_size_mismatch_after_processing(nomad, token, uploader, data_file):
    nomad.corrupt = True
    with pytest.raises(emd.UploadError, match="verification of run1.h5 in NOMAD upload .* failed: NOMAD holds 199999 bytes, the file has 200000") as failed:
        uploader.upload(data_file, {"url": nomad.url})
    assert failed.value.retry is False


def test_processing_that_takes_too_long_is_worth_retrying(nomad, token, uploader, data_file):
    nomad.processing = 30
    with pytest.raises(emd.UploadError, match="is still processing after 0.5 s") as failed:
        uploader.upload(data_file, {"url": nomad.url, "processing_timeout": 0.5})
    assert failed.value.retry is True


def test_vanished_file(nomad, token, uploader, tmp_path):
    with pytest.raises(emd.UploadError, match="no such file") as failed:
        uploader.upload(tmp_path / "gone.h5", {"url": nomad.url})
    assert failed.value.retry is False


def test_wrong_base_url(nomad, token, uploader, data_file):
    with pytest.raises(emd.UploadError, match=r"not found: is the url option the NOMAD API v1 base") as failed:
        uploader.upload(data_file, {"url": nomad.url.replace("/api/v1", "/api/v9")})
    assert failed.value.retry is False


def test_server_error_is_worth_retrying(unavailable_server, token, uploader, data_file):
    url = f"http://127.0.0.1:{unavailable_server.port}/nomad-oasis/api/v1"
    with pytest.raises(emd.UploadError, match=r"creating a NOMAD upload at .*: HTTP 503 Service Unavailable") as failed:
        uploader.upload(data_file, {"url": url})
    assert failed.value.retry is True


def test_timeout_is_worth_retrying(silent_server, token, uploader, data_file):
    started = time.monotonic()
    with pytest.raises(emd.UploadError, match=rf"no answer from http://127.0.0.1:{silent_server.port} within 0.5 s") as failed:
        uploader.upload(data_file, {"url": f"http://127.0.0.1:{silent_server.port}/api/v1", "timeout": 0.5})
    assert failed.value.retry is True
    assert time.monotonic() - started < 5
