"""HTTP for the WebDAV and NOMAD uploaders (requests): one request at a time, with its failure
turned into an UploadError whose ``retry`` says whether trying again later may help."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import requests

import epics_meta_devices as emd

RETRY_STATUSES = frozenset({408, 425, 429})
"""Client errors worth retrying (request timeout, too early, too many requests); every 5xx is."""


def origin(url: str) -> str:
    """``scheme://host:port`` of `url`, for messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _reason(exc: Exception) -> str:
    """The operating system's reason inside a requests error (e.g. 'Connection refused')."""
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    return found.group(1).strip() if found else type(exc).__name__


def send(session: requests.Session, method: str, url: str, *, what: str, timeout: float,
         **kwargs: Any) -> requests.Response:
    """`method` `url`; a timeout or failed connection is an UploadError with retry=True.

    Redirects are not followed: a streamed body cannot be sent twice, and a moved endpoint is
    better configured than chased."""
    try:
        return session.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
    except requests.Timeout as exc:
        raise emd.UploadError(f"{what}: no answer from {origin(url)} within {timeout:g} s",
                              retry=True) from exc
    except requests.ConnectionError as exc:
        raise emd.UploadError(f"{what}: connection to {origin(url)} failed ({_reason(exc)})",
                              retry=True) from exc
    except requests.RequestException as exc:
        raise emd.UploadError(f"{what}: {type(exc).__name__}: {exc}") from exc


def detail(response: requests.Response) -> str:
    """The server's explanation: a JSON ``detail`` (NOMAD, FastAPI) or the start of the body."""
    kind = response.headers.get("Content-Type", "")
    if "html" in kind or "xml" in kind:  # error pages and multistatus: noise in a message
        return ""
    try:
        body = response.json()
        text = body.get("detail", "") if isinstance(body, dict) else ""
        text = text if isinstance(text, str) else str(text)
    except ValueError:
        text = response.text[:300]
    return " ".join(text.split())[:300]


def failure(response: requests.Response, what: str, credentials_go: str) -> emd.UploadError:
    """The UploadError for an unexpected answer: retry for 5xx, 408, 425 and 429; a refused
    login (401, 403) says where the credentials come from; anything else is permanent."""
    status = response.status_code
    message = f"{what}: HTTP {status} {response.reason or ''}".rstrip()
    explained = detail(response)
    if explained:
        message += f" ({explained})"
    if status in (401, 403):
        message += f"; check the credentials ({credentials_go})"
    elif 300 <= status < 400:
        message += f"; redirected to {response.headers.get('Location', '?')}: configure that URL"
    return emd.UploadError(message, retry=status >= 500 or status in RETRY_STATUSES)
