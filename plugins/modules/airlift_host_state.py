#!/usr/bin/python
# Apache-2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlift_host_state
short_description: Read what distribute recorded and which airlift units are installed, in one call
description:
  - Returns the host's C(images.json) and C(licenses.json) (what distribute loaded and
    placed) and the airlift unit files installed, so deploy plans its units from one
    round trip instead of one per file. A missing state file reads as empty; deploy
    then names the playbook to run first.
  - Reads only; check mode runs it in full.
version_added: "0.1.0"
options:
  state_dir:
    description: Directory of distribute's state files.
    type: path
    default: /var/lib/airlift/state
  unit_dir:
    description: Directory of the installed systemd units.
    type: path
    default: /etc/systemd/system
author:
  - airlift developers
"""

EXAMPLES = r"""
- name: Read what distribute recorded and which units are installed
  airlift_host_state:
  register: host_state
"""

RETURN = r"""
images:
  description: Contents of images.json (empty when absent).
  returned: always
  type: dict
licenses:
  description: Contents of licenses.json (empty when absent).
  returned: always
  type: dict
unit_files:
  description: Paths of the installed airlift-*.service units, sorted.
  returned: always
  type: list
  elements: str
"""

import fnmatch
import os

from ansible.module_utils import airlift_layout as layout
from ansible.module_utils.airlift_images import read_state
from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state_dir": {"type": "path", "default": layout.STATE_DIR},
            "unit_dir": {"type": "path", "default": layout.UNIT_DIR},
        },
        supports_check_mode=True,
    )
    state_dir, unit_dir = module.params["state_dir"], module.params["unit_dir"]
    try:
        names = os.listdir(unit_dir)
    except FileNotFoundError:
        names = []
    module.exit_json(
        changed=False,
        images=read_state(os.path.join(state_dir, "images.json")),
        licenses=read_state(os.path.join(state_dir, "licenses.json")),
        unit_files=sorted(os.path.join(unit_dir, name) for name in names
                          if fnmatch.fnmatch(name, layout.UNIT_GLOB)),
    )


if __name__ == "__main__":
    main()
