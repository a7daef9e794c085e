"""stage.yml refuses what cannot work before it saves an image or runs a container."""

from __future__ import annotations

from conftest import flat, run_playbook


def test_stage_without_accepted_license_terms_stops_first(tmp_path):
    bundle = tmp_path / "bundle"
    proc = run_playbook("playbooks/stage.yml", "-e", "airlift_eula=''",
                        "-e", f"airlift_stage_bundle_dir={bundle}")
    assert proc.returncode != 0
    assert "set airlift_eula to accept in the inventory" in flat(proc.stdout)
    # Nothing was saved or written: the bundle folder was never made.
    assert not bundle.exists()


def test_stage_with_a_folder_or_no_signing_key_stops_before_any_work(tmp_path):
    """A folder used to pass the check and fail only at the seal, after every image was
    saved and every license downloaded; the empty default must be named too."""
    for key, said in ((tmp_path, f"signing key {tmp_path} is not a file: make one with"),
                      ("", "signing key not found: make one with")):
        bundle = tmp_path / "bundle"
        proc = run_playbook("playbooks/stage.yml", "-e", f"airlift_stage_signing_key='{key}'",
                            "-e", f"airlift_stage_bundle_dir={bundle}")
        assert proc.returncode != 0
        assert said in flat(proc.stdout)
        assert "set airlift_stage_signing_key to DIR/bundle-signing.key" in flat(proc.stdout)
        assert not bundle.exists()
