"""What every uploader shares: checked options (credentials never among them), credentials from
the environment or the host's config file, progress-reporting reads and checksums.

Why credentials never come from options: options travel through PVs (UPLOAD's ``options``),
which anyone on the network can read; the environment and a file on the collector's host do not.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping
from urllib.parse import urlsplit

import epics_meta_devices as emd

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger("emd.dms")

CONFIG_ENV = "EMD_DMS_CONFIG"
"""Names an optional TOML file with a section per target (``[webdav]``, ``[nomad]``)."""

CHUNK = 1 << 20  # 1 MiB: large enough for throughput, small enough for frequent progress
MAX_TIMEOUT = 3600.0

Progress = Callable[[int, int], None]


def no_progress(done: int, total: int) -> None:
    """The progress callback used when the caller gives none: ignores the report."""


# Option names naming a credential: any name containing one of these words (after dropping
# everything but letters and digits), or having "key", "pass" or "pwd" as a word of its own.
# The bare name "key" (an S3 object key) is the one exception.
_SECRET_PARTS = ("password", "passwd", "passphrase", "token", "secret", "credential",
                 "apikey", "accesskey", "privatekey", "sessionkey", "keyid", "authorization")
_SECRET_WORDS = {"key", "pass", "pwd", "auth"}


def looks_secret(name: str) -> bool:
    """True when option `name` looks like a credential (``password``, ``api_token``,
    ``aws_secret_access_key``, ``ssh_key``, ...); False for the S3 object ``key``."""
    lowered = name.lower()
    if lowered == "key":
        return False
    squashed = re.sub(r"[^a-z0-9]", "", lowered)
    words = set(re.split(r"[^a-z0-9]+", lowered))
    return any(part in squashed for part in _SECRET_PARTS) or bool(words & _SECRET_WORDS)


def check_options(options: Mapping[str, Any], target: str, allowed: frozenset[str],
                  required: set[str], credentials_go: str) -> None:
    """ValueError unless `options` holds only `allowed` names, every `required` one, and
    nothing that looks like a credential (the message says where credentials go instead)."""
    if not isinstance(options, Mapping):
        raise ValueError(f"{target} options must be a mapping (a JSON object), "
                         f"not {type(options).__name__}")
    for name in options:
        if looks_secret(str(name)):
            raise ValueError(
                f"{target}: option {name!r} looks like a credential, and credentials never go "
                f"in options (they travel through PVs): {credentials_go}")
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"{target}: unknown option(s) {', '.join(sorted(map(str, unknown)))} "
                         f"(options: {', '.join(sorted(allowed))})")
    missing = sorted(name for name in required if options.get(name) in (None, ""))
    if missing:
        raise ValueError(f"{target}: option(s) {', '.join(missing)} needed "
                         f"(options: {', '.join(sorted(allowed))})")


def text_option(options: Mapping[str, Any], name: str, target: str, default: str = "") -> str:
    """Option `name` as stripped text (`default` when absent); ValueError for a non-string."""
    value = options.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{target}: option {name} must be a string, not {type(value).__name__}")
    return value.strip()


def bool_option(options: Mapping[str, Any], name: str, target: str, default: bool = False) -> bool:
    """Option `name` as a JSON boolean; ValueError for anything else (``"false"`` is not one)."""
    value = options.get(name, default)
    if not isinstance(value, bool):
        raise ValueError(f"{target}: option {name} must be true or false, not {value!r}")
    return value


def seconds_option(options: Mapping[str, Any], name: str, target: str, default: float) -> float:
    """Option `name` as seconds, more than 0 and at most an hour."""
    value = options.get(name, default)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not 0 < value <= MAX_TIMEOUT:
        raise ValueError(f"{target}: option {name} must be a number of seconds, "
                         f"more than 0 and at most {MAX_TIMEOUT:g}, not {value!r}")
    return float(value)


def relative_path_option(options: Mapping[str, Any], name: str, target: str) -> tuple[str, ...]:
    """Option `name` as the parts of a relative path without ``..`` (``()`` when absent)."""
    text = text_option(options, name, target).replace("\\", "/")
    if text.startswith("/"):
        raise ValueError(f"{target}: option {name} must be a relative path, not {text!r}")
    parts = tuple(part for part in text.split("/") if part not in ("", "."))
    if ".." in parts:
        raise ValueError(f"{target}: option {name} must not contain '..' ({text!r})")
    return parts


def url_option(options: Mapping[str, Any], name: str, target: str, credentials_go: str) -> str:
    """Option `name` as an http(s) URL without a trailing slash. A URL with a user name or
    password in it (``https://user:pw@host/``), or with a query, is refused: credentials go
    elsewhere."""
    url = text_option(options, name, target)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{target}: option {name} must be an http:// or https:// URL, not {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{target}: option {name} must not carry a user name or password: "
                         f"{credentials_go}")
    if parts.query or parts.fragment:
        raise ValueError(f"{target}: option {name} must not have a query or fragment "
                         f"(credentials go elsewhere: {credentials_go})")
    return url.rstrip("/")


_warned_readable: set[Path] = set()


def host_config(section: str) -> dict[str, Any]:
    """The ``[section]`` table of the TOML file named by EMD_DMS_CONFIG, ``{}`` without one.

    A file named but missing or invalid is an UploadError (retrying will not help); a file
    others may read is used, with a warning (once per file), since it holds credentials."""
    name = os.environ.get(CONFIG_ENV, "").strip()
    if not name:
        return {}
    path = Path(name).expanduser()
    try:
        with path.open("rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            data = tomllib.load(file)
    except FileNotFoundError:
        raise emd.UploadError(f"{CONFIG_ENV} names {path}, which does not exist") from None
    except OSError as exc:
        raise emd.UploadError(f"cannot read {path} ({CONFIG_ENV}): {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:  # the message gives line and column, not content
        raise emd.UploadError(f"{path} ({CONFIG_ENV}) is not valid TOML: {exc}") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH) and path not in _warned_readable:
        _warned_readable.add(path)
        log.warning("%s (%s) holds credentials but other users may read it: chmod 600 it",
                    path, CONFIG_ENV)
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise emd.UploadError(f"{section} in {path} ({CONFIG_ENV}) must be a table ([{section}])")
    return table


def credential(env: str, section: str, key: str) -> str | None:
    """A credential: environment variable `env`, else `key` of ``[section]`` in the
    EMD_DMS_CONFIG file, else None. Never logged."""
    value = os.environ.get(env)
    if value:
        return value
    value = host_config(section).get(key)
    if value is not None and not isinstance(value, str):
        raise emd.UploadError(f"{key} in [{section}] of the {CONFIG_ENV} file must be a string")
    return value or None


def endpoints(kind: str) -> dict[str, dict[str, Any]]:
    """The named endpoints of `kind`: the ``[kind.<name>]`` tables of the EMD_DMS_CONFIG file,
    each an endpoint (URL, bucket, directory...) together with the credentials sent to it."""
    return {name: table for name, table in host_config(kind).items() if isinstance(table, dict)}


def _configured(kind: str) -> str:
    names = ", ".join(sorted(endpoints(kind))) or "none"
    return f"configured: {names}; [{kind}.<name>] tables of the file named by {CONFIG_ENV}"


def choose_endpoint(options: Mapping[str, Any], kind: str, url_key: str, url_env: str,
                    credential_keys: tuple[str, ...], credential_envs: tuple[str, ...],
                    credentials_go: str) -> tuple[str, dict[str, Any] | None, str]:
    """Where an upload of `kind` goes, and which configured table's credentials go with it:
    (URL, table, endpoint name).

    - option ``endpoint`` names a ``[kind.<name>]`` table: its `url_key` and its credentials;
    - else option `url_key` (a URL from the put) is taken only while no credentials of this kind
      are configured on the host (environment `credential_envs`, `credential_keys` of
      ``[kind]`` or of any endpoint): a put must never choose where a credential is sent. It
      goes without credentials (table None);
    - else the host's default endpoint: environment `url_env`, else `url_key` of ``[kind]``,
      with the default credentials (environment, then ``[kind]``).
    ValueError (the put is refused) for anything else."""
    name = text_option(options, "endpoint", kind)
    given = options.get(url_key) not in (None, "")
    section = host_config(kind)
    if name:
        named = endpoints(kind)
        if given:
            raise ValueError(f"{kind}: give option endpoint or {url_key}, not both")
        if name not in named:
            raise ValueError(f"{kind}: no endpoint {name!r} on this host ({_configured(kind)})")
        return url_option(named[name], url_key, f"{kind} endpoint {name}", credentials_go), named[name], name
    if given:
        configured = (any(os.environ.get(env) for env in credential_envs)
                      or any(section.get(key) for key in credential_keys)
                      or any(table.get(key) for table in endpoints(kind).values() for key in credential_keys))
        if configured:
            raise ValueError(f"{kind}: option {url_key} refused: this host has {kind} credentials, which go "
                             f"only to endpoints it configures; name one with option endpoint "
                             f"({_configured(kind)})")
        return url_option(options, url_key, kind, credentials_go), None, ""
    default = os.environ.get(url_env, "").strip() or section.get(url_key)
    if default:
        return url_option({url_key: default}, url_key, f"{kind} ({url_env} or [{kind}] {url_key})",
                          credentials_go), section, "default"
    raise ValueError(f"{kind}: option endpoint needed ({_configured(kind)}), or set {url_env} "
                     f"(or {url_key} in [{kind}])")


@contextlib.contextmanager
def open_source(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """The file to upload, opened, and its size; UploadError (no retry) if it cannot be read,
    is a symbolic link or is not a regular file (a FIFO, a device, a directory)."""
    try:
        # no symbolic link followed, and a FIFO neither blocks the open nor is read
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            os.close(handle)
            raise emd.UploadError(f"cannot upload {path}: not a regular file")
        os.set_blocking(handle, True)
        file = os.fdopen(handle, "rb")
    except FileNotFoundError:
        raise emd.UploadError(f"cannot upload {path}: no such file") from None
    except IsADirectoryError:
        raise emd.UploadError(f"cannot upload {path}: it is a directory") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise emd.UploadError(f"cannot upload {path}: it is a symbolic link") from None
        raise emd.UploadError(f"cannot upload {path}: {exc.strerror}",
                              retry=exc.errno not in PERMANENT_ERRNOS) from None
    with file:
        yield file, os.fstat(file.fileno()).st_size


PERMANENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR,
                              errno.EISDIR, errno.ENAMETOOLONG, errno.EINVAL, errno.ENOENT})
"""File errors that retrying will not fix; others (ENOSPC, EIO, ESTALE, ETIMEDOUT, ...) may
pass on a share that is full or briefly away."""


class ProgressReader:
    """A binary file whose reads report ``progress(done, total)``. Its ``len()`` is the file
    size, so an HTTP client (requests) sends a Content-Length and streams the file in chunks
    instead of loading it whole."""

    def __init__(self, file: BinaryIO, total: int, progress: Progress) -> None:
        self.file, self.total, self.progress, self.done = file, total, progress, 0

    def __len__(self) -> int:
        return self.total

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(CHUNK if size is None or size < 0 else size)
        if data:
            self.done += len(data)
            self.progress(self.done, self.total)
        return data


def file_digest(path: Path, algorithm: str = "sha256") -> tuple[int, str]:
    """Size and hex digest of the file at `path`, read in chunks."""
    digest, size = hashlib.new(algorithm), 0
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
