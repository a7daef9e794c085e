# Apache-2.0
"""Host-side usage collection shared by the airlift_usage module and its tests.

Usage is read only through the containers' own endpoints; the Output directory is
opaque: it is archived as it is (read-only, never modified) so the raw records travel
with the totals as evidence. The archive is deterministic (sorted members, no gzip
timestamp), so collecting an unchanged directory twice gives the same sha256.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
import os
import socket
import tarfile
import time
import urllib.error
import urllib.request

from ansible.module_utils.airlift_layout import PARTIAL_SUFFIX

# A copy left in the archive folder by a collection killed before it fetched (or a
# half-written one) is removed by the next collection once it is this old: no running
# collection keeps a copy waiting that long, and the Output directory it came from stays.
LEFTOVER_AFTER_SECONDS = 6 * 3600
REMOVED = "removed"  # collected_via of an Output directory no current service writes to


def month_window(count: int, today: dt.date | None = None) -> list[str]:
    """This month and the count-1 before it, newest first, as YYYY-MM."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    year, month = today.year, today.month
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out


def month_path(month: str) -> str:
    """YYYY-MM -> the endpoint's /records/usage-logs/MM/YYYY."""
    year, number = month.split("-")
    return f"/records/usage-logs/{number}/{year}"


def get_json(port: int, path: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as reply:
        return json.loads(reply.read().decode())


def is_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=3) as reply:
            return reply.status == 200
    except (OSError, urllib.error.URLError):
        return False


def wait_ready(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_ready(port):
            return True
        time.sleep(1)
    return False


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def query(port: int, months: list[str]) -> dict:
    """All-time totals and each month's, straight from the service's endpoints."""
    return {"all_time": get_json(port, "/records/usage-logs/"),
            "months": {month: get_json(port, month_path(month)) for month in months}}


def archive_dir(source: str, dest_dir: str) -> dict:
    """Archive a directory to DEST_DIR/<sha256>.tar.gz; return path, sha256, size.

    Written to a temporary name while hashed, renamed when complete: a file with the
    final name is always a whole archive.
    """
    os.makedirs(dest_dir, mode=0o700, exist_ok=True)
    partial = os.path.join(dest_dir, f".{os.getpid()}-{time.monotonic_ns()}.tar.gz"
                           + PARTIAL_SUFFIX)
    # No name and no time in the gzip header: same content, same bytes.
    with open(partial, "wb") as raw, \
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted_tree(source):
            tar.add(path, arcname=os.path.relpath(path, os.path.dirname(source)),
                    recursive=False)
    with open(partial, "rb+") as written:
        os.fsync(written.fileno())
    digest = hashlib.sha256()
    with open(partial, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    sha256 = digest.hexdigest()
    final = os.path.join(dest_dir, f"{sha256}.tar.gz")
    os.replace(partial, final)
    return {"path": final, "sha256": sha256, "size": os.path.getsize(final)}


def remove_leftovers(dest_dir: str, older_than: float = LEFTOVER_AFTER_SECONDS,
                     now: float | None = None) -> list[str]:
    """Remove archive copies (whole or partial) that a killed collection left unfetched.

    Only files this module names (`<sha256>.tar.gz`, `.<pid>-<ns>.tar.gz.partial`) and only
    once older than `older_than` seconds, so another collection's copy waiting to be
    fetched is never taken. Returns the paths removed.
    """
    now = time.time() if now is None else now
    removed = []
    try:
        names = os.listdir(dest_dir)
    except FileNotFoundError:
        return removed
    for name in sorted(names):
        if not (name.endswith(".tar.gz") or name.endswith(".tar.gz" + PARTIAL_SUFFIX)):
            continue
        path = os.path.join(dest_dir, name)
        with contextlib.suppress(FileNotFoundError):
            if os.path.isfile(path) and now - os.lstat(path).st_mtime > older_than:
                os.unlink(path)
                removed.append(path)
    return removed


def archived(source: str, dest_dir: str) -> dict:
    """archive_dir's result as an entry's `archive`: its path in the run's usage folder
    once fetched (raw/<sha256>.tar.gz), sha256, size and where it waits on the host."""
    archive = archive_dir(source, dest_dir)
    return {"path": f"raw/{archive['sha256']}.tar.gz", "sha256": archive["sha256"],
            "size": archive["size"], "host_path": archive["path"]}


def sorted_tree(root: str) -> list[str]:
    """The directory and everything under it, in a stable order."""
    out = [root]
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        out.extend(os.path.join(folder, name) for name in dirs)
        out.extend(os.path.join(folder, name) for name in sorted(files))
    return sorted(out)


def _same_path(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def orphan_output_dirs(output_root: str, services: list[dict],
                       keep_out: list[str]) -> list[tuple[str, str]]:
    """(name, path) of each directory under OUTPUT_ROOT that no current service writes to.

    A service taken out of the inventory keeps its Output directory (records are never
    deleted), but services.json no longer lists it, so without this its records would
    never be collected again. KEEP_OUT are directories archived otherwise (the front
    door's log). Symbolic links are not followed: only what airlift created is evidence.
    """
    try:
        with os.scandir(output_root) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except FileNotFoundError:
        return []
    current = {_same_path(service["output_dir"]) for service in services
               if service.get("output_dir")}
    current.update(_same_path(path) for path in keep_out)
    # lost+found: the output root may be a filesystem of its own (evidence retention).
    return [(entry.name, entry.path) for entry in entries
            if entry.is_dir(follow_symlinks=False) and entry.name != "lost+found"
            and _same_path(entry.path) not in current]


def collect_removed(output_root: str, services: list[dict], keep_out: list[str],
                    archive_root: str, check_mode: bool = False) -> list[dict]:
    """A `removed` entry per orphaned Output directory, archived like a service's.

    No totals are asked for: the container may be gone, and an entry without figures is
    never read as zero. A name a current service also has gets a suffix, so the two
    entries stay apart in the report.
    """
    names = {service.get("name") for service in services}
    try:
        # The archives' own folder is never one to archive, wherever it was put.
        orphans = orphan_output_dirs(output_root, services, [*keep_out, archive_root])
    except OSError as exc:  # said in the report, never skipped in silence
        return [{"name": "removed services", "collected_via": REMOVED,
                 "error": f"could not list {output_root}: {exc}"}]
    out = []
    for name, path in orphans:
        entry: dict = {"name": name if name not in names else f"{name} (removed)",
                       "collected_via": REMOVED, "output_dir": path}
        if not check_mode:
            try:
                entry["archive"] = archived(path, archive_root)
            except OSError as exc:
                entry["error"] = f"could not archive {path}: {exc}"
        out.append(entry)
    return out
