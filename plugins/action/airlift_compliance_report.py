# Apache-2.0
"""Write the fleet compliance report on the controller from every host's check results."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlift_compliance_report
short_description: Write every expected host's preflight results as JSON, JUnit, Markdown, HTML
description:
  - Runs on the controller only (an action plugin with no module part). Takes each
    expected host's results from I(results) (keyed by host, as preflight evaluates them
    once for the run) or from the I(results_var) variable in hostvars; a host without
    results (unreachable, or failed before its checks) is reported as UNREPORTED, never
    dropped.
  - C(compliance.html) is the page for a person, with the fleet summary, failures grouped
    by check with the hosts and the fix, waivers with days to expiry, then the full matrix
    filterable by status. It needs no network and names the run and the inventory.
  - Writing the report is not a change to any host, so it reports C(changed=false) and
    also writes in check mode, which is the point of a dry run.
options:
  expected_hosts:
    description: Hosts the run targeted (ansible_play_hosts_all of the checking play).
    type: list
    elements: str
    required: true
  results:
    description:
      - Every host's list of check results, keyed by host (as preflight evaluates them,
        once for the run); a host missing or C(null) did not report.
      - One of I(results) and I(results_var) is required.
    type: dict
  results_var:
    description: Name of the host variable holding that host's list of check results.
    type: str
  dest:
    description: Directory the four files are written to.
    type: path
    required: true
  images:
    description: The bundle manifest's images (ref, tag, digest, id) to list in the report.
    type: list
    elements: dict
    default: []
author:
  - airlift developers
"""

EXAMPLES = r"""
- name: Write the compliance report
  airlift_compliance_report:
    expected_hosts: "{{ airlift_preflight_expected_hosts }}"
    results: "{{ __airlift_preflight_checked.results }}"
    dest: "{{ airlift_run.dir }}/preflight"
"""

RETURN = r"""
files:
  description: Paths of the written files by format (json, junit, markdown, html).
  returned: success
  type: dict
summary:
  description: Host counts by status and check counts by status, then failures.
  returned: success
  type: list
failures:
  description: One line per failed check or unreported host.
  returned: success
  type: list
"""

from pathlib import Path
from typing import Any, ClassVar

from airlift.compliance import from_hostvars, from_results, write_reports
from airlift.controller_action import ControllerAction


class ActionModule(ControllerAction):
    ARGUMENT_SPEC: ClassVar[dict[str, dict[str, Any]]] = {
        "expected_hosts": {"type": "list", "elements": "str", "required": True},
        "results": {"type": "dict"},
        "results_var": {"type": "str"},
        "dest": {"type": "path", "required": True},
        "images": {"type": "list", "elements": "dict", "default": []},
    }

    def act(self, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        dest = Path(args["dest"])
        if (args["results"] is None) == (args["results_var"] is None):
            return {"failed": True, "msg": "set one of results and results_var"}
        if args["results"] is not None:
            rows = from_results(args["expected_hosts"], args["results"])
        else:
            rows = from_hostvars(args["expected_hosts"], task_vars["hostvars"],
                                 args["results_var"])
        inventory = task_vars.get("ansible_inventory_sources") or []
        written = write_reports(dest, dest.parent.name, rows,
                                inventory=[inventory] if isinstance(inventory, str)
                                else inventory, images=args["images"])
        hosts = written["summary"]["hosts"]
        return dict(
            changed=False,
            files=written["files"],
            failures=written["failures"],
            summary=[
                f"compliance report: {written['files']['markdown']}",
                f"open in a browser: {written['files']['html']}",
                f"hosts: {hosts['PASS']} passed, {hosts['FAIL']} failed, "
                f"{hosts['UNREPORTED']} unreported",
                *written["failures"],
            ],
        )
