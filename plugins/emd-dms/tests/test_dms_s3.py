"""The S3 uploader against moto's server (single-part and multipart uploads, refused and missing
credentials, a missing bucket), a server answering 503 and one that never answers."""

from __future__ import annotations

import os
import time
import uuid

import boto3
import pytest

import epics_meta_devices as emd
from emd_dms import S3Uploader as _S3Uploader
from emd_dms._common import no_progress


class S3Uploader(_S3Uploader):
    """The S3 uploader with the endpoint named as a host names it: with AWS credentials
    configured, a put's endpoint_url is refused, so the tests' endpoint_url moves to
    EMD_S3_ENDPOINT_URL for the call."""

    def upload(self, path, options, progress=no_progress):
        options = dict(options)
        with pytest.MonkeyPatch.context() as patch:
            if "endpoint_url" in options:
                patch.setenv("EMD_S3_ENDPOINT_URL", options.pop("endpoint_url"))
            return super().upload(path, options, progress)

SECRET = "not-so-secret-for-moto"


@pytest.fixture
def aws_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)


@pytest.fixture
def bucket(moto_server, aws_credentials):
    """A new bucket on moto; (endpoint, name, client)."""
    name = f"beam-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=moto_server)
    client.create_bucket(Bucket=name)
    yield moto_server, name, client
    client.close()


def test_single_part_upload_verified_by_size_and_md5(bucket, data_file, progress, caplog):
    endpoint, name, client = bucket
    with caplog.at_level("INFO", logger="emd.dms"):
        where = S3Uploader().upload(data_file, {"bucket": name, "key": "runs/", "endpoint_url": endpoint},
                                    progress)
    assert where == f"{endpoint}/{name}/runs/run1.h5"
    assert client.get_object(Bucket=name, Key="runs/run1.h5")["Body"].read() == data_file.read_bytes()
    progress.check(data_file.stat().st_size)
    assert "size and MD5 verified" in caplog.text and SECRET not in caplog.text


def test_multipart_upload_verified_by_size(bucket, tmp_path, progress, caplog):
    endpoint, name, client = bucket
    big = tmp_path / "big.h5"
    big.write_bytes(os.urandom(9 << 20))  # over boto3's 8 MiB multipart threshold
    with caplog.at_level("INFO", logger="emd.dms"):
        S3Uploader().upload(big, {"bucket": name, "key": "exact/name.h5", "endpoint_url": endpoint}, progress)
    head = client.head_object(Bucket=name, Key="exact/name.h5")
    assert head["ContentLength"] == 9 << 20 and "-" in head["ETag"]
    progress.check(9 << 20)
    assert "size verified" in caplog.text


def test_missing_bucket(moto_server, aws_credentials, data_file):
    with pytest.raises(emd.UploadError, match="bucket no-such-bucket-here does not exist") as failed:
        S3Uploader().upload(data_file, {"bucket": "no-such-bucket-here", "endpoint_url": moto_server})
    assert failed.value.retry is False


def test_refused_credentials_are_permanent(bucket, data_file, monkeypatch):
    import moto.settings

    endpoint, name, _ = bucket
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto checks keys now
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
    with pytest.raises(emd.UploadError, match=r"InvalidAccessKeyId \(HTTP 403\).*check the credentials .*AWS_ACCESS_KEY_ID") as failed:
        S3Uploader().upload(data_file, {"bucket": name, "endpoint_url": endpoint})
    assert failed.value.retry is False
    assert SECRET not in str(failed.value)


def test_no_credentials(moto_server, data_file):
    with pytest.raises(emd.UploadError, match="no usable AWS credentials .*AWS_ACCESS_KEY_ID") as failed:
        S3Uploader().upload(data_file, {"bucket": "b", "endpoint_url": moto_server})
    assert failed.value.retry is False


def test_vanished_file(moto_server, aws_credentials, tmp_path):
    with pytest.raises(emd.UploadError, match="no such file") as failed:
        S3Uploader().upload(tmp_path / "gone.h5", {"bucket": "b", "endpoint_url": moto_server})
    assert failed.value.retry is False


def test_server_error_is_worth_retrying(unavailable_server, aws_credentials, data_file):
    endpoint = f"http://127.0.0.1:{unavailable_server.port}"
    with pytest.raises(emd.UploadError, match=r"uploading run1.h5 to s3://b/run1.h5: .*\(HTTP 503\)") as failed:
        S3Uploader().upload(data_file, {"bucket": "b", "endpoint_url": endpoint})
    assert failed.value.retry is True


def test_timeout_is_worth_retrying(silent_server, aws_credentials, data_file):
    started = time.monotonic()
    with pytest.raises(emd.UploadError, match="no answer within 0.5 s") as failed:
        S3Uploader().upload(data_file, {"bucket": "b", "timeout": 0.5,
                                        "endpoint_url": f"http://127.0.0.1:{silent_server.port}"})
    assert failed.value.retry is True
    assert time.monotonic() - started < 5


def test_verification():
    md5 = "0123456789abcdef0123456789abcdef"
    assert S3Uploader.verify({"ContentLength": 5, "ETag": f'"{md5}"'}, 5, md5, "s3://b/k") == "size and MD5"
    assert S3Uploader.verify({"ContentLength": 5, "ETag": '"abc-2"'}, 5, md5, "s3://b/k") == "size"
    assert S3Uploader.verify({"ContentLength": 5, "ETag": '"other"', "ServerSideEncryption": "aws:kms"},
                             5, md5, "s3://b/k") == "size"
    with pytest.raises(emd.UploadError, match="its ETag is ffff, the file's MD5 0123") as mismatch:
        S3Uploader.verify({"ContentLength": 5, "ETag": '"ffff"'}, 5, md5, "s3://b/k")
    assert mismatch.value.retry is False
    with pytest.raises(emd.UploadError, match="S3 holds 4 bytes, the file has 5"):
        S3Uploader.verify({"ContentLength": 4, "ETag": f'"{md5}"'}, 5, md5, "s3://b/k")
