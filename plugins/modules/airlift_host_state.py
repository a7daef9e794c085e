#!/usr/bin/python
# Apache-2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlift_host_state
short_description: Read a host's airlift state and compare it with what is wanted, in one call
description:
  - Without O(want), returns the host's C(images.json) and C(licenses.json) (what
    distribute loaded and placed) and the airlift unit files installed, so deploy plans
    its units from one round trip. A missing state file reads as empty.
  - With O(want) (the converged fast path; the C(airlift_host_state) action plugin builds
    it on the controller from the bundle manifest, the inventory and the unit and
    front-door templates rendered as deploy would render them), it also observes in one
    pass the engine's image IDs, the license files' sha256, the unit and configuration
    files' sha256 and modes, C(services.json), the folders deploy creates, and the units'
    active and enabled states, and returns every difference. Images are compared by ID,
    never hashed.
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
  engine:
    description: Container engine asked for its image IDs (only with O(want)).
    type: str
    choices: [podman, docker]
    default: podman
  want:
    description:
      - "What the host should have. Keys (each optional): C(images) (ref, id),
        C(licenses) (service, file, sha256), C(files) (path, sha256, mode, area),
        C(json_files) (path, content, area), C(dirs) (path, uid, mode, area),
        C(units) (name, area; active and enabled), C(absent) (path, area),
        C(keep_units) (installed C(airlift-*.service) units that are not stale besides
        C(units)), C(leftovers) (dir, suffix, area; files a killed transfer left),
        C(plan_errors) (area, subject; what the controller could not plan, so that
        role's own tasks run and name the fix). Each is a list of dicts with those keys."
      - C(area) is the role that repairs a difference (distribute, deploy, frontdoor).
    type: dict
author:
  - airlift developers
"""

EXAMPLES = r"""
- name: Read what distribute recorded and which units are installed
  airlift_host_state:
  register: host_state

- name: Compare the host with what the bundle and inventory want (the action plugin builds want)
  airlift_host_state:
    manifest: "{{ bundle.manifest }}"
  register: drift
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
differences:
  description:
    - Every way the host differs from O(want), each a dict with C(area) (the role whose
      tasks repair it - distribute, deploy or frontdoor), C(kind) (image_missing,
      image_unrecorded, license_differs, license_unrecorded, file_missing, file_differs,
      mode_differs, record_differs, dir_missing, dir_uid_differs, dir_mode_differs,
      unit_inactive, unit_disabled, unit_stale, present, leftover, plan_error),
      C(subject) (image reference, path or unit), C(want) and C(have). Empty on a converged host.
  returned: when want is given
  type: list
  elements: dict
  sample:
    - area: deploy
      kind: unit_inactive
      subject: airlift-read.service
      want: active
      have: inactive
areas:
  description: Per role (distribute, deploy, frontdoor), whether it has work on this host.
  returned: when want is given
  type: dict
  sample: {distribute: false, deploy: true, frontdoor: false}
converged:
  description: True when there is no difference.
  returned: when want is given
  type: bool
summary:
  description: One line per difference.
  returned: when want is given
  type: list
  elements: str
"""

import fnmatch
import os

from ansible.module_utils import airlift_layout as layout
from ansible.module_utils.airlift_drift import areas, compare, observe, summary
from ansible.module_utils.airlift_images import read_state
from ansible.module_utils.basic import AnsibleModule


def unit_states(module: AnsibleModule, names: list[str]) -> dict[str, dict[str, str]]:
    """ActiveState and UnitFileState of every named unit, with one systemctl call."""
    if not names:
        return {}
    rc, out, err = module.run_command(
        ["systemctl", "show", "--property=Id,ActiveState,UnitFileState", "--", *names])
    if rc != 0:
        module.fail_json(msg=f"systemctl show failed: {err.strip()}")
    states: dict[str, dict[str, str]] = {}
    for name, block in zip(names, out.strip().split("\n\n"), strict=False):
        values = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        states[name] = values
    return states


def engine_ids(module: AnsibleModule, engine: str) -> list[str]:
    """Every image ID the engine has (a listing, no image is read)."""
    rc, out, err = module.run_command([engine, "images", "--no-trunc", "--format", "{{.ID}}"])
    if rc != 0:
        module.fail_json(msg=f"{engine} images failed: {err.strip()}")
    return out.split()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state_dir": {"type": "path", "default": layout.STATE_DIR},
            "unit_dir": {"type": "path", "default": layout.UNIT_DIR},
            "engine": {"type": "str", "choices": ["podman", "docker"], "default": "podman"},
            "want": {"type": "dict"},
        },
        supports_check_mode=True,
    )
    state_dir, unit_dir = module.params["state_dir"], module.params["unit_dir"]
    try:
        names = sorted(name for name in os.listdir(unit_dir)
                       if fnmatch.fnmatch(name, layout.UNIT_GLOB))
    except FileNotFoundError:
        names = []
    state = {"images": read_state(os.path.join(state_dir, "images.json")),
             "licenses": read_state(os.path.join(state_dir, "licenses.json"))}
    result = {"changed": False, **state,
              "unit_files": [os.path.join(unit_dir, name) for name in names]}
    want = module.params["want"]
    if want is not None:
        units = [unit["name"] for unit in want.get("units", [])]
        seen = observe(want, engine_ids(module, module.params["engine"])
                       if want.get("images") else [],
                       unit_states(module, units), names, state)
        found = compare(want, seen)
        result.update(differences=found, areas=areas(found), converged=not found,
                      summary=summary(found))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
