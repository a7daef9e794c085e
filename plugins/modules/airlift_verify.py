#!/usr/bin/python
# Apache-2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlift_verify
short_description: Check that every airlift service on a host runs as deployed
description:
  - Reads what deploy recorded on the host (C(services.json)) and what distribute placed
    (C(licenses.json)), then checks each service in one call, reading only - unit active
    and enabled, the container running the image its unit pins (by ID), the license on
    disk being the one the unit was started with, and C(/ready) answering 200.
  - Fails the host with one sentence per problem, each naming the fix; changes nothing,
    so check mode runs it in full (on a host nothing was deployed to yet, check mode
    reports that instead of failing).
version_added: "0.1.0"
options:
  state_dir:
    description: Directory of deploy's and distribute's state files.
    type: path
    default: /var/lib/airlift/state
  engine:
    description: Container engine the services run on.
    type: str
    choices: [podman, docker]
    default: podman
  probe_address:
    description: Address /ready is asked on (where the services' ports are published).
    type: str
    default: 127.0.0.1
  timeout:
    description: Seconds each /ready request may take.
    type: int
    default: 5
author:
  - airlift developers
"""

EXAMPLES = r"""
- name: Check every service runs as deployed
  airlift_verify:
    engine: podman
"""

RETURN = r"""
services:
  description: Per service, what was seen and the problems found.
  returned: always
  type: list
  elements: dict
problems:
  description: Every problem found on the host, each naming its fix.
  returned: always
  type: list
  elements: str
"""

import hashlib
import json
import os
import urllib.error
import urllib.request

from ansible.module_utils import airlift_layout as layout
from ansible.module_utils.airlift_verify import service_problems
from ansible.module_utils.basic import AnsibleModule


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}


def sha256_of(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def ready_status(url: str, timeout: int) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, ""
    except urllib.error.HTTPError as error:
        return error.code, f"HTTP {error.code}"
    except (OSError, ValueError) as error:
        return None, str(getattr(error, "reason", error))


def observe(module: AnsibleModule, unit: dict, licenses: dict) -> dict:
    """What the host shows for one service: systemd, the engine, the license, /ready."""
    name = layout.container_name(unit['name'])
    seen: dict = {}
    for key in ("active", "enabled"):
        _, out, _ = module.run_command(["systemctl", f"is-{key}", f"{name}.service"])
        seen[key] = out.strip()
    rc, out, _ = module.run_command([module.params["engine"], "inspect", "--format",
                                     "{{.Image}}", name])
    seen["image"] = out.strip() if rc == 0 else ""
    license_file = (licenses.get(unit["name"]) or {}).get("file")
    seen["license_file"] = license_file
    seen["license_sha256"] = sha256_of(license_file) if license_file else None
    address = module.params["probe_address"]
    host = f"[{address}]" if ":" in address else address
    seen["ready"], seen["ready_error"] = ready_status(
        f"http://{host}:{unit['port']}/ready", module.params["timeout"])
    return seen


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state_dir": {"type": "path", "default": layout.STATE_DIR},
            "engine": {"type": "str", "choices": ["podman", "docker"], "default": "podman"},
            "probe_address": {"type": "str", "default": "127.0.0.1"},
            "timeout": {"type": "int", "default": 5},
        },
        supports_check_mode=True,
    )
    state_dir = module.params["state_dir"]
    recorded = read_json(os.path.join(state_dir, "services.json"))
    if "services" not in recorded:
        if module.check_mode:
            # A check-mode rollout of a new host: deploy only said what it would do.
            module.exit_json(changed=False, services=[], problems=[],
                             msg="nothing deployed here yet (check mode)")
        module.fail_json(msg=f"no {state_dir}/services.json on this host: nothing was deployed "
                             "here (run playbooks/deploy.yml)", services=[], problems=[])
    licenses = read_json(os.path.join(state_dir, "licenses.json")).get("licenses") or {}
    services, problems = [], []
    for unit in recorded["services"]:
        seen = observe(module, unit, licenses)
        found = service_problems(unit, seen)
        services.append({"name": unit["name"], **seen, "problems": found})
        problems += found
    if problems:
        module.fail_json(msg="; ".join(problems), services=services, problems=problems)
    module.exit_json(changed=False, services=services, problems=[],
                     msg=f"{len(services)} service(s) run as deployed")


if __name__ == "__main__":
    main()
