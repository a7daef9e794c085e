# Apache-2.0
"""What a running service should look like, compared with what the host shows.

Pure functions: the module gathers the observations (systemctl, the engine, the license
file, /ready), these decide. Kept apart so the decisions are unit-tested off-host.
"""

from __future__ import annotations

from typing import Any

from ansible.module_utils import airlift_layout as layout


def service_problems(unit: dict[str, Any], seen: dict[str, Any]) -> list[str]:
    """Each way `seen` (one service on the host) differs from what deploy recorded in
    `unit`, as a sentence that names the fix."""
    name = layout.container_name(unit['name'])
    problems = []
    if seen.get("active") != "active":
        problems.append(f"{name}.service is {seen.get('active') or 'unknown'}, not active "
                        f"(journalctl -u {name}.service; then run playbooks/deploy.yml)")
    if seen.get("enabled") != "enabled":
        problems.append(f"{name}.service is {seen.get('enabled') or 'unknown'}, not enabled: "
                        "it would not start at boot (run playbooks/deploy.yml)")
    image = (seen.get("image") or "").split(":", 1)[-1]
    if seen.get("active") == "active" and not image.startswith(unit["image_id"]):
        problems.append(f"{name} runs image {image[:12] or 'none'}, not {unit['image_id'][:12]} "
                        "its unit pins (restart it: systemctl restart "
                        f"{name}.service)")
    if seen.get("license_sha256") != unit["license_sha256"]:
        found = seen.get("license_file") or "(none)"
        problems.append(f"the license file of {name}, {found}, is not the one its unit was "
                        "started with (run playbooks/distribute.yml, then playbooks/deploy.yml)")
    if seen.get("active") == "active" and seen.get("ready") != 200:
        problems.append(f"{name} does not answer /ready on port {unit['port']} "
                        f"({seen.get('ready_error') or seen.get('ready')})")
    return problems
