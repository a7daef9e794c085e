"""stage.yml and distribute.yml run for real against the lab fleet."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_playbook

from airlift import lab, podman

pytestmark = pytest.mark.lab
API_KEY = "lab-secret-api-key-do-not-print"
SENTIMENT = "localhost/airlift-sim/sentiment:1.0"


def run(playbook: str, *args: str, json_output: bool = False) -> subprocess.CompletedProcess:
    return run_playbook(playbook, *args, json_output=json_output)


def task_results(proc: subprocess.CompletedProcess, task_name: str) -> dict[str, dict]:
    data = json.loads(proc.stdout)
    for play in data["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith(task_name):
                return task["hosts"]
    raise AssertionError(f"task {task_name!r} did not run")


COMPARE = "Compare each host with what the bundle and inventory want (one read-only call)"


def ran(proc: subprocess.CompletedProcess, task_name: str) -> dict[str, dict]:
    """The hosts a task ran on ({} when the fast path left every host before it)."""
    try:
        return task_results(proc, task_name)
    except AssertionError:
        return {}


@pytest.fixture(scope="module")
def fleet():
    # Three hosts: besides the two the tests act on (fleet[0], fleet[1]), a third whose
    # first delivery runs alongside them and must converge too.
    lab.up(3)
    hosts = lab.host_names(3)
    proc = run("playbooks/stage.yml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    return hosts


@pytest.fixture(scope="module")
def bundle_dir(fleet):
    return ROOT / "bundles" / "lab"


def limit(hosts):
    return ["--limit", ",".join(hosts)]


def forget_image(host: str, ref: str = SENTIMENT) -> None:
    podman.run(["exec", host, "podman", "rmi", "--force", ref], check=False)


def test_second_run_moves_nothing_and_changes_nothing(fleet):
    # From a delivered fleet, whatever earlier tests left on the reused lab hosts.
    assert run("playbooks/distribute.yml", *limit(fleet)).returncode == 0
    forget_image(fleet[1])
    first = run("playbooks/distribute.yml", *limit(fleet), json_output=True)
    assert first.returncode == 0, first.stdout[-3000:]
    moved = task_results(first, "Transfer and load only the images this host lacks")
    assert moved[fleet[1]]["loaded"] == [SENTIMENT]
    assert moved[fleet[1]]["transferred_bytes"] > 100_000_000

    # Converged: the fast path's one call per host finds nothing of distribute's to do,
    # and the host leaves the play before any transfer task.
    second = run("playbooks/distribute.yml", *limit(fleet), json_output=True)
    assert second.returncode == 0
    stats = json.loads(second.stdout)["stats"]
    assert all(stats[host]["changed"] == 0 for host in fleet), stats
    compared = task_results(second, COMPARE)
    assert all(not compared[host]["areas"]["distribute"] for host in fleet), compared
    assert not ran(second, "Transfer and load only the images this host lacks")

    # A full pass (the fast path off) runs every task, and moves nothing either.
    full = run("playbooks/distribute.yml", *limit(fleet), "-e", "airlift_fast_path=false",
               json_output=True)
    assert full.returncode == 0
    assert all(json.loads(full.stdout)["stats"][host]["changed"] == 0 for host in fleet)
    again = task_results(full, "Transfer and load only the images this host lacks")
    for host in fleet:
        assert again[host]["transferred_bytes"] == 0
        assert again[host]["loaded"] == []


def test_host_state_licenses_root_only_and_recorded(fleet):
    run("playbooks/distribute.yml", *limit(fleet))
    host = fleet[0]
    listing = podman.run(["exec", host, "stat", "-c", "%a %U %n", "/var/lib/airlift/licenses",
                          "/var/lib/airlift/licenses/sentiment",
                          "/var/lib/airlift/licenses/sentiment/sentiment.license"]).stdout
    assert listing.split("\n")[:3] == [
        "711 root /var/lib/airlift/licenses", "700 root /var/lib/airlift/licenses/sentiment",
        "600 root /var/lib/airlift/licenses/sentiment/sentiment.license"]
    state = json.loads(podman.run(["exec", host, "cat",
                                   "/var/lib/airlift/state/images.json"]).stdout)
    assert SENTIMENT in state["images"]


def test_interrupted_transfer_is_discarded_never_loaded_and_rerun_converges(fleet,
                                                                            bundle_dir):
    host = fleet[1]
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    image = next(i for i in manifest["images"] if i["ref"] == SENTIMENT)
    forget_image(host)
    partial = f"/var/lib/airlift/staging/.{image['sha256']}.tar.partial"
    with (bundle_dir / image["archive"]).open("rb") as handle:
        podman.run(["exec", "-i", host, "sh", "-c", f"head -c 5000000 > {partial}"],
                   stdin=handle)
    # The module refuses the half file outright...
    refused = subprocess.run(
        ["ansible", host, "-i", "inventories/lab", "-m", "airlift_image", "-a",
         json.dumps({"src": partial, "image": {k: image[k] for k in ("id", "ref", "sha256",
                                                                     "size")}})],
        capture_output=True, text=True, cwd=ROOT, check=False)
    assert refused.returncode != 0
    assert "incomplete transfer" in refused.stdout
    assert podman.run(["exec", host, "podman", "image", "exists", SENTIMENT],
                      check=False).returncode == 1
    # ...and a leftover from a killed transfer is discarded by the next run, once it has
    # lain untouched for airlift_distribute_stale_after (here 0 s; one changed in the
    # last two minutes might still be growing, and by default it would be kept).
    podman.run(["exec", "-i", host, "sh", "-c", f"head -c 5000000 > {partial}"],
               stdin=(bundle_dir / image["archive"]).open("rb"))
    proc = run("playbooks/distribute.yml", *limit(fleet), "-e",
               '{"airlift_distribute_stale_after": 0}', json_output=True)
    assert proc.returncode == 0
    result = task_results(proc, "Transfer and load only the images this host lacks")[host]
    assert result["discarded"] == [partial]
    assert result["loaded"] == [SENTIMENT]
    assert podman.run(["exec", host, "ls", "-A", "/var/lib/airlift/staging"]).stdout == ""


def test_check_mode_reports_what_would_move_and_moves_nothing(fleet, bundle_dir):
    host = fleet[1]
    forget_image(host)
    proc = run("playbooks/distribute.yml", "--check", *limit(fleet), json_output=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    result = task_results(proc, "Transfer and load only the images this host lacks")[host]
    assert [item["ref"] for item in result["would_transfer"]] == [SENTIMENT]
    assert result["would_transfer"][0]["size"] > 100_000_000
    assert podman.run(["exec", host, "podman", "image", "exists", SENTIMENT],
                      check=False).returncode == 1
    run("playbooks/distribute.yml", *limit(fleet))


def tampered_copy(bundle_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy, copy_function=os.link)
    return copy


@pytest.mark.parametrize("tamper", ["license", "extra", "signature"])
def test_tampered_bundle_is_refused_before_any_host_is_touched(fleet, bundle_dir, tmp_path,
                                                               tamper):
    copy = tampered_copy(bundle_dir, tmp_path)
    if tamper == "license":
        target = next((copy / "licenses").rglob("*.license"))
        content = target.read_text().replace("2", "3", 1)
        target.unlink()  # break the hard link before writing
        target.write_text(content)
        expected = "sha256 mismatch"
    elif tamper == "extra":
        (copy / "images" / "backdoor.tar").write_bytes(b"x")
        expected = "unlisted extra file: images/backdoor.tar"
    else:
        manifest = (copy / "manifest.json").read_text().replace("2099", "2098")
        (copy / "manifest.json").unlink()
        (copy / "manifest.json").write_text(manifest.replace('"size": 1', '"size": 2', 1))
        expected = "bad signature"
    proc = run("playbooks/distribute.yml", *limit(fleet), "-e",
               f"airlift_distribute_bundle_dir={copy}")
    assert proc.returncode != 0
    assert expected in proc.stdout
    assert "Transfer and load only the images" not in proc.stdout


def test_stopped_host_does_not_stop_the_others_and_is_reported(fleet):
    stopped = fleet[1]
    forget_image(fleet[0])
    lab.stop([stopped])
    try:
        proc = run("playbooks/distribute.yml", *limit(fleet))
        assert proc.returncode != 0
        recaps = {line.split()[0]: line for line in proc.stdout.splitlines()
                  if line.startswith("airlift-lab-") and " : ok=" in line}
        assert "unreachable=1" in recaps[stopped]
        assert "failed=0" in recaps[fleet[0]] and "unreachable=0" in recaps[fleet[0]]
        assert podman.run(["exec", fleet[0], "podman", "image", "exists", SENTIMENT],
                          check=False).returncode == 0
    finally:
        lab.up(len(fleet))


def test_replaced_license_is_kept_aside_not_deleted(fleet):
    host = fleet[0]
    path = "/var/lib/airlift/licenses/sentiment/sentiment.license"
    podman.run(["exec", host, "sh", "-c", f"echo old-license > {path}"])
    proc = run("playbooks/distribute.yml", *limit(fleet), json_output=True)
    assert proc.returncode == 0
    placed = task_results(proc, "Place this host's licenses root-only "
                                "(only those whose content differs)")[host]
    assert placed["placed"] == ["sentiment/sentiment.license"]
    aside = placed["kept_aside"][0]
    assert podman.run(["exec", host, "cat", aside]).stdout == "old-license\n"
    assert podman.run(["exec", host, "stat", "-c", "%a", path]).stdout.strip() == "600"


def test_api_key_never_appears_in_stage_output(fleet):
    proc = run("playbooks/stage.yml", "-v", "-e", '{"airlift_stage_renew_licenses": true}')
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "Run each image once with DownloadLicense=True" in proc.stdout
    assert API_KEY not in proc.stdout + proc.stderr
    assert not list((ROOT / "bundles" / "lab").rglob("*.previous*"))
    for path in (ROOT / "bundles" / "lab").rglob("*"):
        if path.is_file() and path.stat().st_size < 1_000_000:
            assert API_KEY not in path.read_text(errors="replace"), path


def test_too_little_disk_is_refused_before_any_byte_moves(fleet):
    host = fleet[1]
    forget_image(host)
    podman.run(["exec", host, "sh", "-c", "mkdir -p /mnt/tiny && (mountpoint -q /mnt/tiny || "
                "mount -t tmpfs -o size=20m tmpfs /mnt/tiny)"])
    try:
        proc = run("playbooks/distribute.yml", *limit(fleet), "-e",
                   "airlift_distribute_staging_dir=/mnt/tiny/staging")
        assert proc.returncode != 0
        assert "not enough disk on the host" in proc.stdout
        # The message names the short path (YAML output may wrap it: compare words).
        shown = " ".join(proc.stdout.split())
        assert re.search(r"/mnt/tiny/staging has \d+ MiB free", shown), shown[-3000:]
        used = podman.run(["exec", host, "du", "-sb", "/mnt/tiny"]).stdout.split()[0]
        assert int(used) < 1_000_000
    finally:
        podman.run(["exec", host, "umount", "/mnt/tiny"], check=False)
        run("playbooks/distribute.yml", *limit(fleet))


def test_missing_signing_key_is_named_before_any_work(fleet, tmp_path):
    proc = run("playbooks/stage.yml", "-e", f"airlift_stage_signing_key={tmp_path}/none.key")
    assert proc.returncode != 0
    assert f"signing key {tmp_path}/none.key not found: make one with" in proc.stdout
    assert "Save each image" not in proc.stdout


def test_non_root_login_with_become_delivers_through_a_root_owned_copy(fleet):
    host = fleet[1]
    forget_image(host)
    proc = run("playbooks/distribute.yml", "--limit", host, "-e",
               json.dumps({"ansible_user": "airlift", "ansible_become": True}),
               json_output=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    result = task_results(proc, "Transfer and load only the images this host lacks")[host]
    assert SENTIMENT in result["loaded"]  # (a brand-new host loads the other image too)
    assert podman.run(["exec", host, "podman", "image", "exists", SENTIMENT],
                      check=False).returncode == 0
    leftovers = podman.run(["exec", host, "sh", "-c",
                            "ls -A /var/lib/airlift/staging ~airlift/.ansible/tmp 2>/dev/null"]
                           ).stdout.split()
    assert not [name for name in leftovers if name.endswith(".tar")], leftovers


# -- overlapping runs (issue 17): a re-run beside another run or a killed run's orphan --

def start(playbook: str, *args: str) -> subprocess.Popen:
    """ansible-playbook in the background, as conftest.run_playbook runs it (JSON out)."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    return subprocess.Popen(["ansible-playbook", "-i", "inventories/lab", playbook, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)


def finished(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def staging_listing(host: str) -> list[str]:
    return podman.run(["exec", host, "ls", "-A", "/var/lib/airlift/staging"]).stdout.split()


def assert_loaded_once_and_clean(host: str, image: dict) -> None:
    """The image is there with the manifest's ID, recorded, and staging holds nothing."""
    found = podman.run(["exec", host, "podman", "image", "inspect", "--format", "{{.Id}}",
                        SENTIMENT]).stdout.strip()
    assert found == image["id"].split(":")[-1]
    state = json.loads(podman.run(["exec", host, "cat",
                                   "/var/lib/airlift/state/images.json"]).stdout)
    assert state["images"][SENTIMENT]["id"] == image["id"]
    assert staging_listing(host) == []


def sentiment(bundle_dir: Path) -> dict:
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    return next(i for i in manifest["images"] if i["ref"] == SENTIMENT)


def test_two_distributes_at_once_both_succeed_and_load_the_image_once(fleet, bundle_dir):
    host = fleet[1]
    forget_image(host)
    runs = [finished(proc) for proc in [start("playbooks/distribute.yml", "--limit", host)
                                        for _ in range(2)]]
    for proc in runs:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = [task_results(proc, "Transfer and load only the images this host lacks")[host]
               for proc in runs]
    # Both found it missing and moved a copy each, to names of their own; one loaded it,
    # the other waited for the lock, found it present and discarded its copy.
    assert all(result["transferred_bytes"] > 100_000_000 for result in results), results
    assert sorted(len(result["loaded"]) for result in results) == [0, 1], results
    assert_loaded_once_and_clean(host, sentiment(bundle_dir))


def proc_stat(pid: int | str) -> list[str]:
    """State, ppid, ... of a process (fields after its name), or [] once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def children(pid: int) -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and proc_stat(entry.name)[1:2] == [str(pid)]]


def alive(pid: int) -> bool:
    return proc_stat(pid)[:1] not in ([], ["Z"])


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


def run_pid(partial: str) -> int | None:
    """The pid in a transfer's temporary name (.<sha>.tar.<pid>-<hex>.partial): the
    worker process of the run that writes it."""
    match = re.search(r"\.tar\.(\d+)-[0-9a-f]+\.partial$", partial)
    return int(match[1]) if match else None


def wait_for_a_transfer(host: str, proc: subprocess.Popen) -> tuple[str, list[int]]:
    """The temporary file written by this run (not another's), once it shows up, and the
    run's worker processes then."""
    deadline = time.monotonic() + 120
    while True:
        workers = descendants(proc.pid)
        ours = [name for name in staging_listing(host) if run_pid(name) in workers]
        if ours:
            return ours[0], workers
        assert proc.poll() is None, "the run ended before its transfer was seen"
        assert time.monotonic() < deadline, "no transfer started within 2 minutes"
        time.sleep(0.1)


def test_a_killed_runs_orphan_and_a_rerun_overlap_and_both_converge(fleet, bundle_dir):
    """The failure of issue 17: the controller is killed mid-transfer; its worker, in a
    session of its own, carries on and loads the image seconds later, while the re-run
    started in that window transfers and loads the same image."""
    host = fleet[1]
    forget_image(host)
    killed = start("playbooks/distribute.yml", "--limit", host)
    rerun = start("playbooks/distribute.yml", "--limit", host)
    # The killed run's own transfer (the re-run's may show up first), so the two overlap.
    orphans_file, workers = wait_for_a_transfer(host, killed)
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate()
    done = finished(rerun)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    result = task_results(done, "Transfer and load only the images this host lacks")[host]
    assert result["discarded"] == []       # nothing the orphan was writing was taken
    assert result["transferred_bytes"] > 100_000_000     # the two did overlap
    deadline = time.monotonic() + 120
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, f"the orphaned workers {workers} did not end"
        time.sleep(0.5)
    assert orphans_file not in staging_listing(host)   # the orphan took its file away
    assert_loaded_once_and_clean(host, sentiment(bundle_dir))


def test_a_transfer_killed_halfway_is_never_loaded_and_the_rerun_converges(fleet,
                                                                           bundle_dir):
    host = fleet[1]
    forget_image(host)
    killed = start("playbooks/distribute.yml", "--limit", host)
    partial, _ = wait_for_a_transfer(host, killed)
    # The controller and its worker, which writes the copy: the transfer stops halfway.
    doomed = [killed.pid, *descendants(killed.pid)]
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):  # a short-lived helper already ended
            os.kill(pid, signal.SIGKILL)
    killed.communicate()
    # A write already in the kernel may still finish: wait until they are gone.
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in doomed):
        assert time.monotonic() < deadline, f"killed processes {doomed} did not end"
        time.sleep(0.2)
    # Where the kill lands decides what the re-run finds: a copy cut short (never loaded,
    # kept while it may still grow), a whole copy no module got to (the same), or a copy a
    # module was already verifying inside the host (killing the controller's `podman exec`
    # does not stop it: it loads the image). Whichever it was, the re-run converges on the
    # manifest's image and nothing half-written is taken for complete.
    image = sentiment(bundle_dir)
    rerun = run("playbooks/distribute.yml", "--limit", host, json_output=True)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    result = ran(rerun, "Transfer and load only the images this host lacks").get(host)
    leftovers = staging_listing(host)
    if result is None:
        # The orphaned module loaded it and removed its copy: the fast path found the
        # host converged (no leftover either) and ran no transfer task.
        assert not task_results(rerun, COMPARE)[host]["areas"]["distribute"]
        assert leftovers == []
    else:
        assert result["loaded"] in ([SENTIMENT], []), result
        assert leftovers in ([], [partial]) and result["kept"] == [
            f"/var/lib/airlift/staging/{name}" for name in leftovers]
    found = podman.run(["exec", host, "podman", "image", "inspect", "--format", "{{.Id}}",
                        SENTIMENT]).stdout.strip()
    assert found == image["id"].split(":")[-1]
    # Once it has lain untouched long enough (here: any time), a run's query discards it.
    query = subprocess.run(
        ["ansible", host, "-i", "inventories/lab", "-m", "airlift_image", "-a",
         json.dumps({"state": "query", "images": [], "stale_after": 0})],
        capture_output=True, text=True, cwd=ROOT, check=False)
    assert query.returncode == 0, query.stdout
    assert staging_listing(host) == []
