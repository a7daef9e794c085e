"""The converged fast path's comparison (plugins/module_utils/airlift_drift.py), off-host."""

from __future__ import annotations

import os

from airlift_drift import areas, compare, observe, summary

IMAGE = "sha256:" + "a" * 64


def wanted(tmp_path) -> dict:
    unit = tmp_path / "airlift-read.service"
    lic = tmp_path / "read.lic"
    out = tmp_path / "output"
    return {
        "images": [{"ref": "localhost/sim/read:1", "id": IMAGE}],
        "licenses": [{"service": "read", "file": str(lic), "sha256": "1" * 64}],
        "files": [{"path": str(unit), "sha256": "2" * 64, "mode": "0644", "area": "deploy"}],
        "json_files": [{"path": str(tmp_path / "services.json"), "content": {"services": []},
                        "area": "deploy"}],
        "dirs": [{"path": str(out), "uid": os.getuid(), "mode": "0750", "area": "deploy"}],
        "units": [{"name": "airlift-read.service", "area": "deploy"}],
        "absent": [{"path": str(tmp_path / "airlift-frontdoor.service"), "area": "frontdoor"}],
        "keep_units": ["airlift-frontdoor.service"],
    }


def converged_host(tmp_path, want: dict) -> dict:
    """What a host converged to `want` shows (hashes read as wanted)."""
    hashes = {item["path"]: item["sha256"] for item in want["files"]}
    hashes.update({item["file"]: item["sha256"] for item in want["licenses"]})
    (tmp_path / "output").mkdir(mode=0o750)
    os.chmod(tmp_path / "output", 0o750)
    for path in hashes:
        open(path, "w").close()
        os.chmod(path, 0o644)
    (tmp_path / "services.json").write_text('{"services": []}\n')
    state = {"images": {"images": {"localhost/sim/read:1": {"id": IMAGE}}},
             "licenses": {"licenses": {"read": {"file": want["licenses"][0]["file"],
                                                "sha256": "1" * 64}}}}
    return observe(want, ["a" * 64, "sha256:" + "b" * 64],
                   {"airlift-read.service": {"ActiveState": "active",
                                             "UnitFileState": "enabled"}},
                   ["airlift-read.service", "airlift-frontdoor.service"], state,
                   reader=lambda path: hashes.get(path))


def test_converged_host_has_no_difference(tmp_path):
    want = wanted(tmp_path)
    seen = converged_host(tmp_path, want)
    assert compare(want, seen) == []
    assert areas([]) == {"distribute": False, "deploy": False, "frontdoor": False}


def test_each_of_the_four_drifts_is_named_with_the_role_that_repairs_it(tmp_path):
    want = wanted(tmp_path)
    seen = converged_host(tmp_path, want)
    seen["engine_ids"] = ["b" * 64]                                     # image removed
    seen["files"][want["licenses"][0]["file"]]["sha256"] = "9" * 64    # license replaced
    seen["files"][want["files"][0]["path"]]["sha256"] = "8" * 64       # unit file edited
    seen["units"]["airlift-read.service"]["ActiveState"] = "inactive"  # unit stopped
    found = compare(want, seen)
    kinds = {(item["area"], item["kind"], item["subject"]) for item in found}
    assert kinds == {
        ("distribute", "image_missing", "localhost/sim/read:1"),
        ("distribute", "license_differs", want["licenses"][0]["file"]),
        ("deploy", "file_differs", want["files"][0]["path"]),
        ("deploy", "unit_inactive", "airlift-read.service"),
    }
    assert areas(found) == {"distribute": True, "deploy": True, "frontdoor": False}
    assert "deploy: unit inactive airlift-read.service" in summary(found)


def test_records_modes_folders_stale_units_and_leftovers_differ(tmp_path):
    want = wanted(tmp_path)
    seen = converged_host(tmp_path, want)
    seen["state"]["images"] = {}
    seen["files"][want["files"][0]["path"]]["mode"] = "0666"
    seen["json_files"][want["json_files"][0]["path"]] = None
    seen["dirs"][want["dirs"][0]["path"]] = None
    seen["installed_units"].append("airlift-old.service")
    seen["absent"][want["absent"][0]["path"]] = True
    seen["units"]["airlift-read.service"]["UnitFileState"] = "disabled"
    kinds = {(item["area"], item["kind"]) for item in compare(want, seen)}
    assert kinds == {("distribute", "image_unrecorded"), ("deploy", "mode_differs"),
                     ("deploy", "record_differs"), ("deploy", "dir_missing"),
                     ("deploy", "unit_stale"), ("frontdoor", "present"),
                     ("deploy", "unit_disabled")}


def test_observe_hashes_real_files_and_reads_folders(tmp_path):
    want = wanted(tmp_path)
    (tmp_path / "output").mkdir()
    os.chmod(tmp_path / "output", 0o700)
    lic = tmp_path / "read.lic"
    lic.write_bytes(b"x")
    seen = observe(want, [], {}, [], {"images": {}, "licenses": {}})
    assert seen["files"][str(lic)]["sha256"] == (
        "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881")
    assert seen["files"][want["files"][0]["path"]]["sha256"] is None
    assert seen["dirs"][str(tmp_path / "output")]["mode"] == "0700"
    found = {(item["kind"], item["subject"]) for item in compare(want, seen)}
    assert ("dir_mode_differs", str(tmp_path / "output")) in found
    assert ("file_missing", want["files"][0]["path"]) in found


def test_a_killed_transfers_file_is_distributes_to_discard(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / ".abc.tar.123-x.partial").write_bytes(b"half")
    (staging / "abc.tar").write_bytes(b"kept archive")
    want = {"leftovers": [{"dir": str(staging), "suffix": ".partial", "area": "distribute"}]}
    seen = observe(want, [], {}, [], {"images": {}, "licenses": {}})
    assert compare(want, seen) == [{
        "area": "distribute", "kind": "leftover", "want": None, "have": "present",
        "subject": str(staging / ".abc.tar.123-x.partial")}]
    (staging / ".abc.tar.123-x.partial").unlink()
    assert compare(want, observe(want, [], {}, [], {"images": {}, "licenses": {}})) == []
