"""Real servers on 127.0.0.1 (free ports) for the emd-dms tests: WsgiDAV (WebDAV), moto (S3), a
NOMAD stand-in, a server that answers 503 and one that never answers; and a host environment
without credentials, proxies or cloud metadata lookups, so nothing leaves 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from epics_meta_devices.testing import free_port

CREDENTIAL_VARIABLES = [
    "EMD_WEBDAV_USER", "EMD_WEBDAV_PASSWORD", "EMD_NOMAD_TOKEN", "EMD_DMS_CONFIG",
    "EMD_WEBDAV_URL", "EMD_NOMAD_URL", "EMD_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
]


@pytest.fixture(autouse=True)
def host_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials but those a test sets; no proxies, ~/.netrc, ~/.aws or instance metadata
    (boto3 would otherwise ask 169.254.169.254 for credentials)."""
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    nowhere = tmp_path / "nowhere"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("NETRC", str(nowhere))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(nowhere))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    """A 200 kB file of random bytes to upload."""
    path = tmp_path / "source" / "run1.h5"
    path.parent.mkdir()
    path.write_bytes(uuid.uuid4().bytes * 12_500)
    return path


class Progress:
    """A progress callback that remembers every report."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.reports.append((done, total))

    def check(self, size: int) -> None:
        """Reports grew and ended at (size, size)."""
        assert self.reports, "no progress reported"
        dones = [done for done, _ in self.reports]
        assert dones == sorted(dones) and self.reports[-1] == (size, size)


@pytest.fixture
def progress() -> Progress:
    return Progress()


# --- plain HTTP servers ----------------------------------------------------------------------


class HttpServer:
    """A ThreadingHTTPServer on 127.0.0.1 in a thread; ``stop()`` ends it."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def answer(self, status: int, payload: Any = None, kind: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class UnavailableHandler(QuietHandler):
    """Answers every request, whatever its method, with 503."""

    def __getattr__(self, name: str) -> Callable[[], None]:
        if name.startswith("do_"):
            return self.unavailable
        raise AttributeError(name)

    def unavailable(self) -> None:
        self.body()
        self.answer(503, b"down for maintenance", "text/plain")


@pytest.fixture
def unavailable_server() -> Iterator[HttpServer]:
    """An HTTP server answering 503 to everything."""
    server = HttpServer(UnavailableHandler)
    yield server
    server.stop()


class RecordingHandler(QuietHandler):
    """A server of an attacker's own: remembers each request (method, path, Authorization
    header) in the server's ``seen`` list and asks for Basic credentials (401)."""

    def __getattr__(self, name: str) -> Callable[[], None]:
        if name.startswith("do_"):
            return self.record
        raise AttributeError(name)

    def record(self) -> None:
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization", "")))  # type: ignore[attr-defined]
        self.body()
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="credentials please"')
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def attacker() -> Iterator[HttpServer]:
    """An HTTP server recording every request in ``attacker.seen``; ``attacker.url`` is its base."""
    server = HttpServer(RecordingHandler)
    server.seen = server.server.seen = []  # type: ignore[attr-defined]
    server.url = f"http://127.0.0.1:{server.port}"  # type: ignore[attr-defined]
    yield server
    server.stop()


class SilentServer:
    """Accepts TCP connections (the kernel does, into the backlog) and never answers."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port = self.socket.getsockname()[1]

    def stop(self) -> None:
        self.socket.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.stop()


# --- WebDAV: WsgiDAV ---------------------------------------------------------------------------


class WebDavServer:
    """WsgiDAV (on cheroot) serving `root` at ``/dav``; basic authentication when `users`
    ({name: password}) is given, anonymous access otherwise."""

    def __init__(self, root: Path, users: dict[str, str] | None = None) -> None:
        from cheroot import wsgi
        from wsgidav.wsgidav_app import WsgiDAVApp

        self.root, self.port = root, free_port()
        mapping: Any = {name: {"password": pw} for name, pw in users.items()} if users else True
        app = WsgiDAVApp({
            "host": "127.0.0.1", "port": self.port,
            "provider_mapping": {"/dav": str(root)},
            "simple_dc": {"user_mapping": {"*": mapping}},
            "http_authenticator": {"accept_basic": True, "accept_digest": False,
                                   "default_to_digest": False},
            "verbose": 1, "logging": {"enable": False},
        })
        self.server = wsgi.Server(("127.0.0.1", self.port), app)
        self.server.prepare()
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}/dav"

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(5)


@pytest.fixture
def webdav(tmp_path: Path) -> Iterator[WebDavServer]:
    """WsgiDAV with anonymous access."""
    (tmp_path / "dav").mkdir()
    server = WebDavServer(tmp_path / "dav")
    yield server
    server.stop()


@pytest.fixture
def webdav_auth(tmp_path: Path) -> Iterator[WebDavServer]:
    """WsgiDAV with basic authentication: user alice, password 'wonder-land-7'."""
    (tmp_path / "davauth").mkdir()
    server = WebDavServer(tmp_path / "davauth", {"alice": "wonder-land-7"})
    yield server
    server.stop()


# --- S3: moto's server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """moto's S3 (and every other service) on 127.0.0.1; yields the endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


# --- NOMAD: a stand-in -------------------------------------------------------------------------


class NomadStandIn:
    """A STAND-IN for a NOMAD Oasis, not NOMAD: a small http.server implementing exactly the
    API v1 endpoints emd_dms uses, as NOMAD documents them (its OpenAPI docs, from
    nomad/app/v1/routers/uploads.py), under ``/nomad-oasis/api/v1``:

    - ``POST /uploads[?file_name=]`` (file as the body, or none), ``PUT /uploads/{id}/raw/{dir}
      ?file_name=`` (file as the body), ``GET /uploads/{id}``, ``GET /uploads/{id}/rawdir/{path}``
      and ``POST /uploads/{id}/action/publish``;
    - every request needs ``Authorization: Bearer <token>`` (else 401); POST and PUT answer
      JSON only with ``Accept: application/json`` (else NOMAD's plain-text thank-you);
    - after each change the upload is processing for `processing` seconds, and only then holds
      the new file (NOMAD adds files while processing); changes meanwhile are refused with 400;
    - at most `limit` unpublished uploads (400 beyond), as NOMAD limits them per user.

    ``corrupt = True`` makes it store files one byte short; ``requests`` logs (method, path)."""

    PREFIX = "/nomad-oasis/api/v1"

    def __init__(self, token: str = "nomad-token-42", processing: float = 0.2,
                 limit: int = 3) -> None:
        self.token, self.processing, self.limit = token, processing, limit
        self.corrupt = False
        self.uploads: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        stand_in = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                stand_in.handle(self)

            do_POST = do_PUT = do_GET

        self.http = HttpServer(Handler)
        self.url = f"http://127.0.0.1:{self.http.port}{self.PREFIX}"

    def stop(self) -> None:
        self.http.stop()

    def add_upload(self, files: dict[str, bytes] | None = None, published: bool = False) -> str:
        """An upload made elsewhere (e.g. in the GUI); its id."""
        upload_id = uuid.uuid4().hex[:22]
        self.uploads[upload_id] = {"files": dict(files or {}), "pending": {}, "published": published,
                                   "busy_until": 0.0, "publishing": False}
        return upload_id

    # How NOMAD behaves, much simplified:

    def _settle(self, upload: dict[str, Any]) -> bool:
        """Finish processing that is due; True while still processing."""
        if time.monotonic() < upload["busy_until"]:
            return True
        upload["files"].update(upload["pending"])
        upload["pending"] = {}
        if upload["publishing"]:
            upload["published"], upload["publishing"] = True, False
        return False

    def _data(self, upload_id: str) -> dict[str, Any]:
        upload = self.uploads[upload_id]
        running = self._settle(upload)
        return {"upload_id": upload_id, "data": {
            "upload_id": upload_id, "process_running": running,
            "process_status": "RUNNING" if running else "SUCCESS",
            "last_status_message": "Processing" if running else "Process completed successfully",
            "published": upload["published"], "errors": [], "warnings": []}}

    def _store(self, upload: dict[str, Any], path: str, data: bytes) -> None:
        upload["pending"][path] = data[:-1] if self.corrupt else data
        upload["busy_until"] = time.monotonic() + self.processing

    def handle(self, request: QuietHandler) -> None:
        parts = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = unquote(parts.path)
        body = request.body()
        with self.lock:
            self.requests.append((request.command, path))
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return request.answer(401, {"detail": "Unauthorized. Authorization is required, "
                                                      "but no or bad authentication credentials provided."})
            if not path.startswith(self.PREFIX + "/uploads"):
                return request.answer(404, {"detail": "Not Found"})
            route = path[len(self.PREFIX + "/uploads"):].split("/", 3)[1:]  # [id, action, rest]
            status, payload = self.route(request.command, route, query, body)
            if request.command in ("POST", "PUT") and status == 200 \
                    and request.headers.get("Accept") != "application/json":
                return request.answer(200, b"Thanks for uploading your data to nomad.", "text/plain")
            request.answer(status, payload)

    def route(self, method: str, route: list[str], query: dict[str, str],
              body: bytes) -> tuple[int, Any]:
        if method == "POST" and not route:
            unpublished = sum(not u["published"] for u in self.uploads.values())
            if unpublished >= self.limit:
                return 400, {"detail": "Limit of unpublished uploads exceeded for user."}
            if body and "file_name" not in query:
                return 400, {"detail": "Using method 2 and file does not look like a zip or tar "
                                       "file - must specify `file_name`."}
            upload_id = self.add_upload()
            if body:
                self._store(self.uploads[upload_id], query["file_name"], body)
            return 200, self._data(upload_id)
        if not route or route[0] not in self.uploads:
            return 404, {"detail": "The specified upload_id was not found."}
        upload_id, upload = route[0], self.uploads[route[0]]
        action = route[1] if len(route) > 1 else ""
        rest = route[2] if len(route) > 2 else ""
        if method == "GET" and not action:
            return 200, self._data(upload_id)
        if method == "GET" and action == "rawdir":
            self._settle(upload)
            if rest not in upload["files"]:
                return 404, {"detail": "Not found. Invalid path?"}
            return 200, {"path": rest, "access": "unpublished", "file_metadata": {
                "name": rest.rsplit("/", 1)[-1], "size": len(upload["files"][rest])}}
        if method == "PUT" and action == "raw":
            if upload["published"]:
                return 401, {"detail": "Upload is already published, operation not possible."}
            if self._settle(upload):
                return 400, {"detail": "The upload is currently blocked by another process."}
            if not body or "file_name" not in query:
                return 400, {"detail": "No upload file provided."}
            self._store(upload, f"{rest.strip('/')}/{query['file_name']}".lstrip("/"), body)
            return 200, self._data(upload_id)
        if method == "POST" and action == "action" and rest == "publish":
            if upload["published"]:
                return 401, {"detail": "The upload is already published."}
            if self._settle(upload):
                return 400, {"detail": "The upload is not finished processing yet."}
            if not upload["files"]:
                return 400, {"detail": "Cannot publish an upload without any resulting entries."}
            upload["publishing"], upload["busy_until"] = True, time.monotonic() + self.processing
            return 200, self._data(upload_id)
        return 405, {"detail": "Method Not Allowed"}


@pytest.fixture
def nomad() -> Iterator[NomadStandIn]:
    server = NomadStandIn()
    yield server
    server.stop()
