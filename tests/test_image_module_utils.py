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
