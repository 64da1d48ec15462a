"""NomadUploader: add files to an upload of a NOMAD (Oasis) server through its API v1.

Endpoints used, under the API base (e.g. ``http://host/nomad-oasis/api/v1``), each with
``Authorization: Bearer <token>`` and ``Accept: application/json``:

- ``POST /uploads?file_name=<name>``, the file as the body: creates an upload holding it
  (without a body: an empty upload). Answers ``{"upload_id": ..., "data": {...}}``.
- ``PUT /uploads/{upload_id}/raw/{directory}?file_name=<name>``, the file as the body: adds it
  to the upload in `directory` (empty: the top), replacing a file of that name.
- ``GET /uploads/{upload_id}``: the upload's state (``data.process_running``, ``data.published``).
- ``GET /uploads/{upload_id}/rawdir/{path}``: a file's metadata (``file_metadata.size``).
- ``POST /uploads/{upload_id}/action/publish``: publishes the upload.

Why the waiting and the reuse: NOMAD processes an upload after each change and refuses another
change (HTTP 400) until that is done, and it limits how many unpublished uploads a user may
have. So the uploader waits for processing before adding a file and before checking it, and
keeps using one open upload it created for the next files of this process (per API URL and
token) instead of creating an upload per file.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote

import requests

import epics_meta_devices as emd

from . import _http
from ._common import (CONFIG_ENV, Progress, ProgressReader, bool_option, check_options,
                      choose_endpoint, credential, log, no_progress, open_source,
                      relative_path_option, seconds_option, text_option)

TOKEN_ENV, URL_ENV = "EMD_NOMAD_TOKEN", "EMD_NOMAD_URL"
CREDENTIALS_GO = (f"set {TOKEN_ENV} (with {URL_ENV}) where the uploader runs, or url and token in the "
                  f"[nomad] section, or a [nomad.<name>] endpoint, of the file named by {CONFIG_ENV}")
ARCHIVE_SUFFIXES = (".zip", ".tgz", ".gz", ".tar", ".tar.bz2", ".eln")
"""Files NOMAD extracts when they arrive (so they are not found under their own name)."""
NO_UPLOAD = "no such upload (or the url option is not the NOMAD API v1 base)"


def _quoted(relative: str) -> str:
    return "/".join(quote(part, safe="") for part in relative.split("/"))


class _Api:
    """The few NOMAD API v1 calls the uploader makes, with failures as UploadErrors."""

    def __init__(self, session: requests.Session, base: str, timeout: float,
                 processing_timeout: float) -> None:
        self.session, self.base = session, base
        self.timeout, self.processing_timeout = timeout, processing_timeout

    def call(self, method: str, path: str, what: str, *, missing: str = "",
             **kwargs: Any) -> dict[str, Any] | None:
        """The JSON answer of `method` `path`; None for a 404 when `missing` is "ok", an
        UploadError saying `missing` for any other 404 when it is given."""
        url = f"{self.base}{path}"
        answer = _http.send(self.session, method, url, what=what, timeout=self.timeout, **kwargs)
        if answer.status_code == 404 and missing == "ok":
            return None
        if answer.status_code == 404 and missing:
            raise emd.UploadError(f"{what}: {missing} (HTTP 404)")
        if answer.status_code != 200:
            failure = _http.failure(answer, what, CREDENTIALS_GO)
            if answer.status_code == 400 and "process" in _http.detail(answer).lower():
                failure.retry = True  # busy processing: a later attempt will get through
            raise failure
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise emd.UploadError(f"{what}: the answer from {url} is not NOMAD's JSON: "
                                  "is the url option the NOMAD API v1 base (.../api/v1)?")
        return body

    def wait_until_idle(self, upload_id: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        """The upload's data once NOMAD is not processing it (None if it is gone and
        `missing_ok`); UploadError (retry) if processing takes longer than processing_timeout."""
        deadline, pause = time.monotonic() + self.processing_timeout, 0.2
        while True:
            body = self.call("GET", f"/uploads/{quote(upload_id, safe='')}",
                             f"reading NOMAD upload {upload_id}",
                             missing="ok" if missing_ok else NO_UPLOAD)
            if body is None:
                return None
            data = body.get("data") or {}
            if not data.get("process_running"):
                return data
            if time.monotonic() + pause > deadline:
                raise emd.UploadError(f"NOMAD upload {upload_id} is still processing after "
                                      f"{self.processing_timeout:g} s", retry=True)
            time.sleep(pause)
            pause = min(pause * 1.5, 5.0)

    def create(self, name: str | None, body: ProgressReader | None) -> str:
        """A new upload, holding `body` as `name` (or empty); its id."""
        answer = self.call("POST", "/uploads", f"creating a NOMAD upload at {self.base}",
                           missing="not found: is the url option the NOMAD API v1 base "
                                   "(.../api/v1)?",
                           params={"file_name": name} if name else None,
                           data=body if body is not None else b"",
                           headers={"Content-Type": "application/octet-stream"})
        upload_id = (answer or {}).get("upload_id")
        if not isinstance(upload_id, str) or not upload_id:
            raise emd.UploadError(f"NOMAD at {self.base} created an upload but sent no upload_id")
        return upload_id

    def put(self, upload_id: str, directory: str, name: str, body: ProgressReader) -> None:
        """Add `body` as `directory`/`name` to the upload."""
        self.call("PUT", f"/uploads/{quote(upload_id, safe='')}/raw/{_quoted(directory)}",
                  f"adding {name} to NOMAD upload {upload_id}", missing=NO_UPLOAD,
                  params={"file_name": name}, data=body,
                  headers={"Content-Type": "application/octet-stream"})

    def stored_size(self, upload_id: str, relative: str) -> int | None:
        """The size NOMAD reports for `relative` in the upload, None if it has no such file."""
        body = self.call("GET", f"/uploads/{quote(upload_id, safe='')}/rawdir/{_quoted(relative)}",
                         f"checking {relative} in NOMAD upload {upload_id}", missing="ok")
        size = ((body or {}).get("file_metadata") or {}).get("size")
        return size if isinstance(size, int) else None

    def publish(self, upload_id: str) -> None:
        """Publish the upload and wait until NOMAD has done so."""
        self.call("POST", f"/uploads/{quote(upload_id, safe='')}/action/publish",
                  f"publishing NOMAD upload {upload_id}", missing=NO_UPLOAD)
        data = self.wait_until_idle(upload_id) or {}
        if not data.get("published"):
            reason = data.get("last_status_message") or "no reason given"
            raise emd.UploadError(f"NOMAD did not publish upload {upload_id}: {reason}")


class NomadUploader:
    """Adds files to a NOMAD upload. Options: ``endpoint`` (a ``[nomad.<name>]`` endpoint of
    the host's config file: its url, the API base such as ``http://host/nomad-oasis/api/v1``,
    and its token; default the host's ``[nomad]`` url or EMD_NOMAD_URL, with EMD_NOMAD_TOKEN or
    the ``[nomad]`` token); ``url`` only on a host without NOMAD tokens; ``upload_id`` (an existing, unpublished upload to add
    to; default: the open upload this process created before, or a new one); ``remote_path``
    (directory in the upload, default the top); ``publish`` (publish the upload afterwards,
    default false); ``timeout`` (seconds per request, default 60); ``processing_timeout``
    (seconds to wait for NOMAD's processing, default 300). Returns the file's raw URL."""

    name = "nomad"
    OPTIONS = frozenset({"url", "endpoint", "upload_id", "remote_path", "publish", "timeout",
                         "processing_timeout"})

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], str] = {}  # (API URL, token digest) -> open upload
        self._lock = threading.Lock()  # one NOMAD upload at a time, so reuse cannot race

    def settings(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Checked options."""
        check_options(options, self.name, self.OPTIONS, set(), CREDENTIALS_GO)
        url, table, endpoint = choose_endpoint(options, self.name, "url", URL_ENV, ("token",), (TOKEN_ENV,),
                                               CREDENTIALS_GO)
        token = (None if table is None  # a URL from the put: never sent a token
                 else credential(TOKEN_ENV, "nomad", "token") if endpoint == "default" else table.get("token"))
        return {"url": url, "token": token if isinstance(token, str) else None,
                "upload_id": text_option(options, "upload_id", self.name),
                "directory": "/".join(relative_path_option(options, "remote_path", self.name)),
                "publish": bool_option(options, "publish", self.name),
                "timeout": seconds_option(options, "timeout", self.name, 60.0),
                "processing_timeout": seconds_option(options, "processing_timeout", self.name,
                                                     300.0)}

    def check(self, path: Path, options: Mapping[str, Any]) -> None:
        """ValueError for bad options, without uploading (a collector asks when UPLOAD is put)."""
        self.settings(options)

    def upload(self, path: Path, options: Mapping[str, Any],
               progress: Progress = no_progress) -> str:
        s = self.settings(options)
        token = s["token"]
        if not token:
            raise emd.UploadError(f"no NOMAD token: {CREDENTIALS_GO}")
        path, directory = Path(path), s["directory"]
        relative = f"{directory}/{path.name}" if directory else path.name
        key = (s["url"], hashlib.sha256(token.encode()).hexdigest())
        with self._lock, open_source(path) as (file, size), requests.Session() as session:
            session.headers.update({"Authorization": f"Bearer {token}",
                                    "Accept": "application/json"})
            api = _Api(session, s["url"], s["timeout"], s["processing_timeout"])
            body = ProgressReader(file, size, progress)
            upload_id = s["upload_id"] or self._reusable(api, key)
            if upload_id:
                data = api.wait_until_idle(upload_id) or {}
                if data.get("published"):
                    raise emd.UploadError(f"NOMAD upload {upload_id} is published: files cannot "
                                          "be added to it (give another upload_id, or none)")
                api.put(upload_id, directory, path.name, body)
            elif directory:  # POST puts a file at the top: create empty, then PUT
                upload_id = api.create(None, None)
                self._open[key] = upload_id
                api.put(upload_id, directory, path.name, body)
            else:
                upload_id = api.create(path.name, body)
            if not s["upload_id"]:
                self._open[key] = upload_id
            if size == 0:
                progress(0, 0)
            api.wait_until_idle(upload_id)
            checked = self._verify(api, upload_id, relative, size)
            if s["publish"]:
                if self._open.get(key) == upload_id:
                    del self._open[key]  # a published upload takes no more files
                api.publish(upload_id)
        location = f"{s['url']}/uploads/{upload_id}/raw/{_quoted(relative)}"
        log.info("uploaded %s to %s (%d bytes, %s verified%s)", path, location, size, checked,
                 ", published" if s["publish"] else "")
        return location

    def _reusable(self, api: _Api, key: tuple[str, str]) -> str | None:
        """The open upload this process created for `key`, if NOMAD still has it unpublished."""
        upload_id = self._open.get(key)
        if upload_id is None:
            return None
        data = api.wait_until_idle(upload_id, missing_ok=True)
        if data is None or data.get("published"):
            del self._open[key]
            return None
        return upload_id

    @staticmethod
    def _verify(api: _Api, upload_id: str, relative: str, size: int) -> str:
        """Check the stored size; say what was verified."""
        if relative.lower().endswith(ARCHIVE_SUFFIXES):
            log.info("not checking %s in NOMAD upload %s: NOMAD extracts archives", relative,
                     upload_id)
            return "nothing (NOMAD extracts archives)"
        stored = api.stored_size(upload_id, relative)
        if stored != size:
            holds = "has no such file" if stored is None else f"holds {stored} bytes"
            raise emd.UploadError(f"verification of {relative} in NOMAD upload {upload_id} "
                                  f"failed: NOMAD {holds}, the file has {size}")
        return "size"
