# Apache-2.0
"""Preflight's inventory checks and check evaluation for every host of the run in one task."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlift_fleet_checks
short_description: Evaluate preflight's checks for every host at once, results keyed by host
description:
  - Runs on the controller only (an action plugin with no module part), once per run
    (C(run_once), facts delegated to C(localhost)). A C(set_fact) per host would be
    dispatched host by host by the controller's main process, and template the catalog
    once per host; this does the same work for all hosts in one task.
  - C(phase=inventory) checks each host's inventory entries (EULA, engine, catalog names,
    ports, cpus and memory, GPUs, waivers) before any host is contacted, sets
    C(__airlift_preflight_fleet_inventory) (host -> results) and fails listing every
    problem of every host.
  - C(phase=evaluate) evaluates the gathered C(airlift_host) facts of each expected host
    against its services and catalog, adds its inventory and front-door results, applies
    its waivers, and sets C(__airlift_preflight_checked) with C(results) (host -> results;
    none for a host that did not answer), C(failures) (every failed check of the fleet)
    and C(stop) (host -> why it stops; with C(airlift_preflight_stop_on_failure) a host
    stops for any failure in the fleet).
  - A host's value of each setting is its own (inventory, extra vars, facts) when it has
    one, else the role default (templated once). C(airlift_catalog) is the host's own, or
    the built-in catalog combined with the host's C(airlift_catalog_overrides).
options:
  phase:
    description: Which half of preflight's work to do.
    type: str
    choices: [inventory, evaluate]
    required: true
  hosts:
    description: Hosts to check (inventory) or to evaluate (evaluate; the expected hosts).
    type: list
    elements: str
    required: true
  manifest:
    description: The staged bundle's manifest (disk needs, license expiry), or C({}).
    type: dict
    default: {}
author:
  - airlift developers
"""

EXAMPLES = r"""
- name: Check each host's inventory entries, once for the run
  airlift_fleet_checks:
    phase: inventory
    hosts: "{{ ansible_play_hosts_all }}"
  delegate_to: localhost
  delegate_facts: true
  run_once: true
"""

RETURN = r"""
ansible_facts:
  description: C(__airlift_preflight_fleet_inventory) or C(__airlift_preflight_checked).
  returned: success
  type: dict
problems:
  description: "Every inventory problem as C(host: line) (phase inventory)."
  returned: failure
  type: list
"""

import json
from typing import Any, ClassVar

from ansible.utils.vars import merge_hash

from airlift import checks
from airlift.controller_action import FleetAction, FleetDefaults

INVENTORY = ("airlift_eula", "airlift_container_engine", "airlift_services", "airlift_waivers")
THRESHOLDS = {"min_ghz": "airlift_preflight_min_ghz",
              "clock_tolerance": "airlift_preflight_clock_tolerance",
              "memory_tolerance": "airlift_preflight_memory_tolerance",
              "disk_required_mb": "airlift_preflight_disk_required_mb",
              "disk_headroom": "airlift_preflight_disk_headroom",
              "license_warning_days": "airlift_preflight_license_warning_days"}
STOP_ON_FAILURE = "airlift_preflight_stop_on_failure"
ELSEWHERE = " elsewhere in the fleet (airlift_preflight_stop_on_failure)"
NO_ANSWER = "no check ran: the host did not answer them; run preflight again"


class ActionModule(FleetAction):
    ARGUMENT_SPEC: ClassVar[dict[str, dict[str, Any]]] = {
        "phase": {"type": "str", "choices": ["inventory", "evaluate"], "required": True},
        "hosts": {"type": "list", "elements": "str", "required": True},
        "manifest": {"type": "dict", "default": {}},
    }

    def catalogs(self, task_vars: dict[str, Any]) -> Any:
        """host vars -> that host's catalog; one merge per distinct set of overrides."""
        builtin = self._templar.template(task_vars["airlift_catalog_builtin"])
        merged: dict[str, Any] = {}

        def catalog(own: Any) -> Any:
            if "airlift_catalog" in own:
                return own["airlift_catalog"]
            overrides = own.get("airlift_catalog_overrides", {})
            key = json.dumps(overrides, sort_keys=True, default=str)
            if key not in merged:
                merged[key] = merge_hash(builtin, overrides or {}, recursive=True)
            return merged[key]

        return catalog

    def act(self, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        hostvars = task_vars["hostvars"]
        catalog = self.catalogs(task_vars)
        names = {*INVENTORY, *THRESHOLDS.values(), STOP_ON_FAILURE}
        defaults = self.fleet_defaults(names, task_vars)
        if args["phase"] == "inventory":
            return self.inventory(args["hosts"], hostvars, catalog, names, defaults)
        return self.evaluate(args, hostvars, catalog, names, defaults)

    def inventory(self, hosts: list[str], hostvars: Any, catalog: Any, names: set[str],
                  defaults: FleetDefaults) -> dict[str, Any]:
        found, problems = {}, []
        for host in hosts:
            own = hostvars[host]
            values = defaults.host_values(own, names)
            found[host] = checks.inventory_checks(
                {name: values.get(name) for name in INVENTORY}, catalog(own))
            problems.extend(f"{host}: {line}" for line in checks.failures(found[host]))
        facts = {"__airlift_preflight_fleet_inventory": found}
        if problems:
            # The list itself, as the per-host set_fact and fail it replaces printed it.
            return {"failed": True, "msg": problems, "problems": problems,
                    "ansible_facts": facts}
        return {"changed": False, "ansible_facts": facts}

    def evaluate(self, args: dict[str, Any], hostvars: Any, catalog: Any, names: set[str],
                 defaults: FleetDefaults) -> dict[str, Any]:
        inventory = hostvars["localhost"].get("__airlift_preflight_fleet_inventory") or {}
        results: dict[str, list[dict] | None] = {}
        stop_on_failure: dict[str, bool] = {}
        for host in args["hosts"]:
            own = hostvars.get(host, {})
            contact = own.get("__airlift_preflight_contact") or {}
            if "airlift_host" not in own or contact.get("unreachable"):
                results[host] = None        # UNREPORTED in every report
                continue
            values = defaults.host_values(own, names)
            thresholds = {key: values[name] for key, name in THRESHOLDS.items()}
            found = (list(inventory.get(host) or [])
                     + checks.host_checks(own["airlift_host"], values["airlift_services"],
                                          catalog(own), thresholds, args["manifest"])
                     + list(own.get("airlift_frontdoor_results") or []))
            results[host] = checks.apply_waivers(found, values["airlift_waivers"])
            stop_on_failure[host] = bool(values.get(STOP_ON_FAILURE))
        fleet = [f"{host}: {line}" for host, found in results.items()
                 for line in checks.failures(found or [])]
        stop = {}
        for host, found in results.items():
            own_failures = checks.failures(found) if found is not None else [NO_ANSWER]
            if own_failures:
                stop[host] = f"preflight failed: {own_failures}"
            elif fleet and stop_on_failure.get(host):
                stop[host] = f"preflight failed{ELSEWHERE}: {fleet}"
        return {"changed": False, "ansible_facts": {"__airlift_preflight_checked": {
            "results": results, "failures": fleet, "stop": stop}}}
