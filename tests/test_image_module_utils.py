"""The host-side decisions of airlift_image: what is complete, what is discarded."""

from __future__ import annotations

import hashlib

import airlift_images as ai


def test_verify_archive_checks_size_before_hash(tmp_path):
    data = b"x" * 5000
    path = tmp_path / "a.tar"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    assert ai.verify_archive(str(path), 5000, digest) is None
    assert "incomplete transfer" in ai.verify_archive(str(path), 6000, digest)
    assert ai.verify_archive(str(path), 5000, "0" * 64) == "sha256 does not match the manifest"


def test_only_partial_files_are_stale(tmp_path):
    (tmp_path / ".abc.tar.partial").write_bytes(b"half")
    (tmp_path / "abc.tar").write_bytes(b"kept archive")
    assert ai.stale_partials(str(tmp_path)) == [str(tmp_path / ".abc.tar.partial")]
    assert ai.stale_partials(str(tmp_path / "missing")) == []


def test_state_is_replaced_atomically(tmp_path):
    path = str(tmp_path / "state" / "images.json")
    ai.write_state(path, {"images": {"r": {"id": "sha256:1"}}})
    assert ai.read_state(path) == {"images": {"r": {"id": "sha256:1"}}}
    assert not list((tmp_path / "state").glob("*.partial"))
    (tmp_path / "state" / "images.json").write_text("{broken")
    assert ai.read_state(path) == {}


def test_short_id_strips_the_algorithm():
    assert ai.short_id("sha256:abc") == "abc"
    assert ai.short_id("abc") == "abc"


def test_take_over_copies_while_hashing_and_removes_the_upload(tmp_path):
    data = b"y" * 3000
    upload, copy = tmp_path / "upload.tar", tmp_path / "staging.partial"
    upload.write_bytes(data)
    assert ai.take_over(str(upload), str(copy), 3000, hashlib.sha256(data).hexdigest()) is None
    assert copy.read_bytes() == data and (copy.stat().st_mode & 0o777) == 0o600
    assert not upload.exists()


def test_take_over_refuses_a_short_or_altered_upload_and_keeps_nothing(tmp_path):
    upload, copy = tmp_path / "upload.tar", tmp_path / "staging.partial"
    upload.write_bytes(b"z" * 100)
    assert "incomplete transfer" in ai.take_over(str(upload), str(copy), 3000, "0" * 64)
    assert not upload.exists() and not copy.exists()
