"""The directory uploader on real directories: atomic copy, verification, and its failures."""

from __future__ import annotations

import hashlib
import os

import pytest

import epics_meta_devices as emd
from emd_dms import DirectoryUploader
from emd_dms import _directory


def leftovers(folder):
    return [p.name for p in folder.rglob(".*.part")]


def test_copies_into_a_new_subdirectory(data_file, tmp_path, progress):
    share = tmp_path / "share"
    share.mkdir()
    where = DirectoryUploader().upload(data_file, {"destination": str(share), "subdir": "2024/run 1"},
                                       progress)
    assert where == str(share / "2024" / "run 1" / "run1.h5")
    assert hashlib.sha256(open(where, "rb").read()).digest() == hashlib.sha256(data_file.read_bytes()).digest()
    progress.check(data_file.stat().st_size)
    assert leftovers(share) == []


def test_replaces_an_existing_copy_and_takes_empty_files(data_file, tmp_path, progress):
    share = tmp_path / "share"
    share.mkdir()
    (share / "run1.h5").write_bytes(b"old")
    DirectoryUploader().upload(data_file, {"destination": str(share)})
    assert (share / "run1.h5").read_bytes() == data_file.read_bytes()
    empty = tmp_path / "empty.dat"
    empty.touch()
    assert DirectoryUploader().upload(empty, {"destination": str(share)}, progress) == str(share / "empty.dat")
    assert progress.reports[-1] == (0, 0)


def test_destination_that_is_not_there(data_file, tmp_path):
    with pytest.raises(emd.UploadError, match="is not an existing directory .is the share mounted") as failed:
        DirectoryUploader().upload(data_file, {"destination": str(tmp_path / "unmounted")})
    assert failed.value.retry is False
    assert not (tmp_path / "unmounted").exists()  # not created: that would fill the local disk


def test_vanished_file(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    with pytest.raises(emd.UploadError, match="cannot upload .*gone.h5: no such file") as failed:
        DirectoryUploader().upload(tmp_path / "gone.h5", {"destination": str(share)})
    assert failed.value.retry is False
    assert list(share.iterdir()) == []


def test_checksum_mismatch_leaves_nothing_behind(data_file, tmp_path, monkeypatch):
    """A destination that alters data: the copy is damaged after it is written."""
    share = tmp_path / "share"
    share.mkdir()
    real_copy = _directory.copy_file

    def damaging_copy(source, target, progress):
        result = real_copy(source, target, progress)
        with open(target, "r+b") as f:
            f.seek(1000)
            byte = f.read(1)
            f.seek(1000)
            f.write(bytes([byte[0] ^ 0xFF]))
        return result

    monkeypatch.setattr(_directory, "copy_file", damaging_copy)
    with pytest.raises(emd.UploadError, match="verification of .*run1.h5 failed: .*SHA-256") as failed:
        DirectoryUploader().upload(data_file, {"destination": str(share)})
    assert failed.value.retry is False
    assert list(share.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_destination(data_file, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    share.chmod(0o555)
    try:
        with pytest.raises(emd.UploadError, match="cannot write .*Permission denied") as failed:
            DirectoryUploader().upload(data_file, {"destination": str(share), "subdir": "x"})
        assert failed.value.retry is False
    finally:
        share.chmod(0o755)


def test_a_full_share_is_worth_retrying(data_file, tmp_path, monkeypatch):
    share = tmp_path / "share"
    share.mkdir()

    def full(source, target, progress):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_directory, "copy_file", full)
    with pytest.raises(emd.UploadError, match="No space left on device") as failed:
        DirectoryUploader().upload(data_file, {"destination": str(share)})
    assert failed.value.retry is True
