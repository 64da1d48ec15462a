"""DirectoryUploader: copy a file to a directory, typically a mounted share (NFS, SMB, ...).

The copy is written under a temporary name (``.<name>.<random>.part``) next to its final place,
read back and compared (size and SHA-256) with what was read from the source, and only then
renamed: a reader of the share never sees half a file or a damaged one under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path
from typing import Any, Mapping

import epics_meta_devices as emd

from ._common import (CHUNK, CONFIG_ENV, PERMANENT_ERRNOS, Progress, check_options, endpoints, file_digest,
                      host_config, log, no_progress, open_source, relative_path_option, text_option)

CREDENTIALS_GO = "a share needs none: mount it on the host with the rights needed"


def copy_file(source: Path, target: Path, progress: Progress) -> tuple[int, str]:
    """Copy `source` to the new file `target` in chunks, flushed to disk; return the size and
    SHA-256 of what was read from `source`."""
    digest, done = hashlib.sha256(), 0
    with open_source(source) as (reader, total), open(target, "xb") as writer:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            writer.write(chunk)
            done += len(chunk)
            progress(done, total)
        writer.flush()
        os.fsync(writer.fileno())
    if done == 0:
        progress(0, 0)
    return done, digest.hexdigest()


class DirectoryUploader:
    """Copies to a directory. Options: ``endpoint`` (a ``[directory.<name>]`` table of the
    host's config file naming its ``destination``) or ``destination`` (absolute path of an
    existing directory, e.g. where a share is mounted: when the host configures ``roots`` in
    ``[directory]`` or any endpoint, it must lie inside one of them) and ``subdir`` (relative,
    created below it if missing). Returns the path of the copy; an existing file of that name
    is replaced."""

    name = "directory"
    OPTIONS = frozenset({"destination", "endpoint", "subdir"})

    def settings(self, options: Mapping[str, Any]) -> tuple[Path, tuple[str, ...]]:
        """Checked options: the destination and the parts of the subdirectory."""
        check_options(options, self.name, self.OPTIONS, set(), CREDENTIALS_GO)
        name = text_option(options, "endpoint", self.name)
        named = endpoints(self.name)
        configured = f"configured: {', '.join(sorted(named)) or 'none'}; [directory.<name>] tables of {CONFIG_ENV}"
        if name:
            if options.get("destination"):
                raise ValueError(f"{self.name}: give option endpoint or destination, not both")
            if name not in named:
                raise ValueError(f"{self.name}: no endpoint {name!r} on this host ({configured})")
            text = named[name].get("destination")
            if not isinstance(text, str) or not Path(text).expanduser().is_absolute():
                raise ValueError(f"{self.name}: endpoint {name} needs an absolute destination in {CONFIG_ENV}")
            return Path(text).expanduser(), relative_path_option(options, "subdir", self.name)
        destination = Path(text_option(options, "destination", self.name)).expanduser()
        if not str(destination) or str(destination) == ".":
            raise ValueError(f"{self.name}: option(s) destination needed (or endpoint: {configured})")
        if not destination.is_absolute():
            raise ValueError(f"{self.name}: destination must be an absolute path, "
                             f"not {str(destination)!r}")
        self._confine(destination, named)
        return destination, relative_path_option(options, "subdir", self.name)

    def _confine(self, destination: Path, named: dict[str, dict[str, Any]]) -> None:
        """ValueError unless `destination` (links resolved) lies inside a root the host
        configured (``roots`` of [directory], or an endpoint's destination); a host that
        configures none leaves destinations open."""
        roots = host_config(self.name).get("roots", [])
        if not isinstance(roots, list) or not all(isinstance(root, str) for root in roots):
            raise ValueError(f"{self.name}: roots in [directory] of {CONFIG_ENV} must be a list of paths")
        roots = roots + [table["destination"] for table in named.values() if isinstance(table.get("destination"), str)]
        if not roots:
            return
        real = Path(os.path.realpath(destination))
        if not any(real.is_relative_to(os.path.realpath(Path(root).expanduser())) for root in roots):
            raise ValueError(f"{self.name}: destination {str(destination)!r} is outside the directories this "
                             f"host allows ({', '.join(roots)}; roots and endpoints of {CONFIG_ENV})")

    def check(self, path: Path, options: Mapping[str, Any]) -> None:
        """ValueError for bad options, without uploading (a collector asks when UPLOAD is put)."""
        self.settings(options)

    def upload(self, path: Path, options: Mapping[str, Any],
               progress: Progress = no_progress) -> str:
        destination, subdir = self.settings(options)
        # Not created: a missing destination usually means a share that is not mounted, and
        # creating it would put the data on the local disk instead.
        if not destination.is_dir():
            raise emd.UploadError(f"destination {destination} is not an existing directory "
                                  "(is the share mounted?)")
        folder = destination.joinpath(*subdir)
        final = folder / Path(path).name
        temporary = folder / f".{final.name}.{secrets.token_hex(4)}.part"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            size, sha256 = copy_file(Path(path), temporary, progress)
            copied_size, copied_sha256 = file_digest(temporary)
            if (copied_size, copied_sha256) != (size, sha256):
                raise emd.UploadError(
                    f"verification of {final} failed: the copy has {copied_size} bytes with "
                    f"SHA-256 {copied_sha256}, the source {size} bytes with SHA-256 {sha256}; "
                    "something between here and the share alters data")
            os.replace(temporary, final)
        except OSError as exc:
            raise emd.UploadError(f"cannot write {final}: {exc.strerror or exc}",
                                  retry=exc.errno not in PERMANENT_ERRNOS) from exc
        finally:
            with contextlib.suppress(OSError):  # gone after the rename; never hide the error
                temporary.unlink(missing_ok=True)
        log.info("copied %s to %s (%d bytes, SHA-256 %s verified)", path, final, size, sha256)
        return str(final)
