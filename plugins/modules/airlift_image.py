#!/usr/bin/python
# Apache-2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlift_image
short_description: Load container images from verified archives, with a truthful changed
description:
  - C(state=query) asks the engine which of the given image IDs it has (no hashing),
    discards temporary files left by an interrupted transfer, and reports the free space
    of the staging directory and of each of C(disk_paths). A temporary file is discarded
    only when no run can still be using it - its archive's lock is free, no process on
    the host has it open and nothing has changed it for C(stale_after) seconds - so a
    transfer that another run (or the orphaned worker of a killed one) is still writing
    is kept.
  - C(state=loaded) takes an archive already on the host (C(src)), checks its size and
    sha256 in one read, loads it, checks that the engine now has the manifest's image
    ID, tags it, and removes the archive, or with C(keep_archive) renames it to its
    final name C(<sha256>.tar). When the image ID is present already, nothing is read or
    loaded.
  - Runs may overlap on a host. Each transfer has its own temporary name, and one run at
    a time verifies and loads a given archive - a lock on C(.<sha256>.lock) in the
    staging directory, held from the check of the image ID to the record. A run that
    finds the lock taken waits up to C(lock_timeout) seconds, then fails naming the run
    that holds it. A run that got the lock after another one loaded the image discards
    its own copy and changes nothing. A run never removes a file it did not write.
  - The airlift_image action plugin (same name) transfers archives from the bundle and
    calls this module; the module can also be used alone for archives carried to a host.
  - With C(bundle_dir), the action plugin refuses before any transfer when the staging
    directory or one of C(disk_paths) has less free space than the missing images need
    (each archive and its loaded image, times C(disk_headroom), default 1.5), which is
    the rule of preflight's host.disk check.
  - Records loaded images in a state file on the host.
  - C(state=absent) removes the given image IDs with all their tags, unless a container
    still uses one (never forced), and drops them from the state file; a rotation calls
    it for the images it replaced, once the new ones answer /ready.
version_added: "0.1.0"
options:
  state:
    description: C(query) reports what is present; C(loaded) makes one image present;
      C(absent) removes images no container uses.
    type: str
    choices: [query, loaded, absent]
    default: loaded
  engine:
    description: Container engine.
    type: str
    choices: [podman, docker]
    default: podman
  images:
    description: Images to ask about (C(state=query)), each with C(id) and C(ref); or
      to remove (C(state=absent)), each with C(id).
    type: list
    elements: dict
    default: []
  image:
    description: The image to load (C(state=loaded)) - C(id), C(ref), C(sha256), C(size).
    type: dict
  src:
    description: Path of the archive on the host (C(state=loaded)).
    type: path
  staging_dir:
    description: Where archives are kept while they are verified and loaded.
    type: path
    default: /var/lib/airlift/staging
  run_id:
    description: Names this run in temporary files and in the lock it holds (the
      action plugin passes the controller's pid and a random suffix); defaults to the
      module's pid.
    type: str
  lock_timeout:
    description: Seconds C(state=loaded) waits for another run that holds the archive's
      lock before failing with that run's ID, pid and start time.
    type: int
    default: 600
  stale_after:
    description: Seconds after its last change that C(state=query) takes a temporary
      file nobody holds or has open for a dead transfer's, and discards it.
    type: int
    default: 120
  disk_paths:
    description: Further directories whose free space C(state=query) reports, such as
      the engine's image store (the role passes C(airlift_preflight_disk_paths)).
    type: list
    elements: path
    default: []
  take_over:
    description: C(src) was uploaded by a non-root connection user - copy it into the
      root-only staging directory while hashing it (the uploader cannot change what is
      loaded), remove it, and load the copy.
    type: bool
    default: false
  keep_archive:
    description: Keep airlift's transferred archive after a successful load (an archive
      given by C(src) that airlift did not transfer is never moved or removed).
    type: bool
    default: false
  state_file:
    description: JSON file recording the images airlift loaded.
    type: path
    default: /var/lib/airlift/state/images.json
author:
  - airlift developers
"""

EXAMPLES = r"""
- name: Remove images a rotation replaced
  airlift_image:
    state: absent
    images:
      - id: sha256:0f143e5d321b371aea333360db3697a2d8e1d4eb72cff1a127c1ec9d13f7d7cc

- name: Load an archive carried to the host by hand
  airlift_image:
    src: /media/usb/sentiment.tar
    keep_archive: true
    image:
      ref: mcr.microsoft.com/azure-cognitive-services/textanalytics/sentiment:latest
      id: sha256:0f143e5d321b371aea333360db3697a2d8e1d4eb72cff1a127c1ec9d13f7d7cc
      sha256: 5d9c0a3f2e1b4c6d8e7f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d
      size: 112611840
"""

RETURN = r"""
present:
  description: Image IDs the engine has (query).
  returned: state=query
  type: list
missing:
  description: Images the engine lacks (query).
  returned: state=query
  type: list
unrecorded:
  description: Images the engine has that the state file does not record (query).
  returned: state=query
  type: list
discarded:
  description: Temporary files of interrupted transfers that were removed (query).
  returned: state=query
  type: list
kept:
  description: Temporary files another run may still be writing or loading, left alone
    (query); a later run discards them once they are stale.
  returned: state=query
  type: list
free_bytes:
  description: Free space where archives are staged (query).
  returned: state=query
  type: int
free_mb:
  description: Free MiB of the staging directory and of each of C(disk_paths), measured
    like airlift_host_facts' disk_free_mb (query).
  returned: state=query
  type: dict
loaded:
  description: Whether an archive was loaded by this call.
  returned: state=loaded
  type: bool
removed:
  description: Image IDs removed (or that would be, in check mode).
  returned: state=absent
  type: list
in_use:
  description: Image IDs kept because a container still uses them, with its names.
  returned: state=absent
  type: dict
"""

import contextlib
import os
import shutil
import time

from ansible.module_utils import airlift_layout as layout
from ansible.module_utils.airlift_hostinfo import disk_free_mb
from ansible.module_utils.airlift_images import (
    LOAD,
    LOCK_TIMEOUT,
    NOTHING,
    PARTIAL_SUFFIX,
    STALE_AFTER,
    TAG,
    ArchiveLock,
    LockBusy,
    containers_using,
    discard_stale_partials,
    forget_images,
    is_recorded,
    load_action,
    load_archive,
    partial_name,
    present_ids,
    read_state,
    ref_points_to,
    remove_image,
    short_id,
    split_query,
    tag,
    take_over,
    update_state,
    verify_archive,
)
from ansible.module_utils.basic import AnsibleModule


def query(module: AnsibleModule) -> None:
    params = module.params
    images = params["images"]
    present = present_ids(params["engine"], [image["id"] for image in images])
    discarded, kept = discard_stale_partials(params["staging_dir"], run_id(params),
                                             check_mode=module.check_mode,
                                             grace=params["stale_after"])
    if not module.check_mode:
        os.makedirs(params["staging_dir"], mode=0o700, exist_ok=True)
    staging = params["staging_dir"]
    while not os.path.exists(staging):
        staging = os.path.dirname(staging)
    recorded = read_state(params["state_file"]).get("images") or {}
    missing, unrecorded = split_query(images, present, recorded)
    module.exit_json(changed=bool(discarded),
                     present=sorted(present), discarded=discarded, kept=kept,
                     free_bytes=shutil.disk_usage(staging).free,
                     # Preflight's measure, so that distribute applies preflight's rule.
                     free_mb={path: disk_free_mb(path)
                              for path in [params["staging_dir"], *params["disk_paths"]]},
                     missing=missing, unrecorded=unrecorded)


def run_id(params: dict) -> str:
    return params.get("run_id") or f"pid{os.getpid()}"


def is_ours(src: str | None) -> bool:
    """Only airlift's own transfers (*.partial) are removed; an archive an operator
    carried to the host is loaded where it is and left alone."""
    return bool(src) and src.endswith(PARTIAL_SUFFIX)


def discard(path: str | None) -> None:
    """Remove this run's own temporary file (never another run's, never a final name)."""
    if is_ours(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def decide(engine: str, image: dict, state_file: str) -> str:
    present = bool(present_ids(engine, [image["id"]]))
    tagged = present and ref_points_to(engine, image["ref"], image["id"])
    recorded = is_recorded(read_state(state_file).get("images") or {}, image)
    return load_action(present, tagged, recorded)


def loaded(module: AnsibleModule) -> None:
    params = module.params
    image, src, engine = params["image"], params["src"], params["engine"]
    for key in ("id", "ref", "sha256", "size"):
        if key not in (image or {}):
            module.fail_json(msg=f"image needs {key}: give id, ref, sha256 and size")
    action = decide(engine, image, params["state_file"])
    if action != LOAD and not module.check_mode:
        discard(src)  # a transfer made needless is not left behind
    if module.check_mode and action != NOTHING:
        module.exit_json(changed=True, loaded=False,
                         msg="would load the archive" if action == LOAD
                         else f"would {action} {image['ref']}")
    if action == LOAD:
        if not src or not os.path.exists(src):
            module.fail_json(msg=f"archive {src} not found on the host")
        os.makedirs(params["staging_dir"], mode=0o700, exist_ok=True)
        # Held open until the module ends: while this run waits for the lock, its copy
        # is "open on the host", so a third run's cleanup (which may find the lock free
        # between its holder's release and this run's next try) never takes it.
        held = os.open(src, os.O_RDONLY)
        try:
            locked_load(module, src)
        finally:
            os.close(held)
    finish(module, action)


def locked_load(module: AnsibleModule, src: str) -> None:
    """Wait for the archive's lock, then load unless another run loaded it meanwhile."""
    params = module.params
    image, engine = params["image"], params["engine"]
    lock = ArchiveLock(params["staging_dir"], image["sha256"], run_id(params))
    try:
        lock.acquire(params["lock_timeout"])
    except LockBusy as exc:
        discard(src)
        module.fail_json(msg=str(exc))
    with lock:
        # Another run may have loaded it while this one waited: ask again.
        action = decide(engine, image, params["state_file"])
        if action == LOAD:
            output = load_locked(module, src)
            module.exit_json(changed=True, loaded=True, id=short_id(image["id"]),
                             msg=output)
        discard(src)
        finish(module, action)


def finish(module: AnsibleModule, action: str) -> None:
    """Tag and record an image that is present (NOTHING, RECORD or TAG)."""
    params = module.params
    image = params["image"]
    if action == NOTHING:
        module.exit_json(changed=False, loaded=False, msg="image already present")
    if action == TAG:
        # Present under another name (or a tag failed last time): tag and record it.
        try:
            tag(params["engine"], image["id"], image["ref"])
        except RuntimeError as exc:
            module.fail_json(msg=str(exc))
        record(params["state_file"], image)
        module.exit_json(changed=True, loaded=False, msg=f"tagged {image['ref']}")
    record(params["state_file"], image)
    module.exit_json(changed=True, loaded=False, msg="recorded the present image")


def load_locked(module: AnsibleModule, src: str) -> str:
    """Verify, load, check, tag and record, holding the archive's lock.

    The archive is loaded from this run's temporary name, and renamed to its final name
    only after a good load with keep_archive: a file with the final name is always a
    complete, loaded archive, and no run removes one. Any failure removes this run's
    own temporary file (with the reason) and nothing else.
    """
    params = module.params
    image, engine = params["image"], params["engine"]
    archive = src
    try:
        if params["take_over"]:
            archive = os.path.join(params["staging_dir"],
                                   partial_name(image["sha256"], run_id(params)))
            problem = take_over(src, archive, int(image["size"]), image["sha256"])
        else:
            problem = verify_archive(src, int(image["size"]), image["sha256"])
        if problem:
            discard(archive)
            module.fail_json(msg=f"refusing to load {src}: {problem}")
        output = load_archive(engine, archive)
        if not present_ids(engine, [image["id"]]):
            raise RuntimeError(f"after loading, {engine} has no image {image['id']}: the "
                               f"archive holds another image ({output})")
        tag(engine, image["id"], image["ref"])
        if is_ours(archive):
            if params["keep_archive"]:
                os.replace(archive, os.path.join(params["staging_dir"],
                                                 f"{image['sha256']}.tar"))
            else:
                os.unlink(archive)
        record(params["state_file"], image)
    except (OSError, RuntimeError) as exc:
        discard(archive)
        module.fail_json(msg=f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError)
                         else str(exc))
    return output


def absent(module: AnsibleModule) -> None:
    params = module.params
    engine = params["engine"]
    wanted = [image["id"] for image in params["images"]]
    present = present_ids(engine, wanted)
    removed, in_use = [], {}
    for image_id in sorted(present):
        users = containers_using(engine, image_id)
        if users:
            in_use[image_id] = users
            continue
        removed.append(image_id)
        if not module.check_mode:
            try:
                remove_image(engine, image_id)
            except RuntimeError as exc:
                module.fail_json(msg=str(exc), removed=removed[:-1])
    if not module.check_mode:
        forget_images(params["state_file"], removed)
    module.exit_json(changed=bool(removed), removed=removed, in_use=in_use)


def record(state_file: str, image: dict) -> None:
    def add(state: dict) -> None:
        state.setdefault("images", {})[image["ref"]] = {
            "id": image["id"], "sha256": image["sha256"], "loaded_at": int(time.time())}

    update_state(state_file, add)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["query", "loaded", "absent"],
                      "default": "loaded"},
            "engine": {"type": "str", "choices": ["podman", "docker"], "default": "podman"},
            "images": {"type": "list", "elements": "dict", "default": []},
            "image": {"type": "dict"},
            "src": {"type": "path"},
            "staging_dir": {"type": "path", "default": layout.STAGING_DIR},
            "run_id": {"type": "str"},
            "lock_timeout": {"type": "int", "default": LOCK_TIMEOUT},
            "stale_after": {"type": "int", "default": STALE_AFTER},
            "disk_paths": {"type": "list", "elements": "path", "default": []},
            "keep_archive": {"type": "bool", "default": False},
            "take_over": {"type": "bool", "default": False},
            "state_file": {"type": "path", "default": layout.IMAGES_STATE},
        },
        required_if=[("state", "loaded", ("image",))],
        supports_check_mode=True,
    )
    if module.params["state"] == "query":
        query(module)
    if module.params["state"] == "absent":
        absent(module)
    loaded(module)


if __name__ == "__main__":
    main()
