"""The host-side decisions of airlift_image: what is complete, discarded, loaded or tagged."""

from __future__ import annotations

import hashlib
import importlib.util
import sys

import airlift_images as ai
import pytest
from conftest import ROOT


def test_verify_archive_checks_size_before_hash(tmp_path):
    data = b"x" * 5000
    path = tmp_path / "a.tar"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    assert ai.verify_archive(str(path), 5000, digest) is None
    assert "incomplete transfer" in ai.verify_archive(str(path), 6000, digest)
    assert ai.verify_archive(str(path), 5000, "0" * 64) == "sha256 does not match the manifest"


def test_a_pinned_reference_is_tagged_without_its_digest():
    digest = "sha256:" + "ab" * 32
    assert ai.engine_name(f"reg.example:5000/a/b:1.0@{digest}") == "reg.example:5000/a/b:1.0"
    assert ai.engine_name(f"reg.example:5000/a/b@{digest}") == (
        "reg.example:5000/a/b:sha256-abababababab")
    assert ai.engine_name("reg.example:5000/a/b:1.0") == "reg.example:5000/a/b:1.0"


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


# -- state=loaded: the decision, then the module acting on it ------------------------

IMAGE = {"id": "sha256:" + "a" * 64, "ref": "localhost/airlift-sim/read:1.0",
         "sha256": hashlib.sha256(b"archive").hexdigest(), "size": len(b"archive")}


@pytest.mark.parametrize(("present", "tagged", "recorded", "action"), [
    (True, True, True, ai.NOTHING),     # converged: nothing read, nothing loaded
    (True, True, False, ai.RECORD),     # a rollback put the state file back
    (True, False, True, ai.TAG),        # present under another name only
    (True, False, False, ai.TAG),
    (False, False, False, ai.LOAD),
    (False, False, True, ai.LOAD),      # recorded, but the engine lost it: load again
])
def test_load_action_never_loads_an_image_present_by_id(present, tagged, recorded, action):
    assert ai.load_action(present, tagged, recorded) == action


def test_query_splits_missing_from_present_but_unrecorded():
    other = {"id": "sha256:" + "b" * 64, "ref": "localhost/airlift-sim/sentiment:1.0"}
    third = {"id": "sha256:" + "c" * 64, "ref": "localhost/airlift-proxy:latest"}
    recorded = {third["ref"]: {"id": third["id"].split(":")[1]},   # short ID counts too
                IMAGE["ref"]: {"id": "sha256:" + "0" * 64}}         # an older image
    missing, unrecorded = ai.split_query([IMAGE, other, third], {IMAGE["id"], third["id"]},
                                         recorded)
    assert missing == [other]
    assert unrecorded == [IMAGE]


class Exited(Exception):
    """exit_json or fail_json of the fake module: the module's answer."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


class FakeModule:
    def __init__(self, check_mode=False, **params):
        self.check_mode = check_mode
        self.params = {"engine": "podman", "src": None, "take_over": False,
                       "keep_archive": False, **params}

    def exit_json(self, **result):
        raise Exited(result)

    def fail_json(self, **result):
        raise Exited({**result, "failed": True})


@pytest.fixture
def module_code(monkeypatch):
    """plugins/modules/airlift_image.py with module_utils importable as Ansible ships it."""
    monkeypatch.setitem(sys.modules, "ansible.module_utils.airlift_images", ai)
    monkeypatch.setitem(sys.modules, "ansible.module_utils.airlift_hostinfo",
                        importlib.import_module("airlift_hostinfo"))
    spec = importlib.util.spec_from_file_location("airlift_image_module",
                                                  ROOT / "plugins/modules/airlift_image.py")
    code = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code)
    return code


class Engine:
    """Stands in for the podman-calling functions; records what would have run."""

    def __init__(self, code, monkeypatch, present=False, tagged=False, after_load=True):
        self.present, self.tagged, self.after_load = present, tagged, after_load
        self.calls = []
        monkeypatch.setattr(code, "present_ids", self.present_ids)
        monkeypatch.setattr(code, "ref_points_to", lambda engine, ref, image_id: self.tagged)
        monkeypatch.setattr(code, "load_archive", self.load_archive)
        monkeypatch.setattr(code, "tag", lambda engine, image_id, ref: self.calls.append(
            ("tag", ref)))

    def present_ids(self, engine, wanted):
        return set(wanted) if self.present else set()

    def load_archive(self, engine, path):
        self.calls.append(("load", path))
        self.present = self.after_load
        return "Loaded image: localhost/something-else:1.0"


def run_loaded(code, tmp_path, check_mode=False, recorded=False, src=None):
    state_file = tmp_path / "state" / "images.json"
    if recorded:
        ai.write_state(str(state_file), {"images": {IMAGE["ref"]: {"id": IMAGE["id"]}}})
    module = FakeModule(check_mode=check_mode, image=dict(IMAGE), src=src,
                        staging_dir=str(tmp_path / "staging"), state_file=str(state_file))
    with pytest.raises(Exited) as answer:
        code.loaded(module)
    return answer.value.result, ai.read_state(str(state_file)).get("images") or {}


def partial_archive(tmp_path):
    src = tmp_path / f".{IMAGE['sha256']}.tar.partial"
    src.write_bytes(b"archive")
    return src


def test_module_present_tagged_recorded_changes_nothing(module_code, monkeypatch, tmp_path):
    engine = Engine(module_code, monkeypatch, present=True, tagged=True)
    result, _ = run_loaded(module_code, tmp_path, recorded=True)
    assert result["changed"] is False and result["loaded"] is False
    assert engine.calls == []


def test_module_records_a_present_unrecorded_image_without_loading(module_code, monkeypatch,
                                                                    tmp_path):
    engine = Engine(module_code, monkeypatch, present=True, tagged=True)
    result, state = run_loaded(module_code, tmp_path)
    assert result == {"changed": True, "loaded": False, "msg": "recorded the present image"}
    assert state[IMAGE["ref"]]["id"] == IMAGE["id"]
    assert engine.calls == []


def test_module_only_tags_an_image_present_under_another_name(module_code, monkeypatch,
                                                               tmp_path):
    engine = Engine(module_code, monkeypatch, present=True, tagged=False)
    src = partial_archive(tmp_path)
    result, state = run_loaded(module_code, tmp_path, recorded=True, src=str(src))
    assert result["changed"] is True and result["loaded"] is False
    assert engine.calls == [("tag", IMAGE["ref"])]
    assert IMAGE["ref"] in state
    assert not src.exists()          # a transfer made needless is not left behind


@pytest.mark.parametrize(("present", "tagged", "recorded"), [
    (True, True, False), (True, False, True), (False, False, False)])
def test_module_in_check_mode_reports_a_change_and_does_none(module_code, monkeypatch,
                                                             tmp_path, present, tagged,
                                                             recorded):
    engine = Engine(module_code, monkeypatch, present=present, tagged=tagged)
    result, state = run_loaded(module_code, tmp_path, check_mode=True, recorded=recorded)
    assert result["changed"] is True and result["loaded"] is False
    assert result["msg"].startswith("would ")
    assert engine.calls == []
    assert (IMAGE["ref"] in state) == recorded       # state file untouched


def test_module_loads_verifies_tags_and_records_a_missing_image(module_code, monkeypatch,
                                                                tmp_path):
    engine = Engine(module_code, monkeypatch)
    src = partial_archive(tmp_path)
    result, state = run_loaded(module_code, tmp_path, src=str(src))
    assert result["changed"] is True and result["loaded"] is True
    final = tmp_path / "staging" / f"{IMAGE['sha256']}.tar"
    assert engine.calls == [("load", str(final)), ("tag", IMAGE["ref"])]
    assert not final.exists() and not src.exists()
    assert state[IMAGE["ref"]]["id"] == IMAGE["id"]


def test_module_fails_when_the_loaded_archive_holds_another_image(module_code, monkeypatch,
                                                                  tmp_path):
    engine = Engine(module_code, monkeypatch, after_load=False)
    result, state = run_loaded(module_code, tmp_path, src=str(partial_archive(tmp_path)))
    assert result["failed"] is True
    assert result["msg"].startswith(f"after loading, podman has no image {IMAGE['id']}: "
                                    "the archive holds another image")
    assert "localhost/something-else:1.0" in result["msg"]
    assert [call[0] for call in engine.calls] == ["load"]   # never tagged
    assert state == {}                                      # never recorded


def test_query_reports_free_space_as_preflight_measures_it(module_code, monkeypatch,
                                                           tmp_path):
    import airlift_hostinfo

    # airlift_host_facts' measure (nearest existing directory, whole MiB), faked here so
    # that the disk's own churn cannot make the test flaky.
    assert module_code.disk_free_mb is airlift_hostinfo.disk_free_mb
    monkeypatch.setattr(module_code, "disk_free_mb", lambda path: len(path))
    monkeypatch.setattr(module_code, "present_ids", lambda engine, wanted: set())
    staging, store = str(tmp_path / "staging"), str(tmp_path / "containers" / "not-yet")
    module = FakeModule(images=[{"id": IMAGE["id"], "ref": IMAGE["ref"]}], staging_dir=staging,
                        disk_paths=[store], state_file=str(tmp_path / "images.json"))
    with pytest.raises(Exited) as answer:
        module_code.query(module)
    result = answer.value.result
    assert result["free_mb"] == {staging: len(staging), store: len(store)}
    assert result["missing"] == [{"id": IMAGE["id"], "ref": IMAGE["ref"]}]
