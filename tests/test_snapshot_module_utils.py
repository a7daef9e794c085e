"""The rollback point: what is saved, what is skipped, what a restore writes back."""

from __future__ import annotations

import os

import airlift_snapshot as snap


def host_tree(root):
    units = root / "units"
    licenses = root / "licenses" / "sentiment"
    state = root / "state"
    for folder in (units, licenses, state):
        folder.mkdir(parents=True)
    (units / "airlift-sentiment.service").write_text(
        "[Service]\nEnvironment=AIRLIFT_IMAGE_ID=abc123\n")
    (units / "other.service").write_text("not ours\n")
    (licenses / "sentiment.license").write_text("license v1")
    (licenses / "sentiment.license.previous-20260101T000000").write_text("license v0")
    os.chmod(licenses / "sentiment.license", 0o600)
    (state / "images.json").write_text('{"images": {}}')
    return str(units), str(root / "licenses"), str(state)


def test_saves_units_licenses_and_state_but_not_kept_aside_licenses(tmp_path):
    dirs = host_tree(tmp_path / "host")
    files = snap.live_files(*dirs)
    assert sorted(files) == ["licenses/sentiment/sentiment.license", "state/images.json",
                             "units/airlift-sentiment.service"]
    assert snap.image_ids_in_units(files) == ["abc123"]
    assert snap.unit_names(list(files)) == ["sentiment"]


def test_restore_writes_back_only_what_differs_with_its_mode(tmp_path):
    dirs = host_tree(tmp_path / "host")
    snapshot_dir = str(tmp_path / "rollback")
    snap.save(snapshot_dir, snap.live_files(*dirs))
    saved = snap.read_manifest(snapshot_dir)
    assert snap.differing(saved, snap.live_files(*dirs)) == []
    license_path = os.path.join(dirs[1], "sentiment", "sentiment.license")
    with open(license_path, "w") as handle:
        handle.write("license v2")
    os.chmod(license_path, 0o644)
    keys = snap.differing(saved, snap.live_files(*dirs))
    assert keys == ["licenses/sentiment/sentiment.license"]
    for key in keys:
        snap.restore_file(snapshot_dir, key, saved[key])
    with open(license_path) as handle:
        assert handle.read() == "license v1"
    assert os.stat(license_path).st_mode & 0o777 == 0o600
    assert not os.path.exists(license_path + ".partial")
    assert snap.differing(saved, snap.live_files(*dirs)) == []


def test_a_new_snapshot_replaces_the_old_one_whole(tmp_path):
    dirs = host_tree(tmp_path / "host")
    snapshot_dir = str(tmp_path / "rollback")
    snap.save(snapshot_dir, snap.live_files(*dirs))
    os.unlink(os.path.join(dirs[0], "airlift-sentiment.service"))
    # A leftover of a save that was interrupted is never read as the snapshot.
    os.makedirs(snapshot_dir + ".partial/files")
    snap.save(snapshot_dir, snap.live_files(*dirs))
    assert "units/airlift-sentiment.service" not in snap.read_manifest(snapshot_dir)
    assert not os.path.exists(snapshot_dir + ".partial")
    assert not os.path.exists(snapshot_dir + ".old")
    assert snap.read_manifest(str(tmp_path / "missing")) is None
