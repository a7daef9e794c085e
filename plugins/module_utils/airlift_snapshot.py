# Apache-2.0
"""The rollback point of a rotation: unit files, licenses and state files of a host.

A snapshot is a directory holding copies of those files and a manifest (path, mode,
owner, sha256). It is written beside the live one and swapped in by rename, so a host
has either the old snapshot or the new one, never half of one. Restoring writes back only
the files whose content or mode differ, each through a temporary file and a rename.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil

MANIFEST = "manifest.json"
UNIT_PATTERN = "airlift-*.service"
# Licenses kept aside by airlift_license and files still being written are not state.
SKIPPED_LICENSE_PATTERNS = ("*.previous-*", "*.partial")
STATE_FILES = ("images.json", "licenses.json", "services.json")


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe(path: str) -> dict:
    info = os.stat(path)
    return {"path": path, "mode": info.st_mode & 0o7777, "uid": info.st_uid,
            "gid": info.st_gid, "sha256": sha256_file(path)}


def live_files(units_dir: str, license_dir: str, state_dir: str) -> dict[str, dict]:
    """Every file a rotation may change, keyed by a name that is stable across hosts."""
    files: dict[str, dict] = {}
    if os.path.isdir(units_dir):
        for name in sorted(os.listdir(units_dir)):
            if fnmatch.fnmatch(name, UNIT_PATTERN):
                files[f"units/{name}"] = describe(os.path.join(units_dir, name))
    if os.path.isdir(license_dir):
        for service in sorted(os.listdir(license_dir)):
            service_dir = os.path.join(license_dir, service)
            if not os.path.isdir(service_dir):
                continue
            for name in sorted(os.listdir(service_dir)):
                path = os.path.join(service_dir, name)
                if os.path.isfile(path) and not any(
                        fnmatch.fnmatch(name, pattern) for pattern in SKIPPED_LICENSE_PATTERNS):
                    files[f"licenses/{service}/{name}"] = describe(path)
    for name in STATE_FILES:
        path = os.path.join(state_dir, name)
        if os.path.isfile(path):
            files[f"state/{name}"] = describe(path)
    return files


def read_manifest(snapshot_dir: str) -> dict[str, dict] | None:
    try:
        with open(os.path.join(snapshot_dir, MANIFEST)) as handle:
            return json.load(handle)["files"]
    except (OSError, ValueError, KeyError):
        return None


def save(snapshot_dir: str, files: dict[str, dict]) -> None:
    """Write a new snapshot beside the old one, then swap the two by rename."""
    parent = os.path.dirname(snapshot_dir.rstrip("/")) or "/"
    os.makedirs(parent, mode=0o700, exist_ok=True)
    fresh, old = snapshot_dir + ".partial", snapshot_dir + ".old"
    for leftover in (fresh, old):
        shutil.rmtree(leftover, ignore_errors=True)
    os.makedirs(os.path.join(fresh, "files"), mode=0o700)
    os.chmod(fresh, 0o700)
    for key, entry in files.items():
        target = os.path.join(fresh, "files", key)
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        shutil.copyfile(entry["path"], target)
        os.chmod(target, 0o600)
    with open(os.path.join(fresh, MANIFEST), "w") as handle:
        json.dump({"files": files}, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    if os.path.exists(snapshot_dir):
        os.replace(snapshot_dir, old)
    os.replace(fresh, snapshot_dir)
    shutil.rmtree(old, ignore_errors=True)


def differing(snapshot: dict[str, dict], live: dict[str, dict]) -> list[str]:
    """Keys whose live file is missing or differs from the snapshot (content or mode)."""
    fields = ("path", "mode", "uid", "gid", "sha256")
    return sorted(key for key, entry in snapshot.items()
                  if key not in live or any(live[key][f] != entry[f] for f in fields))


def restore_file(snapshot_dir: str, key: str, entry: dict) -> None:
    """Put one file back: copy to a temporary name, fix mode and owner, rename."""
    target = entry["path"]
    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = target + ".partial"
    shutil.copyfile(os.path.join(snapshot_dir, "files", key), partial)
    os.chmod(partial, entry["mode"])
    os.chown(partial, entry["uid"], entry["gid"])
    os.replace(partial, target)


def unit_names(keys: list[str]) -> list[str]:
    """Service names (airlift-NAME.service -> NAME) among snapshot keys."""
    return sorted(key[len("units/airlift-"):-len(".service")]
                  for key in keys if key.startswith("units/"))


def image_ids_in_units(files: dict[str, dict]) -> list[str]:
    """Image IDs the installed units run (their AIRLIFT_IMAGE_ID line)."""
    ids = set()
    for key, entry in files.items():
        if not key.startswith("units/"):
            continue
        with open(entry["path"]) as handle:
            for line in handle:
                if line.startswith("Environment=AIRLIFT_IMAGE_ID="):
                    ids.add(line.split("=", 2)[2].strip())
    return sorted(ids)
