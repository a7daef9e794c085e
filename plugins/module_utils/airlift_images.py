# Apache-2.0
"""Host-side image logic shared by the airlift_image module and its tests.

The engine is asked which image IDs it has (cheap: no hashing). An archive that was
transferred is verified (size, then sha256 in one read) before it is renamed to its
final name and loaded; a leftover temporary file is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

PARTIAL_SUFFIX = ".partial"
CHUNK = 1 << 20


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


def stale_partials(staging_dir: str) -> list[str]:
    if not os.path.isdir(staging_dir):
        return []
    return sorted(os.path.join(staging_dir, name) for name in os.listdir(staging_dir)
                  if name.endswith(PARTIAL_SUFFIX))


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
    state = read_state(path)
    images = state.get("images") or {}
    kept = {ref: entry for ref, entry in images.items() if short_id(entry["id"]) not in gone}
    if kept != images:
        state["images"] = kept
        write_state(path, state)


def read_state(path: str) -> dict:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def write_state(path: str, state: dict) -> None:
    """Atomic replace: the state file is complete or the previous one."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    partial = path + PARTIAL_SUFFIX
    with open(partial, "w") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
