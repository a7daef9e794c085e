"""inventories/example: production-shaped, parses, and passes preflight's inventory checks."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import ROOT, run_playbook


def test_example_inventory_has_sites_canary_and_commitments():
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    proc = subprocess.run(["ansible-inventory", "-i", "inventories/example", "--list"],
                          capture_output=True, text=True, cwd=ROOT, env=env, check=True)
    inventory = json.loads(proc.stdout)
    assert inventory["sites"]["children"] == ["site_north", "site_south"]
    assert inventory["canary"]["hosts"] == ["north-ai-01.enclave.local"]
    south = inventory["_meta"]["hostvars"]["south-ai-01.enclave.local"]
    assert [service["catalog"] for service in south["airlift_services"]] == \
        ["sentiment", "vision-read"]
    # JSON keys are strings: the plan's year 2026 comes out as "2026".
    assert south["airlift_collect_commitments"]["sentiment"] == {"2026": 5000000}
    # Real sites get the front door: services on loopback, HTTPS for one network.
    assert south["airlift_frontdoor_enabled"] is True
    assert south["airlift_frontdoor_allowed_networks"] == ["10.20.0.0/16"]
    # The key is never in plain text: it comes from the vault or the environment.
    assert "vault_airlift_stage_api_key" in south["airlift_stage_api_key"]


def test_example_inventory_passes_preflights_inventory_checks():
    proc = run_playbook("tests/data/validate_inventory.yml", inventory="inventories/example")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "failed=0" in proc.stdout and "unreachable=0" in proc.stdout
