"""playbooks/preflight.yml run for real: against this machine and against lab hosts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from usage_page import table_rows

from airlift import lab

CLOCK_WAIVER = {"check": "host.cpu_clock", "justification": "lab CPUs report 2.0 GHz",
                "expires": "2999-12-31"}


def playbook(inventory: Path | str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(["ansible-playbook", "-i", str(inventory), "playbooks/preflight.yml",
                           *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          check=False)


def latest_report(report_dir: Path) -> Path:
    return sorted(report_dir.iterdir())[-1] / "preflight"


def write_vars(tmp_path: Path, **values) -> str:
    path = tmp_path / "vars.yml"
    path.write_text(yaml.safe_dump({"airlift_report_dir": str(tmp_path / "reports"), **values}))
    return f"@{path}"


def test_sixteen_cores_on_this_machine_fails_with_expected_and_observed(tmp_path):
    extra = write_vars(tmp_path, airlift_eula="accept", airlift_waivers=[CLOCK_WAIVER],
                       airlift_services=[{"name": "big", "catalog": "sim-sentiment",
                                          "port": 5999, "cpus": 16}])
    proc = playbook("localhost,", "-c", "local", "-e", extra,
                    "-e", "ansible_python_interpreter={{ ansible_playbook_python }}")
    assert proc.returncode != 0
    report = json.loads((latest_report(tmp_path / "reports") / "compliance.json").read_text())
    cores = next(r for r in report["hosts"]["localhost"]["results"] if r["id"] == "host.cores")
    assert cores["status"] == "FAIL"
    assert cores["expected"] == "16"
    assert cores["observed"] == f"{len(os.sched_getaffinity(0))}"
    assert "host.cores [host]: expected 16, observed" in proc.stdout
    # The page for a person: the failure with its host and fix, the waiver, the inventory.
    page = latest_report(tmp_path / "reports") / "compliance.html"
    assert f"open in a browser: {page}" in proc.stdout
    html = page.read_text()
    [failure] = [row for row in table_rows(html, "failures")
                 if row["check"].startswith("host.cores")]
    assert failure["hosts"] == "1 host(s): localhost"
    assert failure["fix"] == cores["message"] and "expected 16" in failure["expected / observed"]
    clock = next(r for r in report["hosts"]["localhost"]["results"]
                 if r["id"] == "host.cpu_clock")
    waivers = [(row["check"], row["justification"], row["expires"])
               for row in table_rows(html, "waivers")]
    assert waivers == ([("host.cpu_clock", CLOCK_WAIVER["justification"],
                         CLOCK_WAIVER["expires"])] if clock["status"] == "WAIVED" else [])
    assert "inventory localhost," in " ".join(html.split())


GHOSTS = ("airlift-ghost-a", "airlift-ghost-b")   # inventory hosts that are no container


@pytest.mark.parametrize("limit", [(), ("--limit", GHOSTS[1])],
                         ids=["every-host-down", "limit-to-a-down-host"])
def test_whole_site_down_still_writes_the_report_listing_every_host(tmp_path, limit):
    """Every targeted host unreachable (or --limit naming only such hosts): Ansible used
    to end the playbook before the report play, leaving no report. Nothing here is a
    lab host: podman exec into a container that does not exist is unreachable."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "containers.podman.podman", "airlift_eula": "accept",
                 "airlift_report_dir": str(tmp_path / "reports"),
                 "airlift_services": [{"name": "sentiment", "catalog": "sim-sentiment",
                                       "port": 5000}]},
        "hosts": {host: {} for host in GHOSTS}}}))
    proc = playbook(inventory, *limit)
    expected = list(GHOSTS[1:] if limit else GHOSTS)
    assert proc.returncode == 4, proc.stdout[-3000:]     # Ansible's exit for unreachable
    for host in expected:
        assert recap(proc.stdout, host)["unreachable"] == 1
    folder = latest_report(tmp_path / "reports")
    report = json.loads((folder / "compliance.json").read_text())
    assert list(report["hosts"]) == expected
    assert {host: entry["status"] for host, entry in report["hosts"].items()} == dict.fromkeys(
        expected, "UNREPORTED")
    assert report["summary"]["hosts"] == {"PASS": 0, "FAIL": 0, "UNREPORTED": len(expected)}
    junit = ET.parse(folder / "compliance.junit.xml").getroot()
    assert {suite.get("name"): suite.get("errors") for suite in junit} == dict.fromkeys(
        expected, "1")
    markdown = (folder / "compliance.md").read_text()
    for host in expected:
        assert f"| {host} | UNREPORTED |" in markdown
        assert f"- {host}: host did not report: unreachable" in markdown


def run_file(name: str, inventory: Path | str, *args: str) -> subprocess.CompletedProcess:
    """Any playbook of playbooks/, as `playbook` runs preflight.yml."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(["ansible-playbook", "-i", str(inventory), f"playbooks/{name}",
                           *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          check=False)


def ghost_inventory(tmp_path: Path, services: list[dict] | None = None,
                    host_vars: dict | None = None) -> Path:
    """Inventory hosts that are no container: contacting one would show UNREACHABLE."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "containers.podman.podman", "airlift_eula": "accept",
                 "airlift_report_dir": str(tmp_path / "reports"),
                 "airlift_services": services or [
                     {"name": "sentiment", "catalog": "sim-sentiment", "port": 5000}]},
        "hosts": {host: (host_vars or {}).get(host, {}) for host in GHOSTS}}}))
    return inventory


# Playbooks whose roles write reports under airlift_report_dir (certificates.yml writes
# none; stage.yml runs on the controller only).
REPORTING = ["preflight.yml", "deploy.yml", "distribute.yml", "collect_usage.yml",
             "render.yml", "rotate.yml", "verify.yml", "stage.yml"]


@pytest.mark.parametrize("name", REPORTING)
def test_empty_report_folder_is_refused_before_any_host(tmp_path, name):
    """Empty, every report of the run would go to /<run id> on the controller."""
    proc = run_file(name, ghost_inventory(tmp_path), "-e", "airlift_report_dir=")
    assert proc.returncode != 0
    assert "set airlift_report_dir to the controller folder for reports" in proc.stdout, (
        proc.stdout[-3000:])
    assert "UNREACHABLE" not in proc.stdout


def test_bad_setting_of_one_host_is_refused_for_that_host_before_any_contact(tmp_path):
    """The role's argument spec is validated for every host in one task (not one per host)."""
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"{GHOSTS[0]} airlift_preflight_min_ghz=fast\n{GHOSTS[1]}\n"
                         "[all:vars]\nansible_connection=containers.podman.podman\n"
                         "airlift_eula=accept\n")
    proc = playbook(inventory, "-e", f"airlift_report_dir={tmp_path / 'reports'}")
    assert proc.returncode != 0
    assert (f"{GHOSTS[0]}: role airlift_preflight: argument 'airlift_preflight_min_ghz' "
            "is of type str") in proc.stdout
    assert f"{GHOSTS[1]}: role airlift_preflight" not in proc.stdout
    assert "UNREACHABLE" not in proc.stdout     # no host was contacted


# playbook -> {folder variable: what the refusal says to set it to}; all emptied at once.
EMPTY_FOLDERS = {
    "stage.yml": {"airlift_stage_bundle_dir": "the controller folder the bundle is written to"},
    "deploy.yml": {
        "airlift_deploy_output_dir": "the host folder of the services' usage records",
        "airlift_deploy_mounts_dir": "the host folder of the catalog's extra mounts",
        "airlift_deploy_license_dir": "the host folder distribute placed the licenses in",
        "airlift_deploy_state_dir": "the host folder of airlift's state files"},
    # The front door's, from deploy.yml too (one role's refusal stops the run).
    "deploy.yml frontdoor": {
        "airlift_frontdoor_config_dir": "the host folder of the proxy's nginx.conf and TLS "
                                        "files",
        "airlift_frontdoor_log_dir": "the host folder of the proxy's logs",
        "airlift_frontdoor_state_dir": "the host folder of airlift's state files"},
    "collect_usage.yml": {
        "airlift_collect_archive_dir": "the host folder of the usage archives",
        "airlift_collect_state_dir": "the host folder of airlift's state files",
        "airlift_collect_output_dir": "the host folder of the services' usage records"},
    "rotate.yml": {"airlift_rotate_snapshot_dir": "the host folder of the rollback point"},
    "certificates.yml": {"airlift_frontdoor_ca_dir": "the controller folder of the front "
                                                     "door's CA"},
    "render.yml": {
        "airlift_render_dir": "the controller folder for the renderings",
        "airlift_render_license_dir": "the host folder of the licenses in the renderings",
        "airlift_render_output_dir": "the host folder of the usage records in the renderings",
        "airlift_render_mounts_dir": "the host folder of the extra mounts in the renderings"},
}


@pytest.mark.parametrize("name", EMPTY_FOLDERS)
def test_an_empty_folder_variable_is_refused_naming_it_before_any_host(tmp_path, name):
    """An empty folder passes the argument spec as a path and would put files under /."""
    emptied = [arg for variable in EMPTY_FOLDERS[name] for arg in ("-e", f"{variable}=")]
    # certificates.yml issues certificates only for hosts with a front door.
    enabled = ["-e", '{"airlift_frontdoor_enabled": true}'] if name == "certificates.yml" else []
    proc = run_file(name.split()[0], ghost_inventory(tmp_path), *emptied, *enabled)
    assert proc.returncode != 0
    for variable, purpose in EMPTY_FOLDERS[name].items():
        assert f"set {variable} to {purpose}" in proc.stdout, proc.stdout[-3000:]
    assert "UNREACHABLE" not in proc.stdout


def test_deploy_stops_on_bad_inventory_before_any_host_is_contacted(tmp_path):
    """The refusals of row 1 (EULA, port, cpus, memory) from deploy.yml itself."""
    inventory = ghost_inventory(
        tmp_path,
        services=[{"name": "a", "catalog": "sim-sentiment", "port": 5000, "cpus": 0},
                  {"name": "b", "catalog": "sim-read", "port": 5000, "memory": "8 gigs"}],
        host_vars={GHOSTS[0]: {"airlift_eula": "Accept"}})
    proc = run_file("deploy.yml", inventory)
    assert proc.returncode != 0
    assert "UNREACHABLE" not in proc.stdout      # no host was contacted
    assert f"{GHOSTS[0]}: inventory.eula [host]" in proc.stdout
    assert "set airlift_eula: accept" in proc.stdout
    for host in GHOSTS:                          # every problem of every host is listed
        assert f"{host}: " in proc.stdout
    assert "repeated: 5000" in proc.stdout
    assert "cpus 0" in proc.stdout and "memory '8 gigs'" in proc.stdout


@pytest.fixture(scope="module")
def hosts():
    lab.up(2)
    return lab.host_names(2)


def recap(output: str, host: str) -> dict[str, int]:
    match = re.search(rf"^{re.escape(host)}\s+:(.*)$", output, re.MULTILINE)
    assert match, f"no recap line for {host}"
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


@pytest.mark.lab
class TestLabFleet:
    def inventory(self, tmp_path: Path, hosts: list[str], host_vars: dict,
                  extra_hosts: tuple[str, ...] = (), **group_vars) -> Path:
        base = {"ansible_connection": "containers.podman.podman", "airlift_eula": "accept",
                "airlift_report_dir": str(tmp_path / "reports"),
                "airlift_waivers": [CLOCK_WAIVER],
                "airlift_services": [{"name": "sentiment", "catalog": "sim-sentiment",
                                      "port": 5000}]}
        data = {"all": {"vars": {**base, **group_vars},
                        "hosts": {h: host_vars.get(h, {}) for h in (*hosts, *extra_hosts)}}}
        path = tmp_path / "inventory.yml"
        path.write_text(yaml.safe_dump(data))
        return path

    def test_overloaded_host_fails_in_all_formats_others_pass(self, tmp_path, hosts):
        heavy = {hosts[1]: {"airlift_services": [
            {"name": "sentiment", "catalog": "sim-sentiment", "port": 5000, "cpus": 8}]}}
        proc = playbook(self.inventory(tmp_path, hosts, heavy))
        assert proc.returncode != 0
        folder = latest_report(tmp_path / "reports")
        report = json.loads((folder / "compliance.json").read_text())
        assert report["hosts"][hosts[0]]["status"] == "PASS"
        assert report["hosts"][hosts[1]]["status"] == "FAIL"
        failed = [r for r in report["hosts"][hosts[1]]["results"] if r["status"] == "FAIL"]
        assert [(r["id"], r["expected"], r["observed"]) for r in failed] == [
            ("host.cores", "8", "2")]
        junit = ET.parse(folder / "compliance.junit.xml").getroot()
        failures = [case.get("name") for suite in junit if suite.get("name") == hosts[1]
                    for case in suite if case.find("failure") is not None]
        assert failures == ["host.cores [host]"]
        markdown = (folder / "compliance.md").read_text()
        assert f"{hosts[1]}: host.cores [host] expected 8, observed 2" in markdown
        html = (folder / "compliance.html").read_text()
        assert [(row["check"].split()[0], row["hosts"]) for row in
                table_rows(html, "failures")] == [("host.cores", f"1 host(s): {hosts[1]}")]
        [fleet] = table_rows(html, "hosts-summary")
        assert (fleet["passed"], fleet["failed"], fleet["unreported"]) == ("1", "1", "0")
        # The failing host stopped itself only.
        assert recap(proc.stdout, hosts[0])["failed"] == 0
        assert recap(proc.stdout, hosts[1])["failed"] == 1

    def test_waiver_turns_failure_into_waived_and_expired_waiver_fails(self, tmp_path, hosts):
        heavy = {"airlift_services": [
            {"name": "sentiment", "catalog": "sim-sentiment", "port": 5000, "cpus": 8}]}
        for expires, rc_ok, status in (("2999-01-01", True, "WAIVED"),
                                       ("2020-01-01", False, "FAIL")):
            waivers = [CLOCK_WAIVER, {"check": "host.cores", "expires": expires,
                                      "justification": "capacity test"}]
            inv = self.inventory(tmp_path, hosts, {hosts[1]: {**heavy,
                                                              "airlift_waivers": waivers}})
            proc = playbook(inv)
            assert (proc.returncode == 0) is rc_ok, proc.stdout[-2000:]
            report = json.loads((latest_report(tmp_path / "reports") /
                                 "compliance.json").read_text())
            cores = next(r for r in report["hosts"][hosts[1]]["results"]
                         if r["id"] == "host.cores")
            assert cores["status"] == status

    def test_limited_run_still_writes_the_report_of_the_hosts_it_ran_on(self, tmp_path, hosts):
        proc = playbook(self.inventory(tmp_path, hosts, {}), "--limit", hosts[1])
        assert proc.returncode == 0, proc.stdout[-2000:]
        report = json.loads((latest_report(tmp_path / "reports") /
                             "compliance.json").read_text())
        assert list(report["hosts"]) == [hosts[1]]
        assert report["hosts"][hosts[1]]["status"] == "PASS"

    def test_unreachable_host_is_reported_not_dropped(self, tmp_path, hosts):
        proc = playbook(self.inventory(tmp_path, hosts, {}, extra_hosts=("airlift-lab-ghost",)))
        assert "UNREACHABLE" in proc.stdout
        report = json.loads((latest_report(tmp_path / "reports") /
                             "compliance.json").read_text())
        assert report["hosts"]["airlift-lab-ghost"]["status"] == "UNREPORTED"
        assert report["hosts"][hosts[0]]["status"] == "PASS"
        junit = (latest_report(tmp_path / "reports") / "compliance.junit.xml").read_text()
        assert 'name="airlift-lab-ghost" tests="1" failures="0" errors="1"' in junit

    def test_bad_inventory_stops_before_any_host_is_contacted(self, tmp_path, hosts):
        inv = self.inventory(tmp_path, hosts, {hosts[0]: {"airlift_eula": ""}},
                             extra_hosts=("airlift-lab-ghost",),
                             airlift_services=[{"name": "a", "catalog": "nope", "port": 5000}])
        proc = playbook(inv)
        assert proc.returncode != 0
        assert "UNREACHABLE" not in proc.stdout  # the ghost host was never contacted
        assert f"{hosts[0]}: inventory.eula [host]" in proc.stdout
        assert "set airlift_eula: accept" in proc.stdout
        assert "unknown catalog entry 'nope'" in proc.stdout
        assert not (tmp_path / "reports").exists()

    def test_stop_on_failure_stops_every_host(self, tmp_path, hosts):
        heavy = {hosts[1]: {"airlift_services": [
            {"name": "sentiment", "catalog": "sim-sentiment", "port": 5000, "cpus": 8}]}}
        proc = playbook(self.inventory(tmp_path, hosts, heavy,
                                       airlift_preflight_stop_on_failure=True))
        assert recap(proc.stdout, hosts[0])["failed"] == 1
        assert "elsewhere in the fleet" in proc.stdout
        assert recap(proc.stdout, hosts[1])["failed"] == 1

    def test_check_mode_changes_nothing(self, tmp_path, hosts):
        proc = playbook(self.inventory(tmp_path, hosts, {}), "--check")
        assert proc.returncode == 0, proc.stdout[-2000:]
        for host in hosts:
            assert recap(proc.stdout, host)["changed"] == 0
