#!/usr/bin/python
# Apache-2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlift_snapshot
short_description: Save or restore a host's rollback point (units, licenses, state files)
description:
  - C(state=saved) copies the airlift unit files, the licenses in service and the state
    files (images and licenses loaded) into C(dir), with a manifest of paths, modes,
    owners and sha256. The new snapshot is written beside the old one and swapped in by
    rename. Nothing changes when the snapshot already matches the host.
  - C(state=restored) writes back every file that differs from the snapshot (through a
    temporary file and a rename) and points each image reference of the restored state
    file at its image ID again, so the previous image and license run again after a
    restart. Unit files that the snapshot does not have are reported, not removed.
  - Licenses kept aside by airlift_license (C(*.previous-*)) are left alone.
  - Supports check mode.
version_added: "0.1.0"
options:
  state:
    description: C(saved) records the host's current files; C(restored) puts them back.
    type: str
    choices: [saved, restored]
    default: saved
  dir:
    description: Directory of the snapshot (root-only).
    type: path
    default: /var/lib/airlift/rollback
  units_dir:
    description: Where the airlift-*.service units are installed.
    type: path
    default: /etc/systemd/system
  license_dir:
    description: Directory with one license directory per service.
    type: path
    default: /var/lib/airlift/licenses
  state_dir:
    description: Directory of the images.json, licenses.json and services.json state files.
    type: path
    default: /var/lib/airlift/state
  engine:
    description: Container engine whose image tags are restored.
    type: str
    choices: [podman, docker]
    default: podman
author:
  - airlift developers
"""

EXAMPLES = r"""
- name: Keep the rollback point before a rotation
  airlift_snapshot:
    state: saved
  register: snapshot

- name: Put the previous units, licenses and image tags back
  airlift_snapshot:
    state: restored
"""

RETURN = r"""
image_ids:
  description: Image IDs the installed units run (state=saved), before any change.
  returned: state=saved
  type: list
restored:
  description: Snapshot keys (units/..., licenses/..., state/...) written back.
  returned: state=restored
  type: list
restored_units:
  description: Services whose unit file was written back (restart these).
  returned: state=restored
  type: list
extra_units:
  description: Services with a unit file the snapshot does not have.
  returned: state=restored
  type: list
retagged:
  description: Image references pointed back at their previous image ID.
  returned: state=restored
  type: list
"""

import os

from ansible.module_utils import airlift_layout as layout
from ansible.module_utils.airlift_images import present_ids, read_state, ref_points_to, tag
from ansible.module_utils.airlift_snapshot import (
    differing,
    image_ids_in_units,
    live_files,
    read_manifest,
    restore_file,
    save,
    unit_names,
)
from ansible.module_utils.basic import AnsibleModule


def saved(module: AnsibleModule, live: dict) -> None:
    snapshot = read_manifest(module.params["dir"])
    changed = snapshot != live
    if changed and not module.check_mode:
        save(module.params["dir"], live)
    module.exit_json(changed=changed, image_ids=image_ids_in_units(live))


def restored(module: AnsibleModule, live: dict) -> None:
    params = module.params
    snapshot = read_manifest(params["dir"])
    if snapshot is None:
        module.fail_json(msg=f"no snapshot in {params['dir']}: nothing to roll back to")
    keys = differing(snapshot, live)
    if not module.check_mode:
        for key in keys:
            restore_file(params["dir"], key, snapshot[key])
    retagged = []
    images_state = snapshot.get("state/images.json")
    images = (read_state(os.path.join(params["dir"], "files", "state/images.json"))
              if images_state else {}).get("images") or {}
    for ref, entry in sorted(images.items()):
        engine, image_id = params["engine"], entry["id"]
        if present_ids(engine, [image_id]) and not ref_points_to(engine, ref, image_id):
            retagged.append(ref)
            if not module.check_mode:
                try:
                    tag(engine, image_id, ref)
                except RuntimeError as exc:
                    module.fail_json(msg=str(exc), restored=keys)
    extra = sorted(set(unit_names(list(live))) - set(unit_names(list(snapshot))))
    module.exit_json(changed=bool(keys or retagged), restored=keys,
                     restored_units=unit_names(keys), extra_units=extra, retagged=retagged)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["saved", "restored"], "default": "saved"},
            "dir": {"type": "path", "default": layout.ROLLBACK_DIR},
            "units_dir": {"type": "path", "default": layout.UNIT_DIR},
            "license_dir": {"type": "path", "default": layout.LICENSE_DIR},
            "state_dir": {"type": "path", "default": layout.STATE_DIR},
            "engine": {"type": "str", "choices": ["podman", "docker"], "default": "podman"},
        },
        supports_check_mode=True,
    )
    params = module.params
    live = live_files(params["units_dir"], params["license_dir"], params["state_dir"])
    if params["state"] == "saved":
        saved(module, live)
    restored(module, live)


if __name__ == "__main__":
    main()
