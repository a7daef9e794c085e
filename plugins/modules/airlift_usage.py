#!/usr/bin/python
# Apache-2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlift_usage
short_description: Read each service's usage endpoints and archive its Output directory
description:
  - For every service, asks its own endpoints for the all-time totals
    (C(/records/usage-logs/)) and for each month of the window
    (C(/records/usage-logs/MM/YYYY)).
  - A service that is not running is still collected - a temporary instance of its
    image is started on the same license and Output mounts on a free loopback port,
    queried and removed; the result says C(collected_via=temporary).
  - A killed collection's leftovers never break the next one - its temporary instance
    is replaced, and its unfetched archive copies are removed once 6 hours old.
  - Archives each service's Output directory as it is (read-only, never modified or
    deleted) into C(archive_dir)/<sha256>.tar.gz; the archive is deterministic, so an
    unchanged directory gives the same name.
  - Archives each of C(log_dirs) that exists (the front door's access log) the same way,
    returned under C(logs).
  - Archives the same way every directory under C(output_root) that no listed service
    (and no C(log_dirs) entry) writes to - the Output of a service since removed from the
    host, kept by design - as a service entry with C(collected_via=removed) and no totals
    (its container may be gone), so its records stay in the evidence.
  - A service that cannot be collected gets an C(error); the others are still returned.
  - In check mode no temporary instance is started and no archive is written.
version_added: "0.1.0"
options:
  services:
    description: The host's services as the deploy role describes them (name, catalog,
      port, image_id, license_dir, output_dir, ready_timeout, cpus, memory, settings).
    type: list
    elements: dict
    required: true
  months:
    description: Months to query, as YYYY-MM; default this month and the ones before it.
    type: list
    elements: str
  month_count:
    description: How many months (this one included) when C(months) is not given.
    type: int
    default: 3
  engine:
    description: Container engine for temporary instances.
    type: str
    choices: [podman, docker]
    default: podman
  run_options:
    description: Extra options for the temporary instances' run.
    type: list
    elements: str
    default: []
  eula:
    description: The license terms' acceptance the containers need (C(accept)).
    type: str
    required: true
  archive_dir:
    description: Host directory for the Output archives (root-only).
    type: path
    default: /var/lib/airlift/usage-archives
  output_root:
    description: The directory holding the services' Output directories (deploy's
      C(airlift_deploy_output_dir)); one missing on this host is skipped.
    type: path
    default: /var/lib/airlift/output
  log_dirs:
    description: Other directories to archive, such as the front door's access log;
      one missing on this host is skipped.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: What the directory holds (names the archive in C(logs)).
        type: str
        required: true
      path:
        description: The directory on the host.
        type: path
        required: true
author:
  - airlift developers
"""

EXAMPLES = r"""
- name: Collect usage of this host's services
  airlift_usage:
    services: "{{ airlift_deploy_units }}"
    eula: accept
    month_count: 3
  register: usage
"""

RETURN = r"""
collected:
  description: Schema 1 usage of this host - collected_at and one entry per service
    (name, catalog, collected_via, all_time, months, archive or error), then one per
    removed service's Output directory (name, collected_via=removed, output_dir, archive
    or error), and C(logs) - one entry (name, archive or error) per archived C(log_dirs)
    directory.
  returned: always
  type: dict
leftovers_removed:
  description: Archive copies (whole or partial) in C(archive_dir) that a killed
    collection left unfetched, removed once older than 6 hours (never a running
    collection's); their Output directories are untouched. Empty in check mode.
  returned: always
  type: list
  elements: str
"""

import datetime as dt
import os
import subprocess

from ansible.module_utils import airlift_layout as layout
from ansible.module_utils.airlift_usage import (
    archive_dir,
    archived,
    collect_removed,
    free_loopback_port,
    is_ready,
    month_window,
    query,
    remove_leftovers,
    wait_ready,
)
from ansible.module_utils.basic import AnsibleModule


def unit_active(name: str) -> bool:
    proc = subprocess.run(["systemctl", "is-active", layout.unit_name(name)],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() == "active"


def extra_mounts(service: dict) -> list[str]:
    """The catalog's extra mounts as deploy recorded them (e.g. Shared, models)."""
    out = []
    for mount in service.get("mounts") or []:
        suffix = ":ro" if mount.get("read_only") else ""
        out += ["--volume", f"{mount['source']}:{mount['target']}{suffix}"]
    return out


def temporary_run(module: AnsibleModule, service: dict, port: int) -> list[str]:
    params = module.params
    settings = [f"{key}={value}"
                for key, value in sorted((service.get("settings") or {}).items())]
    return [params["engine"], "run", "--detach", "--rm",
            "--name", f"airlift-usage-{service['name']}",
            "--publish", f"127.0.0.1:{port}:5000",
            "--volume", f"{service['license_dir']}:/license:ro",
            "--volume", f"{service['output_dir']}:/output",
            *extra_mounts(service),
            *params["run_options"], service["image_id"],
            f"Eula={params['eula']}", "Mounts:License=/license", "Mounts:Output=/output", *settings]


def collect_temporarily(module: AnsibleModule, service: dict, months: list[str]) -> dict:
    """Start the service's image on its mounts, query it, remove it."""
    engine, name = module.params["engine"], f"airlift-usage-{service['name']}"
    # A collection killed while its instance ran leaves it behind (detached): replace it.
    subprocess.run([engine, "rm", "--force", name], capture_output=True, check=False)
    port = free_loopback_port()
    started = subprocess.run(temporary_run(module, service, port), capture_output=True,
                             text=True, check=False)
    try:
        if started.returncode != 0:
            raise RuntimeError(f"could not start a temporary instance: {started.stderr.strip()}")
        if not wait_ready(port, float(service.get("ready_timeout") or 120)):
            logs = subprocess.run([engine, "logs", "--tail", "5", name], capture_output=True,
                                  text=True, check=False)
            raise RuntimeError("the temporary instance never answered /ready: "
                               f"{(logs.stdout + logs.stderr).strip()}")
        return query(port, months)
    finally:
        subprocess.run([engine, "rm", "--force", name], capture_output=True, check=False)


def collect(module: AnsibleModule, service: dict, months: list[str]) -> dict:
    entry = {"name": service["name"], "catalog": service.get("catalog", "")}
    try:
        if unit_active(service["name"]) and is_ready(int(service["port"])):
            entry.update(collected_via="running", **query(int(service["port"]), months))
        elif module.check_mode:
            entry["error"] = "not running; check mode starts no temporary instance"
            return entry
        else:
            entry.update(collected_via="temporary", **collect_temporarily(module, service, months))
    except (OSError, ValueError, RuntimeError) as exc:
        entry["error"] = str(exc)
    if not module.check_mode:
        try:
            entry["archive"] = archived(service["output_dir"], module.params["archive_dir"])
        except OSError as exc:
            entry.setdefault("error", f"could not archive {service['output_dir']}: {exc}")
    return entry


def archive_logs(module: AnsibleModule) -> list[dict]:
    """Archive each log directory that exists; nothing in check mode."""
    out = []
    for entry in module.params["log_dirs"]:
        if module.check_mode or not os.path.isdir(entry["path"]):
            continue
        try:
            archive = archive_dir(entry["path"], module.params["archive_dir"])
        except OSError as exc:
            out.append({"name": entry["name"],
                        "error": f"could not archive {entry['path']}: {exc}"})
            continue
        out.append({"name": entry["name"],
                    "archive": {"sha256": archive["sha256"], "size": archive["size"],
                                "host_path": archive["path"]}})
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "services": {"type": "list", "elements": "dict", "required": True},
            "months": {"type": "list", "elements": "str"},
            "month_count": {"type": "int", "default": 3},
            "engine": {"type": "str", "choices": ["podman", "docker"], "default": "podman"},
            "run_options": {"type": "list", "elements": "str", "default": []},
            "eula": {"type": "str", "required": True},
            "archive_dir": {"type": "path", "default": layout.ARCHIVE_DIR},
            "output_root": {"type": "path", "default": layout.OUTPUT_DIR},
            "log_dirs": {"type": "list", "elements": "dict", "default": [],
                         "options": {"name": {"type": "str", "required": True},
                                     "path": {"type": "path", "required": True}}},
        },
        supports_check_mode=True,
    )
    params = module.params
    months = params["months"] or month_window(params["month_count"])
    bad = [month for month in months if len(month) != 7 or month[4] != "-"
           or not (month[:4] + month[5:]).isdigit() or not 1 <= int(month[5:]) <= 12]
    if bad:
        module.fail_json(msg=f"months must be YYYY-MM, not {', '.join(bad)}")
    # Copies a killed collection left unfetched: the Output directories they came from stay.
    leftovers = [] if module.check_mode else remove_leftovers(params["archive_dir"])
    collected = {
        "schema": 1,
        "collected_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "months": months,
        "services": [*(collect(module, service, months) for service in params["services"]),
                     *collect_removed(params["output_root"], params["services"],
                                      [entry["path"] for entry in params["log_dirs"]],
                                      params["archive_dir"], module.check_mode)],
        "logs": archive_logs(module),
    }
    # Reading usage changes nothing a re-run could converge; the archives are copies.
    module.exit_json(changed=False, collected=collected, leftovers_removed=leftovers)


if __name__ == "__main__":
    main()
