"""WebDavUploader: HTTP PUT to a WebDAV server (Nextcloud, ownCloud, Apache mod_dav, WsgiDAV...).

Steps: PROPFIND the base URL (so a wrong URL or refused login fails before any data moves),
MKCOL each missing collection of ``remote_path``, PUT the file streamed in chunks, then read
the stored size back (PROPFIND ``getcontentlength``, else HEAD ``Content-Length``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote

import requests

import epics_meta_devices as emd

from . import _http
from ._common import (CONFIG_ENV, Progress, ProgressReader, check_options, choose_endpoint, credential,
                      log, no_progress, open_source, relative_path_option, seconds_option)

USER_ENV, PASSWORD_ENV, URL_ENV = "EMD_WEBDAV_USER", "EMD_WEBDAV_PASSWORD", "EMD_WEBDAV_URL"
CREDENTIALS_GO = (f"set {USER_ENV} and {PASSWORD_ENV} (with {URL_ENV}) where the uploader runs, or url, "
                  f"user and password in the [webdav] section, or a [webdav.<name>] endpoint, of the "
                  f"file named by {CONFIG_ENV}")
PROPFIND_LENGTH = (b'<?xml version="1.0" encoding="utf-8"?>'
                   b'<propfind xmlns="DAV:"><prop><getcontentlength/></prop></propfind>')


class WebDavUploader:
    """PUT to WebDAV. Options: ``endpoint`` (a ``[webdav.<name>]`` endpoint of the host's
    config file: its url, user and password; default the host's ``[webdav]`` url or
    EMD_WEBDAV_URL), or ``url`` (the base collection, http or https: only on a host without
    WebDAV credentials, and sent none), ``remote_path`` (collections below it, created if
    missing; default none) and ``timeout`` (seconds per request, default 60). Basic
    authentication when a user is configured for the endpoint. Returns the URL of the file; an
    existing file of that name is replaced."""

    name = "webdav"
    OPTIONS = frozenset({"url", "endpoint", "remote_path", "timeout"})

    def settings(self, options: Mapping[str, Any]) -> tuple[str, tuple[str, ...], float]:
        """Checked options: base URL, collections below it, timeout."""
        return self._settings(options)[:3]

    def _settings(self, options: Mapping[str, Any]) -> tuple[str, tuple[str, ...], float, tuple[str, str] | None]:
        """Checked options and the credentials that go with the endpoint."""
        check_options(options, self.name, self.OPTIONS, set(), CREDENTIALS_GO)
        url, table, endpoint = choose_endpoint(options, self.name, "url", URL_ENV, ("user", "password"),
                                               (USER_ENV, PASSWORD_ENV), CREDENTIALS_GO)
        if table is None:
            auth = None  # a URL from the put: never sent a credential
        elif endpoint == "default":
            auth = self.credentials()
        else:
            auth = self.credentials(table.get("user"), table.get("password"))
        return (url, relative_path_option(options, "remote_path", self.name),
                seconds_option(options, "timeout", self.name, 60.0), auth)

    @staticmethod
    def credentials(user: Any = None, password: Any = None) -> tuple[str, str] | None:
        """(user, password): given (an endpoint's), else from the environment or the config
        file's [webdav] section; None for anonymous access."""
        if user is None and password is None:
            user = credential(USER_ENV, "webdav", "user")
            password = credential(PASSWORD_ENV, "webdav", "password")
        if user is None and password is None:
            return None
        if user is None or password is None:
            raise emd.UploadError(f"WebDAV credentials incomplete: a user and a password are "
                                  f"both needed ({CREDENTIALS_GO})")
        return user, password

    def check(self, path: Path, options: Mapping[str, Any]) -> None:
        """ValueError for bad options, without uploading (a collector asks when UPLOAD is put)."""
        self.settings(options)

    def upload(self, path: Path, options: Mapping[str, Any],
               progress: Progress = no_progress) -> str:
        base, remote, timeout, auth = self._settings(options)
        with open_source(Path(path)) as (file, size), requests.Session() as session:
            session.auth = auth

            def call(method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
                return _http.send(session, method, url, what=what, timeout=timeout, **kwargs)

            found = call("PROPFIND", base + "/", f"WebDAV base {base}",
                         headers={"Depth": "0"}, data=PROPFIND_LENGTH)
            if found.status_code == 404:
                raise emd.UploadError(f"WebDAV base {base} does not exist (HTTP 404): "
                                      "check the url option")
            if found.status_code != 207:
                raise _http.failure(found, f"WebDAV base {base}", CREDENTIALS_GO)

            collection = base
            for part in remote:
                collection += "/" + quote(part, safe="")
                made = call("MKCOL", collection + "/", f"creating collection {collection}")
                if made.status_code not in (201, 405):  # 405: it exists already
                    raise _http.failure(made, f"creating collection {collection}", CREDENTIALS_GO)

            target = f"{collection}/{quote(Path(path).name, safe='')}"
            put = call("PUT", target, f"PUT {target}", data=ProgressReader(file, size, progress),
                       headers={"Content-Type": "application/octet-stream"})
            if put.status_code not in (200, 201, 204):
                raise _http.failure(put, f"PUT {target}", CREDENTIALS_GO)
            if size == 0:
                progress(0, 0)

            stored = self.stored_size(call, target)
        if stored != size:
            holds = "reports no size" if stored is None else f"holds {stored} bytes"
            raise emd.UploadError(f"verification of {target} failed: the server {holds}, "
                                  f"the file has {size}")
        log.info("uploaded %s to %s (%d bytes, size verified)", path, target, size)
        return target

    @staticmethod
    def stored_size(call: Any, target: str) -> int | None:
        """The size the server reports for `target`: PROPFIND getcontentlength, else HEAD."""
        what = f"checking {target}"
        answer = call("PROPFIND", target, what, headers={"Depth": "0"}, data=PROPFIND_LENGTH)
        if answer.status_code == 207:
            try:
                found = ElementTree.fromstring(answer.content).find(".//{DAV:}getcontentlength")
                text = (found.text or "").strip() if found is not None else ""
                if text.isdigit():
                    return int(text)
            except ElementTree.ParseError:
                pass  # fall back to HEAD
        elif answer.status_code >= 500 or answer.status_code in (401, 403):
            raise _http.failure(answer, what, CREDENTIALS_GO)
        head = call("HEAD", target, what)
        if head.status_code != 200:
            raise _http.failure(head, what, CREDENTIALS_GO)
        length = head.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else None
