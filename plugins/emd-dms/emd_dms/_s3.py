"""S3Uploader: upload to an S3 bucket (AWS, MinIO, Ceph RGW, ...) with boto3.

Credentials come from boto3's own chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE
and ~/.aws, an instance role). After the upload, head_object must report the file's size and,
for a single-part upload that is not encrypted with KMS or a customer key (whose ETags are
not MD5s), an ETag equal to the file's MD5.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote

import epics_meta_devices as emd

from ._common import (CHUNK, Progress, check_options, choose_endpoint, log, no_progress, open_source,
                      seconds_option, text_option)
from ._http import RETRY_STATUSES

CREDENTIALS_GO = ("boto3 finds them where the uploader runs: AWS_ACCESS_KEY_ID and "
                  "AWS_SECRET_ACCESS_KEY, AWS_PROFILE with ~/.aws/credentials, or an instance role")
URL_ENV = "EMD_S3_ENDPOINT_URL"
CREDENTIAL_ENVS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
CREDENTIAL_KEYS = ("access_key_id", "secret_access_key")
MULTIPART_THRESHOLD = 8 << 20  # boto3's default: larger files go in parts, with a non-MD5 ETag
RETRY_CODES = frozenset({"SlowDown", "RequestTimeout", "Throttling", "ThrottlingException",
                         "InternalError", "ServiceUnavailable"})


def _require_boto3() -> None:
    """boto3 is an extra of emd-dms (most sites upload elsewhere): say how to get it."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise ValueError("s3: the s3 uploader needs boto3: pip install 'emd-dms[s3]'") from None


class S3Uploader:
    """Uploads to S3. Options: ``bucket``; ``key`` (default the file's name; a key ending in
    ``/`` is a prefix the file's name is added to); ``endpoint_url`` (for S3 services other than
    AWS); ``region``; ``timeout`` (seconds per request, default 60). Returns ``s3://bucket/key``
    (``<endpoint_url>/bucket/key`` with an endpoint_url); an existing object is replaced.

    boto3 is told not to retry: the caller (a collector) retries with its own backoff when the
    UploadError says ``retry``."""

    name = "s3"
    OPTIONS = frozenset({"bucket", "key", "endpoint", "endpoint_url", "region", "timeout"})

    def settings(self, options: Mapping[str, Any], filename: str) -> dict[str, Any]:
        """Checked options: bucket, key, endpoint_url (or None), region (or None), timeout."""
        check_options(options, self.name, self.OPTIONS, {"bucket"}, CREDENTIALS_GO)
        key = text_option(options, "key", self.name)
        if key.startswith("/"):
            raise ValueError(f"{self.name}: key must not start with '/' ({key!r})")
        endpoint, table, name = None, None, ""
        if options.get("endpoint") or options.get("endpoint_url") or os.environ.get(URL_ENV):
            # a put's endpoint_url only while no AWS credentials are configured: with them, a
            # named endpoint ([s3.<name>]: endpoint_url, its keys) or the host's default
            endpoint, table, name = choose_endpoint(options, self.name, "endpoint_url", URL_ENV,
                                                    CREDENTIAL_KEYS, CREDENTIAL_ENVS, CREDENTIALS_GO)
        keys = {key: table[key] for key in CREDENTIAL_KEYS if name not in ("", "default") and table and table.get(key)}
        return {"keys": {f"aws_{key}": value for key, value in keys.items()},
                "bucket": text_option(options, "bucket", self.name),
                "key": key + filename if not key or key.endswith("/") else key,
                "endpoint_url": endpoint,
                "region": text_option(options, "region", self.name) or None,
                "timeout": seconds_option(options, "timeout", self.name, 60.0)}

    def check(self, path: Path, options: Mapping[str, Any]) -> None:
        """ValueError for bad options, or boto3 missing, without uploading (a collector asks
        when UPLOAD is put)."""
        self.settings(options, Path(path).name)
        _require_boto3()

    def upload(self, path: Path, options: Mapping[str, Any],
               progress: Progress = no_progress) -> str:
        path = Path(path)
        s = self.settings(options, path.name)
        bucket, key = s["bucket"], s["key"]
        where = f"uploading {path.name} to s3://{bucket}/{key}"
        _require_boto3()
        import boto3  # here, not at import: every emd process loads plugins, few upload to S3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        with open_source(path) as (file, size):
            md5 = None
            if size < MULTIPART_THRESHOLD:  # one PutObject: the ETag will be the MD5
                digest = hashlib.md5(usedforsecurity=False)
                while chunk := file.read(CHUNK):
                    digest.update(chunk)
                md5 = digest.hexdigest()
                file.seek(0)
            client = boto3.session.Session(**s["keys"]).client(
                "s3", endpoint_url=s["endpoint_url"], region_name=s["region"],
                config=Config(connect_timeout=s["timeout"], read_timeout=s["timeout"],
                              retries={"mode": "standard", "total_max_attempts": 1}))
            done, lock = 0, threading.Lock()

            def report(amount: int) -> None:  # called from boto3's transfer threads
                nonlocal done
                with lock:
                    done = min(max(done + amount, 0), size)
                    progress(done, size)

            try:
                client.upload_fileobj(file, bucket, key, Callback=report,
                                      Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD))
                head = client.head_object(Bucket=bucket, Key=key)
            except Exception as exc:
                failure = s3_failure(exc, where, bucket, s["timeout"])
                if failure is exc:
                    raise
                raise failure from exc
            finally:
                client.close()
        if size == 0:
            progress(0, 0)
        checked = self.verify(head, size, md5, f"s3://{bucket}/{key}")
        location = (f"{s['endpoint_url']}/{bucket}/{quote(key)}" if s["endpoint_url"]
                    else f"s3://{bucket}/{key}")
        log.info("uploaded %s to %s (%d bytes, %s verified)", path, location, size, checked)
        return location

    @staticmethod
    def verify(head: Mapping[str, Any], size: int, md5: str | None, where: str) -> str:
        """Compare head_object's answer with the file; say what could be checked."""
        if head.get("ContentLength") != size:
            raise emd.UploadError(f"verification of {where} failed: S3 holds "
                                  f"{head.get('ContentLength')} bytes, the file has {size}")
        etag = str(head.get("ETag", "")).strip('"')
        encrypted = head.get("SSECustomerAlgorithm") or str(
            head.get("ServerSideEncryption", "")).startswith("aws:kms")
        if md5 is None or "-" in etag or encrypted:
            return "size"
        if etag != md5:
            raise emd.UploadError(f"verification of {where} failed: its ETag is {etag}, "
                                  f"the file's MD5 {md5}")
        return "size and MD5"


def s3_failure(exc: Exception, where: str, bucket: str, timeout: float) -> Exception:
    """The UploadError for a boto3 failure (unwrapping boto3's S3UploadFailedError); other
    exceptions are returned as they are."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import (BotoCoreError, ClientError, ConnectTimeoutError,
                                     HTTPClientError, NoCredentialsError,
                                     PartialCredentialsError, ReadTimeoutError)
    from botocore.exceptions import ConnectionError as BotoConnectionError

    cause: BaseException = exc
    if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError):
        cause = exc.__context__
    if isinstance(cause, (NoCredentialsError, PartialCredentialsError)):
        return emd.UploadError(f"{where}: no usable AWS credentials ({CREDENTIALS_GO})")
    if isinstance(cause, (ReadTimeoutError, ConnectTimeoutError)):
        return emd.UploadError(f"{where}: no answer within {timeout:g} s ({cause})", retry=True)
    if isinstance(cause, (BotoConnectionError, HTTPClientError)):
        return emd.UploadError(f"{where}: connection failed ({cause})", retry=True)
    if isinstance(cause, ClientError):
        error = cause.response.get("Error", {})
        code, text = str(error.get("Code", "")), str(error.get("Message", ""))
        status = int(cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code == "NoSuchBucket":
            return emd.UploadError(f"{where}: bucket {bucket} does not exist")
        message = f"{where}: {code or 'error'} (HTTP {status})" + (f": {text}" if text else "")
        if status in (401, 403):
            message += f"; check the credentials ({CREDENTIALS_GO})"
        retry = status >= 500 or status in RETRY_STATUSES or code in RETRY_CODES
        return emd.UploadError(message, retry=retry)
    if isinstance(cause, (BotoCoreError, S3UploadFailedError)):
        return emd.UploadError(f"{where}: {cause}")
    return exc
