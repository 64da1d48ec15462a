"""The plugin as emd sees it, and what every uploader shares: options that look like
credentials are refused (saying where credentials go), options are checked, and the
EMD_DMS_CONFIG file is read carefully."""

from __future__ import annotations

import logging
import os

import pytest

import epics_meta_devices as emd
from emd_dms import DirectoryUploader, NomadUploader, S3Uploader, WebDavUploader
from emd_dms._common import credential, looks_secret

VALID = {
    "directory": {"destination": "/srv/share"},
    "webdav": {"url": "https://dav.example.org/data"},
    "s3": {"bucket": "beamtime"},
    "nomad": {"url": "http://oasis.example.org/nomad-oasis/api/v1"},
}
WHERE = {"directory": "mount it", "webdav": "EMD_WEBDAV_PASSWORD", "s3": "AWS_SECRET_ACCESS_KEY",
         "nomad": "EMD_NOMAD_TOKEN"}


def test_the_four_uploaders_are_installed():
    found = emd.uploaders()
    assert {"directory", "webdav", "s3", "nomad"} <= set(found)
    assert isinstance(found["nomad"], NomadUploader)
    assert found["nomad"] is emd.uploaders()["nomad"]  # one instance: it remembers its open upload
    assert all(callable(u.upload) for u in found.values())


@pytest.mark.parametrize("name", ["password", "Password", "webdav_password", "passwd", "token",
                                  "api_token", "secret", "aws_secret_access_key",
                                  "aws_access_key_id", "api_key", "apiKey", "ssh-key",
                                  "credentials", "credential_file", "auth", "pass"])
def test_credential_like_names(name):
    assert looks_secret(name)


@pytest.mark.parametrize("name", ["key", "bucket", "url", "remote_path", "destination", "subdir",
                                  "upload_id", "publish", "author", "passage", "keyword"])
def test_ordinary_names(name):
    assert not looks_secret(name)


@pytest.mark.parametrize("uploader", [DirectoryUploader(), WebDavUploader(), S3Uploader(),
                                      NomadUploader()], ids=lambda u: u.name)
@pytest.mark.parametrize("secret", ["password", "token", "secret_key", "credentials"])
def test_options_carrying_a_credential_are_refused(uploader, secret, data_file):
    with pytest.raises(ValueError) as refused:
        uploader.upload(data_file, {**VALID[uploader.name], secret: "hunter2"})
    message = str(refused.value)
    assert f"option {secret!r} looks like a credential" in message
    assert WHERE[uploader.name] in message and "hunter2" not in message


def test_a_url_carrying_a_password_is_refused(data_file):
    with pytest.raises(ValueError, match="must not carry a user name or password.*EMD_WEBDAV_USER"):
        WebDavUploader().upload(data_file, {"url": "https://alice:hunter2@dav.example.org/"})
    with pytest.raises(ValueError, match="must not have a query"):
        NomadUploader().upload(data_file, {"url": "http://oasis/api/v1?token=hunter2"})


@pytest.mark.parametrize("uploader, options, message", [
    (DirectoryUploader(), {}, "option.s. destination needed"),
    (DirectoryUploader(), {"destination": "relative/dir"}, "must be an absolute path"),
    (DirectoryUploader(), {"destination": "/srv", "subdir": "../etc"}, "must not contain '..'"),
    (DirectoryUploader(), {"destination": "/srv", "mode": 1}, r"unknown option.s. mode \(options: destination, endpoint, subdir\)"),
    (WebDavUploader(), {"url": "ftp://host/x"}, "must be an http:// or https:// URL"),
    (WebDavUploader(), {"url": "http://host/x", "timeout": 0}, "more than 0"),
    (WebDavUploader(), {"url": "http://host/x", "remote_path": "/abs"}, "must be a relative path"),
    (S3Uploader(), {"key": "x"}, "option.s. bucket needed"),
    (S3Uploader(), {"bucket": "b", "key": "/x"}, "must not start with '/'"),
    (NomadUploader(), {"url": "http://host/api/v1", "publish": "yes"}, "must be true or false"),
    (NomadUploader(), {"url": 5}, "must be a string"),
], ids=lambda x: getattr(x, "name", None))
def test_bad_options_are_value_errors(uploader, options, message, data_file):
    with pytest.raises(ValueError, match=message):
        uploader.upload(data_file, options)


def test_config_file_supplies_credentials_and_the_environment_wins(tmp_path, monkeypatch):
    config = tmp_path / "dms.toml"
    config.write_text('[webdav]\nuser = "bob"\npassword = "from-file"\n[nomad]\ntoken = "t1"\n')
    config.chmod(0o600)
    monkeypatch.setenv("EMD_DMS_CONFIG", str(config))
    assert credential("EMD_WEBDAV_PASSWORD", "webdav", "password") == "from-file"
    assert credential("EMD_NOMAD_TOKEN", "nomad", "token") == "t1"
    assert WebDavUploader.credentials() == ("bob", "from-file")
    monkeypatch.setenv("EMD_WEBDAV_PASSWORD", "from-env")
    assert WebDavUploader.credentials() == ("bob", "from-env")


def test_config_file_readable_by_others_is_warned_about(tmp_path, monkeypatch, caplog):
    config = tmp_path / "open.toml"
    config.write_text('[nomad]\ntoken = "t-visible"\n')
    config.chmod(0o644)
    monkeypatch.setenv("EMD_DMS_CONFIG", str(config))
    with caplog.at_level(logging.WARNING, logger="emd.dms"):
        assert credential("EMD_NOMAD_TOKEN", "nomad", "token") == "t-visible"
    assert "other users may read it: chmod 600" in caplog.text
    assert "t-visible" not in caplog.text


def test_config_file_missing_or_invalid(tmp_path, monkeypatch):
    monkeypatch.setenv("EMD_DMS_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(emd.UploadError, match="EMD_DMS_CONFIG names .*absent.toml, which does not exist") as missing:
        credential("EMD_NOMAD_TOKEN", "nomad", "token")
    assert missing.value.retry is False
    broken = tmp_path / "broken.toml"
    broken.write_text('[nomad]\ntoken = "s3cr3t\n')
    broken.chmod(0o600)
    monkeypatch.setenv("EMD_DMS_CONFIG", str(broken))
    with pytest.raises(emd.UploadError, match="is not valid TOML") as invalid:
        credential("EMD_NOMAD_TOKEN", "nomad", "token")
    assert "s3cr3t" not in str(invalid.value)


def test_incomplete_webdav_credentials(monkeypatch):
    monkeypatch.setenv("EMD_WEBDAV_USER", "alice")
    with pytest.raises(emd.UploadError, match="a user and a password are both needed"):
        WebDavUploader.credentials()


@pytest.mark.parametrize("target", sorted(VALID))
def test_check_refuses_bad_options_without_uploading(target, tmp_path):
    """``check`` is what a collector calls when UPLOAD is put: bad options refuse the put."""
    uploader = emd.uploaders()[target]
    uploader.check(tmp_path / "run.h5", VALID[target])  # valid: nothing raised, nothing sent
    with pytest.raises(ValueError, match="colour"):
        uploader.check(tmp_path / "run.h5", {**VALID[target], "colour": "red"})


def test_s3_without_boto3_is_refused_saying_how_to_install_it(prefix, run_device, tmp_path):
    """boto3 is the extra `emd-dms[s3]`: a collector on a host without it refuses an S3 UPLOAD
    with the install line, and nothing is queued."""
    from emd_collector import CollectorClient

    hidden = tmp_path / "no-boto3"
    hidden.mkdir()
    (hidden / "boto3.py").write_text("raise ImportError('No module named boto3')\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "run.npz").write_bytes(b"recorded")
    run_device("collect.Collector", prefix, config={},
               env={"PYTHONPATH": os.pathsep.join([str(hidden), os.environ.get("PYTHONPATH", "")]),
                    "EMD_DATA_ROOT": str(tmp_path / "data")})
    with CollectorClient(prefix) as collector:
        with pytest.raises(emd.DeviceError, match=r"needs boto3: pip install 'emd-dms\[s3\]'"):
            collector.upload("run.npz", "s3", bucket="beamtime")
        assert collector.upload_status()["state"] == "idle"
