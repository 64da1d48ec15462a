"""Paths below the host's data root, checked without following symbolic links.

Every directory on the way is opened with ``openat(O_DIRECTORY | O_NOFOLLOW)`` relative to the
one before, starting at the root, so no symbolic link inside the root leads a collector's
EXPORT, UPLOAD or spool file outside it. The root itself is the host's choice and may be reached
through links. A file to read is opened here (`open_regular`); exporters write by the path
returned once it is checked, so a directory swapped for a link in between by someone on the host
itself (not a client: PVs cannot make links) is not caught.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Iterator

import epics_meta_devices as emd

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def relative_parts(text: str, what: str, place: str) -> tuple[str, ...]:
    """`text` as the parts of a relative path without ``..``; DeviceError saying that `what`
    must be relative to `place` (e.g. "the data directory /data/run1") otherwise."""
    path = PurePosixPath(text.strip())
    if not text.strip():
        raise emd.DeviceError(f"a path is needed (relative to {place})")
    if path.is_absolute() or ".." in path.parts:
        raise emd.DeviceError(f"{what} must be relative to {place}, without '..'")
    return tuple(part for part in path.parts if part != ".")


@contextlib.contextmanager
def _directory(root: Path, parts: tuple[str, ...], what: str, create: bool) -> Iterator[int]:
    """A descriptor of root/parts, each part opened without following links (made when
    `create` and missing)."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        if not create:
            raise
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            try:
                child = os.open(part, _DIRECTORY, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
                child = os.open(part, _DIRECTORY, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise emd.DeviceError(f"{what}: {part!r} is a symbolic link or not a directory; "
                                          f"files are reached only through directories of {root}") from None
                raise
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def confined(root: Path, parts: tuple[str, ...], what: str, *, create: bool = False,
             regular: bool = False) -> Path:
    """root/parts, checked: no directory on the way is a symbolic link (missing ones are made
    when `create`, else the path is returned as it is: nothing below them can be a link), the last part is no symbolic link, and with `regular` it exists and is a
    regular file (a FIFO, device or directory is refused). DeviceError says what is wrong."""
    where = root.joinpath(*parts)
    try:
        with _directory(root, parts[:-1], what, create) as fd:
            try:
                info = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if regular:
                    raise
                return where
    except FileNotFoundError:  # a directory on the way is missing: so is any link below it
        if regular:
            raise emd.DeviceError(f"{what}: no such file in the data directory") from None
        return where
    except OSError as exc:
        raise emd.DeviceError(f"{what}: cannot reach {where}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise emd.DeviceError(f"{what}: {parts[-1]!r} is a symbolic link; files below {root} "
                              "are read and written only where they are")
    if regular and not stat.S_ISREG(info.st_mode):
        raise emd.DeviceError(f"{what}: not a regular file (only regular files are read)")
    return where


def open_regular(root: Path, parts: tuple[str, ...], what: str) -> int:
    """A read-only descriptor of the regular file root/parts, opened without following links
    (and without blocking on a FIFO); DeviceError otherwise."""
    try:
        with _directory(root, parts[:-1], what, False) as fd:
            handle = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
    except FileNotFoundError:
        raise emd.DeviceError(f"{what}: no such file in the data directory") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise emd.DeviceError(f"{what}: {parts[-1]!r} is a symbolic link; files below {root} "
                                  "are read only where they are") from None
        raise emd.DeviceError(f"{what}: cannot read {root.joinpath(*parts)}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise emd.DeviceError(f"{what}: not a regular file (only regular files are read)")
    return handle


__all__ = ["confined", "open_regular", "relative_parts"]
