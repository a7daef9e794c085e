# Apache-2.0
"""Host-side image logic shared by the airlift_image module and its tests.

The engine is asked which image IDs it has (cheap: no hashing). An archive that was
transferred is verified (size, then sha256 in one read) before it is loaded, and gets
its final name only once loaded; a leftover temporary file is never loaded.

Runs may overlap on one host (a re-run started while the worker of a killed run is still
copying): each transfer writes its own temporary name, one run at a time verifies and
loads a given archive (a lock file per archive, see ArchiveLock), and a temporary file is
discarded only when no run can still be using it (stale_partial).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable

from ansible.module_utils.airlift_layout import PARTIAL_SUFFIX

CHUNK = 1 << 20
# A temporary file untouched this long, open by no process and whose archive lock is
# free belongs to a dead transfer. A live copy writes every few milliseconds; this only
# has to outlast a stalled link and the start of the module that takes the file over,
# since the writer (scp, sftp, podman cp from outside the host) may not show up among
# the host's processes. "Untouched" is judged by the inode's change time, which nothing
# can set back (podman cp, like tar, sets a copy's mtime to the source's when done).
STALE_AFTER = 120
# How long state=loaded waits for another run holding an archive's lock (a load of a
# large image takes minutes) before it fails, naming that run.
LOCK_TIMEOUT = 600
PARTIAL_NAME = re.compile(r"^\.(?P<sha256>[0-9a-f]{64})\.tar(?:\.(?P<run>[A-Za-z0-9_-]+))?"
                          + re.escape(PARTIAL_SUFFIX) + "$")


def short_id(image_id: str) -> str:
    return image_id.split(":", 1)[-1]


def present_ids(engine: str, wanted: list[str]) -> set[str]:
    """Which of the wanted image IDs the engine has (one inspect call)."""
    if not wanted:
        return set()
    proc = subprocess.run([engine, "image", "inspect", "--format", "{{.Id}}", *wanted],
                          capture_output=True, text=True, check=False)
    # inspect prints the IDs it found and fails for the rest: keep what it printed.
    found = {short_id(line.strip()) for line in proc.stdout.splitlines() if line.strip()}
    return {image_id for image_id in wanted if short_id(image_id) in found}


# What state=loaded does with one image (load_action's answers).
NOTHING = "nothing"  # present, tagged with its ref and recorded
RECORD = "record"    # present and tagged, but the state file does not say so
TAG = "tag"          # present under another name (or an earlier tag failed): tag, record
LOAD = "load"        # absent: verify the archive, load it, check its ID, tag, record


def is_recorded(recorded: dict, image: dict) -> bool:
    """Whether the state file's entry for the image's ref names this image ID."""
    entry = recorded.get(image["ref"]) or {}
    return short_id(entry.get("id", "")) == short_id(image["id"])


def split_query(images: list[dict], present: set[str], recorded: dict,
                ) -> tuple[list[dict], list[dict]]:
    """(missing, unrecorded) of the wanted images.

    Missing ones are transferred. Present ones the state file does not record (a
    rollback put it back) are only tagged and recorded: nothing is transferred for them.
    """
    missing = [image for image in images if image["id"] not in present]
    unrecorded = [image for image in images if image["id"] in present
                  and not is_recorded(recorded, image)]
    return missing, unrecorded


def load_action(present: bool, tagged: bool, recorded: bool) -> str:
    """What state=loaded must do for one image, cheapest first.

    Pure, so every branch is unit-tested; the engine is asked by the caller (`present`
    from present_ids, `tagged` from ref_points_to). An image present by ID is never read
    or loaded again. In check mode the caller reports anything but NOTHING as a change
    and does none of it.
    """
    if not present:
        return LOAD
    if not tagged:
        return TAG
    if not recorded:
        return RECORD
    return NOTHING


def partial_name(sha256: str, run_id: str) -> str:
    """This transfer's own temporary name: two runs never write the same file."""
    run = re.sub(r"[^A-Za-z0-9_-]", "_", run_id) or "run"
    return f".{sha256}.tar.{run}{PARTIAL_SUFFIX}"


def partial_files(staging_dir: str) -> list[str]:
    """Temporary files of transfers in the staging directory (live or dead)."""
    if not os.path.isdir(staging_dir):
        return []
    return sorted(os.path.join(staging_dir, name) for name in os.listdir(staging_dir)
                  if name.endswith(PARTIAL_SUFFIX))


def stale_partial(age: float, open_on_host: bool, locked: bool,
                  grace: float = STALE_AFTER) -> bool:
    """Whether a temporary file belongs to a dead transfer and may be removed.

    Pure, so every branch is unit-tested. `locked`: another run holds the archive's lock
    (it is verifying or loading, or waits to). `open_on_host`: a process on the host has
    the file open. `age`: seconds since it was last written; a copy in progress writes
    continually, so a recent file may still be growing.
    """
    return not locked and not open_on_host and age >= grace


def open_paths(paths: list[str]) -> set[str]:
    """Which of the paths some process on this host has open (from /proc/*/fd).

    Processes this user may not inspect are skipped: the module runs as root on a host.
    """
    wanted, found = set(paths), set()
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return found
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target in wanted:
                found.add(target)
    return found


def discard_stale_partials(staging_dir: str, run_id: str, check_mode: bool = False,
                           now: float | None = None, grace: float = STALE_AFTER,
                           ) -> tuple[list[str], list[str]]:
    """(discarded, kept) temporary files: only a dead transfer's file is removed.

    A file named for an archive is judged while holding that archive's lock (taken
    without waiting), so no run can start verifying or loading it meanwhile. In check
    mode nothing is locked or removed; the answer is what would be.
    """
    paths = partial_files(staging_dir)
    if not paths:
        return [], []
    now = time.time() if now is None else now
    busy = open_paths(paths)
    discarded, kept = [], []
    for path in paths:
        match = PARTIAL_NAME.match(os.path.basename(path))
        lock = ArchiveLock(staging_dir, match["sha256"], run_id) if match else None
        if lock and (lock.is_held() if check_mode else not lock.try_acquire()):
            kept.append(path)
            continue
        if check_mode:
            lock = None  # only looked at, never taken
        try:
            try:
                info = os.stat(path)
                age = now - max(info.st_mtime, info.st_ctime)
            except FileNotFoundError:
                continue  # another run's cleanup or load took it meanwhile
            if not stale_partial(age, path in busy, False, grace):
                kept.append(path)
                continue
            if not check_mode:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
            discarded.append(path)
        finally:
            if lock:
                lock.release()
    return discarded, kept


class LockBusy(Exception):
    """Another run holds an archive's lock; the message names it."""


class ArchiveLock:
    """One run at a time verifies, renames and loads a given archive on a host.

    An exclusive flock on `.<sha256>.lock` in the staging directory; the holder writes
    its run ID, pid and start time into it, so that a run which waits in vain can say
    which run holds it. The kernel drops the lock when the holder dies, so a killed run
    never leaves a lock behind. The holder removes the file on release; a waiter that
    locked the removed file notices (its inode is no longer the path's) and tries again.
    """

    def __init__(self, staging_dir: str, sha256: str, run_id: str) -> None:
        self.path = os.path.join(staging_dir, f".{sha256}.lock")
        self.sha256, self.run_id = sha256, run_id
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False (with self.holder read) if it is not."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                self.holder = read_holder(fd)
                os.close(fd)
                return False
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # locked a file its holder had just removed: try again
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"run": self.run_id, "pid": os.getpid(),
                                      "since": int(time.time())}).encode(), 0)
            self.fd = fd
            return True

    def is_held(self) -> bool:
        """Whether another run holds the lock; looks without creating or taking it."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # also drops the lock it may just have taken
        return False

    def acquire(self, timeout: float = LOCK_TIMEOUT, poll: float = 0.25) -> None:
        """Wait up to timeout seconds; then raise LockBusy naming the holder."""
        deadline = time.monotonic() + timeout
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                raise LockBusy(busy_message(self.sha256, self.holder, timeout))
            time.sleep(poll)

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> ArchiveLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}


def busy_message(sha256: str, holder: dict, timeout: float) -> str:
    """Why a run gave up waiting for an archive's lock, and which run holds it."""
    if holder.get("run"):
        since = holder.get("since")
        started = (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since))
                   if isinstance(since, int) else "an unknown time")
        who = (f"airlift run {holder['run']} (pid {holder.get('pid', '?')} on this host, "
               f"holding it since {started})")
    else:
        who = "another airlift run (it has not yet said which)"
    return (f"archive {sha256[:12]} is being verified or loaded by {who}; gave up after "
            f"waiting {int(timeout)} s: let that run finish, then run again")


def verify_archive(path: str, size: int, sha256: str) -> str | None:
    """None when the file has this size and hash, else why not (size first: no read)."""
    actual = os.path.getsize(path)
    if actual != size:
        return f"size {actual} != expected {size} (incomplete transfer?)"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        return "sha256 does not match the manifest"
    return None


def take_over(src: str, dest: str, size: int, sha256: str) -> str | None:
    """Copy src into a new root-owned file while hashing it, then remove src.

    Used when the connection user (not root) uploaded the archive: the copy is opened
    with O_EXCL and checked as it is written, so the uploader cannot change what gets
    loaded after the check. Returns None, or why the copy is refused.
    """
    digest, copied = hashlib.sha256(), 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(src, "rb") as source, os.fdopen(fd, "wb") as target:
            while True:
                chunk = source.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                target.write(chunk)
                copied += len(chunk)
            target.flush()
            os.fsync(target.fileno())
    finally:
        os.unlink(src)
    problem = None
    if copied != size:
        problem = f"size {copied} != expected {size} (incomplete transfer?)"
    elif digest.hexdigest() != sha256:
        problem = "sha256 does not match the manifest"
    if problem:
        os.unlink(dest)
    return problem


def load_archive(engine: str, path: str) -> str:
    proc = subprocess.run([engine, "load", "--input", path], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} load failed: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout.strip()


def engine_name(ref: str) -> str:
    """The name an engine can tag for a catalog reference.

    Engines refuse to tag by digest, and a loaded archive keeps no digest: a pinned
    `name:tag@sha256:...` is tagged `name:tag`, a bare `name@sha256:...` as
    `name:sha256-<12 hex digits>` (the image runs by its ID either way).
    """
    name, _, digest = ref.partition("@")
    if not digest:
        return ref
    if ":" in name.rsplit("/", 1)[-1]:
        return name
    return f"{name}:{digest.replace(':', '-')[:19]}"


def ref_points_to(engine: str, ref: str, image_id: str) -> bool:
    proc = subprocess.run([engine, "image", "inspect", "--format", "{{.Id}}",
                           engine_name(ref)],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0 and short_id(proc.stdout.strip()) == short_id(image_id)


def tag(engine: str, image_id: str, ref: str) -> None:
    proc = subprocess.run([engine, "tag", short_id(image_id), engine_name(ref)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} tag {ref} failed: {proc.stderr.strip()}")


def containers_using(engine: str, image_id: str) -> list[str]:
    """Names of containers (running or not) made from this image."""
    proc = subprocess.run([engine, "ps", "--all", "--filter", f"ancestor={short_id(image_id)}",
                           "--format", "{{.Names}}"], capture_output=True, text=True, check=False)
    return proc.stdout.split()


def remove_image(engine: str, image_id: str) -> None:
    """Remove an image and every tag of it; never forced, so one in use stays."""
    image_id = short_id(image_id)
    proc = subprocess.run([engine, "image", "inspect", "--format", "{{json .RepoTags}}",
                           image_id], capture_output=True, text=True, check=False)
    tags = (json.loads(proc.stdout or "null") or []) if proc.returncode == 0 else []
    # Removing tag by tag works for both engines; the last one takes the image along.
    for ref in [*tags, image_id]:
        if not present_ids(engine, [image_id]):
            return
        done = subprocess.run([engine, "rmi", ref], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0 and present_ids(engine, [image_id]) and ref == image_id:
            raise RuntimeError(f"{engine} rmi {image_id} failed: {done.stderr.strip()}")


def forget_images(path: str, image_ids: list[str]) -> None:
    """Drop removed images from the state file."""
    gone = {short_id(image_id) for image_id in image_ids}

    def drop(state: dict) -> bool:
        images = state.get("images") or {}
        kept = {ref: entry for ref, entry in images.items()
                if short_id(entry["id"]) not in gone}
        state["images"] = kept
        return kept != images

    if gone:
        update_state(path, drop)


def read_state(path: str) -> dict:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def update_state(path: str, change: Callable[[dict], bool | None]) -> None:
    """Read, change (unless it answers False) and write the state file under a lock.

    Two runs recording different images at once would otherwise each write the file as
    they read it, and one record would be lost. (flock on the directory: no lock file.)
    """
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        state = read_state(path)
        if change(state) is not False:
            write_state(path, state)
    finally:
        os.close(fd)


def write_state(path: str, state: dict) -> None:
    """Atomic replace: the state file is complete or the previous one."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    # A name of this process's own: two runs recording at once never share a temp file.
    partial = f"{path}.{os.getpid()}{PARTIAL_SUFFIX}"
    with open(partial, "w") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
