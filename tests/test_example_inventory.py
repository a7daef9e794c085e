"""inventories/example: production-shaped, parses, and passes preflight's inventory checks."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import EXAMPLE_VAULT, ROOT, run_playbook

ENV = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
HOSTS = ["north-ai-01.enclave.local", "north-ai-02.enclave.local", "north-ai-03.enclave.local",
         "south-ai-01.enclave.local", "south-ai-02.enclave.local"]
VAULT = ROOT / "inventories" / "example" / "group_vars" / "all" / "vault.yml"
PLACEHOLDER = "EXAMPLE-PLACEHOLDER-not-a-real-api-key"


def test_example_inventory_has_sites_canary_and_commitments():
    proc = subprocess.run(["ansible-inventory", "-i", "inventories/example", "--list",
                           *EXAMPLE_VAULT], capture_output=True, text=True, cwd=ROOT, env=ENV,
                          check=True)
    inventory = json.loads(proc.stdout)
    # The password file next to the hosts is not read as an inventory source (.txt).
    assert sorted(inventory["_meta"]["hostvars"]) == HOSTS
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


def test_the_api_key_comes_from_the_vaulted_placeholder():
    assert VAULT.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256\n")
    assert PLACEHOLDER not in VAULT.read_text()
    proc = subprocess.run(["ansible", "south-ai-01.enclave.local", "-i", "inventories/example",
                           *EXAMPLE_VAULT, "-m", "ansible.builtin.debug",
                           "-a", "var=airlift_stage_api_key"], capture_output=True, text=True,
                          cwd=ROOT, env={**ENV, "AIRLIFT_API_KEY": "from-the-environment"},
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"airlift_stage_api_key: {PLACEHOLDER}" in proc.stdout


def test_example_inventory_passes_preflights_inventory_checks():
    proc = run_playbook("tests/data/validate_inventory.yml", *EXAMPLE_VAULT,
                        inventory="inventories/example")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "failed=0" in proc.stdout and "unreachable=0" in proc.stdout
