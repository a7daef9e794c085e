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
