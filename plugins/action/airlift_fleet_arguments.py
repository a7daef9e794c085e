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
    description: Roles (under the project's roles/ folder) whose C(main) spec is validated.
    type: list
    elements: str
    required: true
author:
  - airlift developers
"""

EXAMPLES = r"""
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
"""

from pathlib import Path
from typing import Any, ClassVar

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from airlift.controller_action import ControllerAction

ROLES = Path(__file__).resolve().parents[2] / "roles"


def main_spec(role: str) -> dict[str, Any]:
    """The options of a role's main entry point, as validate_argument_spec reads them."""
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"]["main"].get("options") or {}


class ActionModule(ControllerAction):
    ARGUMENT_SPEC: ClassVar[dict[str, dict[str, Any]]] = {
        "hosts": {"type": "list", "elements": "str", "required": True},
        "roles": {"type": "list", "elements": "str", "required": True},
    }

    def role_defaults(self) -> dict[str, Any]:
        """Defaults of the play's roles (dependencies included), not yet templated."""
        parent = self._task._parent
        while getattr(parent, "_play", None) is None:
            parent = parent._parent
        defaults: dict[str, Any] = {}
        for role in parent._play.get_roles():
            defaults.update(role.get_default_vars())
        return defaults

    def act(self, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        hostvars = task_vars["hostvars"]
        specs = {role: main_spec(role) for role in args["roles"]}
        names = {name for spec in specs.values() for name in spec}
        # The value every host gets unless it sets its own (the role's default, not what
        # this task's host may have set): templated once for the run.
        defaults = self.role_defaults()
        shared = {name: self._templar.template(defaults[name]) for name in names
                  if name in defaults}
        problems = []
        for host in args["hosts"]:
            own = hostvars[host]
            values = {name: own[name] if name in own else shared[name]
                      for name in names if name in own or name in shared}
            for role, spec in specs.items():
                checked = ArgumentSpecValidator(spec).validate(
                    {name: values[name] for name in spec if name in values})
                problems.extend(f"{host}: role {role}: {message}"
                                for message in checked.error_messages)
        if problems:
            return {"failed": True, "msg": "Validation of arguments failed: "
                    + "; ".join(problems), "argument_errors": problems}
        return {"changed": False, "hosts": len(args["hosts"]), "defaults": sorted(shared)}
