#!/usr/bin/python
# Apache-2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlift_license
short_description: Place license files for disconnected containers, root-only, in one call
description:
  - Makes C(dir) a root-owned directory (0711) with one 0700 directory per service,
    owned by the service's user where the container needs that (speech runs non-root).
  - Writes each license (0600) only when its sha256 differs; a replaced license is
    renamed aside (C(NAME.previous-TIMESTAMP)), never deleted, so the one in service
    can be restored. Writes go to a temporary name and are renamed.
  - Records the sha256 of every placed license in a state file. Supports check mode.
version_added: "0.1.0"
options:
  dir:
    description: Directory holding one license directory per service.
    type: path
    default: /var/lib/airlift/licenses
  licenses:
    description: Licenses to place.
    type: list
    elements: dict
    required: true
    suboptions:
      service:
        description: Service instance the license serves (its directory name).
        type: str
        required: true
      name:
        description: File name of the license.
        type: str
        required: true
      content:
        description: The license file's content, base64.
        type: str
        required: true
      sha256:
        description: sha256 of the content, from the bundle's manifest.
        type: str
        required: true
      owner:
        description: uid that must own the license (the container's user).
        type: int
  state_file:
    description: JSON file recording the licenses in service.
    type: path
    default: /var/lib/airlift/state/licenses.json
author:
  - airlift developers
"""

EXAMPLES = r"""
- name: Place the licenses of this host's services
  airlift_license:
    licenses:
      - service: sentiment
        name: sentiment.license
        content: "{{ lookup('ansible.builtin.file', 'sentiment.license') | b64encode }}"
        sha256: 8dca70c8bea7fcc87b6e423f8bdd71300eabf9b86664a3bf5f16baf7d3d5c996
"""

RETURN = r"""
placed:
  description: Service/file pairs written (or that would be, in check mode).
  returned: always
  type: list
kept_aside:
  description: Paths the replaced licenses were moved to.
  returned: always
  type: list
"""

import base64
import hashlib
import os
import time

from ansible.module_utils import airlift_layout as layout
from ansible.module_utils.airlift_images import read_state, write_state
from ansible.module_utils.basic import AnsibleModule


def sha256_of(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def ensure_dir(module: AnsibleModule, path: str, mode: int, owner: int) -> bool:
    """Create or fix a directory; True when something changed."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if not module.check_mode:
            os.makedirs(path, mode=mode, exist_ok=True)
            os.chmod(path, mode)
            os.chown(path, owner, owner)
        return True
    if (info.st_mode & 0o7777, info.st_uid, info.st_gid) == (mode, owner, owner):
        return False
    if not module.check_mode:
        os.chmod(path, mode)
        os.chown(path, owner, owner)
    return True


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dir": {"type": "path", "default": layout.LICENSE_DIR},
            "licenses": {"type": "list", "elements": "dict", "required": True, "options": {
                "service": {"type": "str", "required": True},
                "name": {"type": "str", "required": True},
                # Only the content is masked: service and file names stay readable.
                "content": {"type": "str", "required": True, "no_log": True},
                "sha256": {"type": "str", "required": True},
                "owner": {"type": "int"},
            }},
            "state_file": {"type": "path", "default": layout.LICENSES_STATE},
        },
        supports_check_mode=True,
    )
    root, licenses = module.params["dir"], module.params["licenses"]
    changed = ensure_dir(module, root, 0o711, 0)
    placed, kept_aside, state = [], [], {}
    for lic in licenses:
        owner = int(lic.get("owner") or 0)
        service_dir = os.path.join(root, lic["service"])
        changed |= ensure_dir(module, service_dir, 0o700, owner)
        target = os.path.join(service_dir, os.path.basename(lic["name"]))
        state[lic["service"]] = {"file": target, "sha256": lic["sha256"]}
        current = sha256_of(target)
        if current == lic["sha256"]:
            info = os.stat(target)
            if (info.st_mode & 0o777, info.st_uid) != (0o600, owner):
                changed = True
                if not module.check_mode:
                    os.chmod(target, 0o600)
                    os.chown(target, owner, owner)
            continue
        data = base64.b64decode(lic["content"])
        if hashlib.sha256(data).hexdigest() != lic["sha256"]:
            module.fail_json(msg=f"license {lic['name']} for {lic['service']} does not match "
                                 "its sha256 from the manifest: refusing to place it")
        placed.append(f"{lic['service']}/{os.path.basename(target)}")
        changed = True
        if module.check_mode:
            continue
        # New file complete first, old one linked aside, then one rename: the service
        # always has a whole license, and the previous one is kept.
        partial = target + ".partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chown(partial, owner, owner)
        if current is not None:
            aside = f"{target}.previous-{time.strftime('%Y%m%dT%H%M%S')}"
            os.link(target, aside)
            kept_aside.append(aside)
        os.replace(partial, target)
    if read_state(module.params["state_file"]) != {"licenses": state}:
        changed = True
        if not module.check_mode:
            write_state(module.params["state_file"], {"licenses": state})
    module.exit_json(changed=changed, placed=placed, kept_aside=kept_aside)


if __name__ == "__main__":
    main()
