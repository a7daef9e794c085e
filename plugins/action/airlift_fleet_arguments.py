# Apache-2.0
"""Validate roles' argument specs against every host's variables in one task."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlift_fleet_arguments
short_description: Validate the argument specs of roles for every host of the play at once
description:
  - Runs on the controller only (an action plugin with no module part), once per run
    (C(run_once)). Ansible validates a role's argument spec as one task per host and per
    role entry, which costs a task per host on the controller's main process; this does
    the same validation for all hosts in one task and fails listing every host's problems.
  - A host's value is its own (inventory, extra vars, facts) when it has one, else the
    default of the play's roles (templated once).
options:
  hosts:
    description: Hosts whose variables are validated (ansible_play_hosts_all).
    type: list
    elements: str
    required: true
  roles:
    description:
      - Roles (under the project's roles/ folder) whose spec is validated, the C(main)
        entry point, or C(shared) for the shared role C(airlift) (which every role
        depends on, and which validates its settings with this task instead of per host).
    type: list
    elements: str
    default: []
  folders:
    description:
      - Folder variables that must not be empty, as C(name -> purpose). An empty folder
        passes a spec as a path and would put a role's files under C(/); each host whose
        value is empty fails with C(set NAME to PURPOSE), the names joined by semicolons.
    type: dict
    default: {}
author:
  - airlift developers
"""

EXAMPLES = r"""
- name: Refuse an empty folder variable, naming it
  airlift_fleet_arguments:
    hosts: "{{ ansible_play_hosts_all }}"
    folders:
      airlift_rotate_snapshot_dir: the host folder of the rollback point
  run_once: true

- name: Validate the shared and preflight settings of every host once
  airlift_fleet_arguments:
    hosts: "{{ ansible_play_hosts_all }}"
    roles: [airlift, airlift_preflight]
  run_once: true
"""

RETURN = r"""
hosts:
  description: Number of hosts validated.
  returned: always
  type: int
defaults:
  description: Settings whose role default was validated for hosts that do not set them.
  returned: success
  type: list
argument_errors:
  description: "Every problem as C(host: role R: message) (spec) or C(host: set ...) (folders)."
  returned: failure
  type: list
"""

from pathlib import Path
from typing import Any, ClassVar

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from airlift.controller_action import FleetAction

ROLES = Path(__file__).resolve().parents[2] / "roles"
# The shared role's spec is not named main: Ansible would validate it once per host as a
# dependency of every role (the controller's main process, host by host).
ENTRY_POINTS = ("main", "shared")


def main_spec(role: str) -> dict[str, Any]:
    """The options of a role's main (or shared) entry point, as Ansible would read them."""
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    entry = next(specs["argument_specs"][name] for name in ENTRY_POINTS
                 if name in specs["argument_specs"])
    return entry.get("options") or {}


def unset_folders(values: dict[str, Any], folders: dict[str, str]) -> list[str]:
    """'set NAME to PURPOSE' for each folder variable left empty, in the given order."""
    return [f"set {name} to {purpose}" for name, purpose in folders.items()
            if not str(values.get(name) if values.get(name) is not None else "").strip()]


def named(hosts: list[str], limit: int = 20) -> str:
    """The first hosts by name, then how many more (a fleet of thousands stays readable)."""
    more = f" and {len(hosts) - limit} more" if len(hosts) > limit else ""
    return ", ".join(hosts[:limit]) + more


class ActionModule(FleetAction):
    ARGUMENT_SPEC: ClassVar[dict[str, dict[str, Any]]] = {
        "hosts": {"type": "list", "elements": "str", "required": True},
        "roles": {"type": "list", "elements": "str", "default": []},
        "folders": {"type": "dict", "default": {}},
    }

    def act(self, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        hostvars = task_vars["hostvars"]
        specs = {role: main_spec(role) for role in args["roles"]}
        folders = args["folders"]
        names = {name for spec in specs.values() for name in spec} | set(folders)
        # The value a host gets unless it sets its own: the role's default (templated once,
        # or once per distinct value of what it names that hosts set themselves).
        defaults = self.fleet_defaults(names, task_vars)
        problems, refusals = [], []
        validators = {role: ArgumentSpecValidator(spec) for role, spec in specs.items()}
        # Most hosts share most values (role defaults, group vars): each distinct set of
        # values is validated once (a spec validation copies every value it checks).
        seen: dict[tuple[str, str], list[str]] = {}
        for host in args["hosts"]:
            values = defaults.host_values(hostvars[host], names)
            for role, spec in specs.items():
                checked = {name: values[name] for name in spec if name in values}
                key = (role, defaults.fingerprint(checked))
                if key not in seen:
                    seen[key] = list(validators[role].validate(checked).error_messages)
                problems.extend(f"{host}: role {role}: {message}" for message in seen[key])
            unset = "; ".join(unset_folders(values, folders))
            if unset:
                refusals.append(f"{host}: {unset}")
        if not problems and not refusals:
            return {"changed": False, "hosts": len(args["hosts"]),
                    "defaults": sorted(defaults.names)}
        # An empty folder: the role's own sentence, once (the hosts are listed after it).
        sentences = list(dict.fromkeys(line.split(": ", 1)[1] for line in refusals))
        msg = " ".join(
            ([f"Validation of arguments failed: {'; '.join(problems)}."] if problems else [])
            + ([f"{' | '.join(sentences)} (hosts: "
                f"{named([line.split(': ', 1)[0] for line in refusals])})"]
               if refusals else []))
        return {"failed": True, "msg": msg, "argument_errors": problems + refusals}
