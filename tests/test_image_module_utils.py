"""The host-side decisions of airlift_image: what is complete, discarded, loaded or tagged."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

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


def test_only_partial_files_are_temporary(tmp_path):
    (tmp_path / ".abc.tar.partial").write_bytes(b"half")
    (tmp_path / "abc.tar").write_bytes(b"kept archive")
    assert ai.partial_files(str(tmp_path)) == [str(tmp_path / ".abc.tar.partial")]
    assert ai.partial_files(str(tmp_path / "missing")) == []


def test_each_transfer_has_its_own_temporary_name():
    sha = "d" * 64
    first, second = ai.partial_name(sha, "101-a1b2c3"), ai.partial_name(sha, "202-d4e5f6")
    assert first != second
    assert ai.PARTIAL_NAME.match(first)["sha256"] == sha
    assert ai.partial_name(sha, "../x y") == f".{sha}.tar.___x_y.partial"   # stays a name


@pytest.mark.parametrize(("age", "open_on_host", "locked", "stale"), [
    (600, False, False, True),      # a dead transfer's leftover
    (5, False, False, False),       # written seconds ago: maybe still growing
    (600, True, False, False),      # a process on the host is reading or writing it
    (600, False, True, False),      # a run holds its archive's lock (verifying, loading)
    (ai.STALE_AFTER, False, False, True),
])
def test_only_a_dead_transfers_file_is_stale(age, open_on_host, locked, stale):
    assert ai.stale_partial(age, open_on_host, locked) is stale


def written(path):
    path.write_bytes(b"half")
    return path


def test_cleanup_removes_only_dead_transfers_and_never_a_live_ones_file(tmp_path):
    sha, other = "e" * 64, "f" * 64
    dead = written(tmp_path / ai.partial_name(sha, "1-dead"))
    held_open = written(tmp_path / ai.partial_name(sha, "3-open"))
    locked = written(tmp_path / ai.partial_name(other, "4-loading"))
    # A copy that sets its mtime back to the source's when done (podman cp, like tar)
    # is still recent: its inode changed just now.
    restamped = written(tmp_path / ai.partial_name(other, "5-restamped"))
    time.sleep(1.2)
    recent = written(tmp_path / ai.partial_name(sha, "2-live"))
    os.utime(restamped, (1_000_000, 1_000_000))
    final = tmp_path / f"{sha}.tar"
    final.write_bytes(b"a kept archive")
    young = sorted(str(p) for p in (recent, held_open, locked, restamped))
    with held_open.open("rb"), ai.ArchiveLock(str(tmp_path), other, "4-loading") as lock:
        assert lock.try_acquire()
        # Check mode locks and removes nothing, and answers the same.
        assert ai.discard_stale_partials(str(tmp_path), "9-check", check_mode=True,
                                         grace=1) == ([str(dead)], young)
        assert dead.exists()
        discarded, kept = ai.discard_stale_partials(str(tmp_path), "9-cleanup", grace=1)
    assert discarded == [str(dead)] and not dead.exists()
    assert kept == young
    assert all(Path(path).exists() for path in young) and final.exists()
    assert not list(tmp_path.glob("*.lock"))          # the cleanup's own locks are gone
    # Once the loading run is done and the files lie untouched, they go too.
    assert ai.discard_stale_partials(str(tmp_path), "9-later", now=time.time() + 5,
                                     grace=1)[0] == young


def test_a_second_run_waits_then_names_the_run_that_holds_the_lock(tmp_path):
    holder = ai.ArchiveLock(str(tmp_path), "a" * 64, "4242-c0ffee")
    assert holder.try_acquire()
    waiter = ai.ArchiveLock(str(tmp_path), "a" * 64, "5151-beef00")
    started = time.monotonic()
    with pytest.raises(ai.LockBusy) as busy:
        waiter.acquire(timeout=0.6, poll=0.05)
    assert time.monotonic() - started >= 0.6
    message = str(busy.value)
    assert f"airlift run 4242-c0ffee (pid {os.getpid()} on this host" in message
    assert message.startswith("archive aaaaaaaaaaaa is being verified or loaded by")
    assert message.endswith("gave up after waiting 0 s: let that run finish, then run again")
    holder.release()
    assert not (tmp_path / f".{'a' * 64}.lock").exists()
    waiter.acquire(timeout=0)                            # free now: taken at once
    assert json.loads((tmp_path / f".{'a' * 64}.lock").read_text())["run"] == "5151-beef00"
    waiter.release()


def test_a_waiting_run_gets_the_lock_when_the_holder_releases_it(tmp_path):
    holder = ai.ArchiveLock(str(tmp_path), "a" * 64, "1-first")
    assert holder.try_acquire()
    threading.Timer(0.3, holder.release).start()
    waiter = ai.ArchiveLock(str(tmp_path), "a" * 64, "2-second")
    waiter.acquire(timeout=5, poll=0.05)
    assert waiter.fd is not None
    # The holder removed the file it locked; the waiter holds the file now at the path.
    assert os.fstat(waiter.fd).st_ino == (tmp_path / f".{'a' * 64}.lock").stat().st_ino
    waiter.release()


def test_a_killed_holder_leaves_no_lock_behind(tmp_path):
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); import airlift_layout; "
            "sys.modules['ansible.module_utils.airlift_layout'] = airlift_layout; "
            "import airlift_images as ai; "
            "lock = ai.ArchiveLock(sys.argv[2], 'a' * 64, '7-killed'); lock.acquire(); "
            "print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(ROOT / "plugins/module_utils"),
                             str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "held\n"
        assert not ai.ArchiveLock(str(tmp_path), "a" * 64, "8-next").try_acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    nxt = ai.ArchiveLock(str(tmp_path), "a" * 64, "8-next")
    assert nxt.try_acquire()
    nxt.release()


def record_many(path, prefix):
    for number in range(40):
        ai.update_state(path, lambda state, ref=f"{prefix}{number}": state.setdefault(
            "images", {}).update({ref: {"id": ref}}))


def test_two_runs_recording_at_once_lose_no_record(tmp_path):
    path = str(tmp_path / "state" / "images.json")
    workers = [multiprocessing.get_context("fork").Process(target=record_many,
                                                           args=(path, prefix))
               for prefix in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0
    assert len(ai.read_state(path)["images"]) == 80
    assert not list((tmp_path / "state").glob("*.partial"))


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
                       "keep_archive": False, "run_id": "100-abcdef", "lock_timeout": 600,
                       "stale_after": 120,
                       **params}

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


def run_loaded(code, tmp_path, check_mode=False, recorded=False, src=None, **params):
    state_file = tmp_path / "state" / "images.json"
    if recorded:
        ai.write_state(str(state_file), {"images": {IMAGE["ref"]: {"id": IMAGE["id"]}}})
    module = FakeModule(check_mode=check_mode, image=dict(IMAGE), src=src,
                        staging_dir=str(tmp_path / "staging"), state_file=str(state_file),
                        **params)
    with pytest.raises(Exited) as answer:
        code.loaded(module)
    return answer.value.result, ai.read_state(str(state_file)).get("images") or {}


def partial_archive(tmp_path, run="100-abcdef"):
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    src = staging / ai.partial_name(IMAGE["sha256"], run)
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
    # Loaded from this run's own temporary name; no final-name file appears.
    assert engine.calls == [("load", str(src)), ("tag", IMAGE["ref"])]
    assert not src.exists() and os.listdir(tmp_path / "staging") == []
    assert state[IMAGE["ref"]]["id"] == IMAGE["id"]


def test_module_keeps_the_archive_under_its_final_name_only_after_a_good_load(
        module_code, monkeypatch, tmp_path):
    Engine(module_code, monkeypatch)
    src = partial_archive(tmp_path)
    result, _ = run_loaded(module_code, tmp_path, src=str(src), keep_archive=True)
    assert result["loaded"] is True
    assert os.listdir(tmp_path / "staging") == [f"{IMAGE['sha256']}.tar"]


def test_module_that_waited_for_another_run_discards_its_copy_and_changes_nothing(
        module_code, monkeypatch, tmp_path):
    """The failure of issue 17: a re-run and a killed run's orphan loading one image."""
    engine = Engine(module_code, monkeypatch)
    mine = partial_archive(tmp_path, run="200-second")
    theirs = partial_archive(tmp_path, run="100-first")
    other = ai.ArchiveLock(str(tmp_path / "staging"), IMAGE["sha256"], "100-first")
    assert other.try_acquire()

    def other_run_finishes():
        # The other run loads, keeps its archive under the final name and records.
        theirs.rename(tmp_path / "staging" / f"{IMAGE['sha256']}.tar")
        engine.present = engine.tagged = True
        ai.write_state(str(tmp_path / "state" / "images.json"),
                       {"images": {IMAGE["ref"]: {"id": IMAGE["id"]}}})
        other.release()

    threading.Timer(0.4, other_run_finishes).start()
    result, _ = run_loaded(module_code, tmp_path, src=str(mine), run_id="200-second")
    assert result == {"changed": False, "loaded": False, "msg": "image already present"}
    assert engine.calls == []                                # nothing loaded twice
    assert not mine.exists()                                 # its own copy is gone
    # ...and the other run's file is untouched.
    assert os.listdir(tmp_path / "staging") == [f"{IMAGE['sha256']}.tar"]


def test_module_gives_up_waiting_naming_the_run_that_holds_the_lock(module_code,
                                                                     monkeypatch, tmp_path):
    engine = Engine(module_code, monkeypatch)
    mine = partial_archive(tmp_path, run="200-second")
    theirs = partial_archive(tmp_path, run="100-first")
    with ai.ArchiveLock(str(tmp_path / "staging"), IMAGE["sha256"], "100-first") as other:
        assert other.try_acquire()
        result, _ = run_loaded(module_code, tmp_path, src=str(mine), run_id="200-second",
                               lock_timeout=0)
    assert result["failed"] is True
    assert "is being verified or loaded by airlift run 100-first (pid" in result["msg"]
    assert engine.calls == []
    assert not mine.exists() and theirs.exists()


def test_module_failing_to_load_removes_its_own_copy_only(module_code, monkeypatch,
                                                          tmp_path):
    engine = Engine(module_code, monkeypatch)
    theirs = partial_archive(tmp_path, run="100-first")
    mine = partial_archive(tmp_path, run="200-second")

    def broken_load(engine_name, path):
        engine.calls.append(("load", path))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module_code, "load_archive", broken_load)
    result, state = run_loaded(module_code, tmp_path, src=str(mine), run_id="200-second")
    assert result["failed"] is True
    assert result["msg"] == "OSError: [Errno 28] No space left on device"
    assert not mine.exists() and theirs.exists() and state == {}
    assert not list((tmp_path / "staging").glob("*.lock"))


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


def test_forget_images_drops_only_the_removed_and_leaves_an_unchanged_file_alone(tmp_path):
    path = tmp_path / "state" / "images.json"
    ai.write_state(str(path), {"images": {"old": {"id": "sha256:" + "1" * 64},
                                          "new": {"id": "sha256:" + "2" * 64}}})
    ai.forget_images(str(path), ["1" * 64])                 # a short ID matches too
    assert ai.read_state(str(path)) == {"images": {"new": {"id": "sha256:" + "2" * 64}}}
    before = path.stat().st_ino
    ai.forget_images(str(path), ["sha256:" + "3" * 64])     # not recorded: no rewrite
    assert path.stat().st_ino == before


def test_a_waiting_runs_copy_is_never_taken_by_a_third_runs_cleanup(module_code, monkeypatch,
                                                                   tmp_path):
    """Between the holder's release and the waiter's next try the lock is free: a third
    run's cleanup may then judge the waiter's copy. It is open (the waiter holds it), so
    it is kept however old it is, and the waiter loads it."""
    engine = Engine(module_code, monkeypatch)
    mine = partial_archive(tmp_path, run="200-second")
    cleanups = []

    class LockFreedForAThirdRun(ai.ArchiveLock):
        def acquire(self, timeout=ai.LOCK_TIMEOUT, poll=0.25):
            cleanups.append(ai.discard_stale_partials(str(tmp_path / "staging"),
                                                      "300-third", grace=0))
            super().acquire(timeout, poll)

    monkeypatch.setattr(module_code, "ArchiveLock", LockFreedForAThirdRun)
    result, state = run_loaded(module_code, tmp_path, src=str(mine), run_id="200-second")
    assert cleanups == [([], [str(mine)])]
    assert result["loaded"] is True, result
    assert engine.calls == [("load", str(mine)), ("tag", IMAGE["ref"])]
    assert IMAGE["ref"] in state
