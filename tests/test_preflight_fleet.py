"""Preflight's per-run work done once for the whole fleet (issue 13), on local-connection
hosts (this machine, N times) and on ghost hosts: no lab needed.

Each host gets one task of its own (the gathering module call); the shared role's spec,
the inventory checks, the folder refusals and the evaluation of every check run once for
the run, and still report every check of every host and stop exactly the hosts that fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import ROOT
from test_preflight_playbook import GHOSTS, ghost_inventory, latest_report, run_file

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench

HOSTS = [f"fleet-{index:04d}" for index in range(1, 5)]
# More cores than any machine running the tests has: host.cores fails on that host only.
GREEDY = [{"name": "sentiment", "catalog": "sim-sentiment", "port": 5000, "cpus": 4096}]


def local_preflight(tmp_path: Path, host_vars: dict | None = None,
                    *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """preflight.yml on 4 local hosts with the lab's settings; its JSON callback output."""
    inventory_path = bench.local_fleet(tmp_path, len(HOSTS))
    inventory = yaml.safe_load(inventory_path.read_text())
    inventory["all"]["hosts"] = {host: (host_vars or {}).get(host) for host in HOSTS}
    inventory_path.write_text(yaml.safe_dump(inventory))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    proc = subprocess.run(["ansible-playbook", "-i", str(inventory_path),
                           "playbooks/preflight.yml", "-e",
                           f"airlift_report_dir={tmp_path / 'reports'}", *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    return proc, json.loads(proc.stdout)


def tasks_of(result: dict, host: str) -> list[str]:
    """Names of the tasks that ran for a host (a run_once task shows on its first host)."""
    return [task["task"]["name"].split(" : ")[-1] for play in result["plays"]
            for task in play["tasks"] if host in task["hosts"]]


def test_each_host_gets_one_task_and_every_check_is_still_reported(tmp_path):
    proc, result = local_preflight(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    for host in HOSTS[1:]:
        assert tasks_of(result, host) == ["Gather cores, clock, memory, disk, engine and ports"]
    names = [task["task"]["name"].split(" : ")[-1] for play in result["plays"]
             for task in play["tasks"]]
    # Ansible's own per-host validation of the shared role's spec is gone (done once).
    assert not [name for name in names if "Validating arguments against arg spec 'main'" in name]
    assert names.count("Validate every host's shared airlift settings, once for the play") == 2
    report = json.loads((latest_report(tmp_path / "reports") / "compliance.json").read_text())
    assert list(report["hosts"]) == HOSTS
    for host in HOSTS:
        checks = {row["id"] for row in report["hosts"][host]["results"]}
        assert {"inventory.eula", "inventory.ports", "inventory.waivers", "host.cores",
                "host.memory", "host.disk", "host.engine", "host.init", "host.ports",
                "service.cores"} <= checks
        assert report["hosts"][host]["status"] == "PASS"


def test_a_failing_host_stops_alone_and_with_stop_on_failure_every_host_stops(tmp_path):
    greedy = {HOSTS[2]: {"airlift_services": GREEDY}}
    proc, result = local_preflight(tmp_path / "alone", greedy)
    assert proc.returncode == 2, proc.stdout[-3000:]
    stats = result["stats"]
    assert [host for host in HOSTS if stats[host]["failures"]] == [HOSTS[2]]
    report = json.loads((latest_report(tmp_path / "alone" / "reports")
                         / "compliance.json").read_text())
    assert {host: report["hosts"][host]["status"] for host in HOSTS} == {
        **dict.fromkeys(HOSTS, "PASS"), HOSTS[2]: "FAIL"}
    failed = [task for play in result["plays"] for task in play["tasks"]
              if HOSTS[2] in task["hosts"] and task["hosts"][HOSTS[2]].get("failed")]
    assert "preflight failed: ['host.cores [host]: expected 4096" in (
        failed[-1]["hosts"][HOSTS[2]]["msg"])

    proc, result = local_preflight(tmp_path / "all", greedy, "-e",
                                   '{"airlift_preflight_stop_on_failure": true}')
    assert proc.returncode == 2
    assert all(result["stats"][host]["failures"] for host in HOSTS)
    messages = [task["hosts"][host]["msg"] for play in result["plays"]
                for task in play["tasks"] for host in HOSTS[:2]
                if task["hosts"].get(host, {}).get("failed")]
    assert len(messages) == 2
    assert all(message.startswith("preflight failed elsewhere in the fleet "
                                  "(airlift_preflight_stop_on_failure): ['fleet-0003: host.cores")
               for message in messages), messages


def test_bad_shared_setting_of_one_host_is_refused_once_naming_that_host(tmp_path):
    inventory = ghost_inventory(tmp_path, host_vars={GHOSTS[1]: {
        "airlift_frontdoor_enabled": "maybe"}})
    proc = run_file("preflight.yml", inventory)
    assert proc.returncode != 0
    assert (f"{GHOSTS[1]}: role airlift: argument 'airlift_frontdoor_enabled' is of type"
            in proc.stdout.replace("\n", " ")), proc.stdout[-3000:]
    assert f"{GHOSTS[0]}: role airlift" not in proc.stdout
    assert "UNREACHABLE" not in proc.stdout          # no host was contacted
    assert "arg spec 'main' - Shared airlift variables" not in proc.stdout


def test_a_folder_default_built_from_a_host_s_own_setting_is_refused_for_that_host(tmp_path):
    """deploy's state folder defaults to the shared airlift_state_dir: emptied on the second
    host only (not the host the run-once check runs on), it is still refused there."""
    inventory = ghost_inventory(tmp_path, host_vars={GHOSTS[1]: {"airlift_state_dir": ""}})
    proc = run_file("deploy.yml", inventory)
    assert proc.returncode != 0
    text = " ".join(proc.stdout.split())
    assert ("set airlift_deploy_state_dir to the host folder of airlift's state files "
            f"(hosts: {GHOSTS[1]})") in text, proc.stdout[-3000:]
    assert "UNREACHABLE" not in proc.stdout


def test_role_defaults_are_templated_again_only_for_hosts_that_set_what_they_name():
    """A default built from another (also through a third, and inside a list) follows a
    host's own value of it; hosts that set nothing share one templated value."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    from airlift.controller_action import FleetDefaults

    loader = DataLoader()
    defaults = loader.load_from_file(str(ROOT / "roles/airlift/defaults/main.yml"),
                                     trusted_as_template=True)
    task_vars = {**defaults, "hostvars": {"a": {}}, "inventory_hostname": "a"}
    names = {"airlift_frontdoor_log_dir", "airlift_preflight_disk_paths", "airlift_eula"}
    fleet = FleetDefaults(Templar(loader=loader, variables=task_vars), defaults, names,
                          task_vars)
    assert fleet.host_values({}, names) == {
        "airlift_frontdoor_log_dir": "/var/lib/airlift/output/frontdoor",
        "airlift_preflight_disk_paths": ["/var/lib/containers", "/var/lib/airlift"],
        "airlift_eula": ""}
    moved = fleet.host_values({"airlift_host_dir": "/srv/a"}, names)
    assert moved["airlift_frontdoor_log_dir"] == "/srv/a/output/frontdoor"
    assert moved["airlift_preflight_disk_paths"] == ["/var/lib/containers", "/srv/a"]
    assert fleet.host_values({"airlift_eula": "accept"}, names)["airlift_eula"] == "accept"
    # Equal inputs, one templating: the same object for every host that sets nothing.
    assert (fleet.host_values({}, names)["airlift_preflight_disk_paths"]
            is fleet.host_values({"x": 1}, names)["airlift_preflight_disk_paths"])
