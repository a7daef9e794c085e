"""The airlift_usage callback inside real ansible-playbook runs (local hosts, no lab)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, free_port

PLAYBOOK = ROOT / "tests" / "data" / "usage_emit.yml"
API_KEY = "5e1f" * 8  # looks like an Azure resource key
HOSTS = ["h1", "h2", "h3", "h4", "h5"]


def usage(service_qty: dict[str, int], run_dir: str | None = None) -> dict:
    services = [{"name": name, "catalog": f"sim-{name}", "collected_via": "running",
                 "api_key": API_KEY,  # not a documented field: must not reach a report
                 "all_time": {"apiType": "T", "serviceName": name,
                              "meters": [{"name": f"{name}.calls", "quantity": qty}]},
                 "months": {"2026-10": {"apiType": "T", "meters": [
                     {"name": f"{name}.calls", "quantity": qty // 2}]}},
                 "archive": {"path": f"raw/{name}.tar.gz", "sha256": "ab" * 32, "size": 10}}
                for name, qty in service_qty.items()]
    return {"schema": 1, "collected_at": "2026-11-22T07:00:00Z", "services": services,
            **({"run_dir": run_dir} if run_dir else {})}


def make_inventory(tmp_path: Path, run_dir: str | None = None) -> Path:
    port = free_port()  # bound and released: nothing listens there
    local = f"ansible_connection=local ansible_python_interpreter={sys.executable}"
    (tmp_path / "inventory.ini").write_text(
        "[fleet]\n" + "".join(f"{host} {local}\n" for host in ["h1", "h2", "h3", "h5"])
        + f"h4 ansible_connection=ssh ansible_host=127.0.0.1 ansible_port={port} "
          "ansible_ssh_common_args='-o ConnectTimeout=3 -o StrictHostKeyChecking=no "
          "-o UserKnownHostsFile=/dev/null'\n"
        # sites as groups (airlift_usage's site_group_pattern, site_* by default); h5 in none
        "[site_east]\nh1\nh2\n[site_west]\nh3\nh4\n[sites:children]\nsite_east\nsite_west\n")
    host_vars = tmp_path / "host_vars"
    host_vars.mkdir()
    data = {"h1": {"airlift_usage": usage({"sentiment": 100, "read": 7}, run_dir)},
            "h2": {"airlift_usage": usage({"sentiment": 50})},
            "h3": {"usage_fail_msg": f"could not start a temporary instance: ApiKey={API_KEY}",
                   "airlift_usage": usage({"sentiment": 1000})},
            "h4": {"airlift_usage": usage({"sentiment": 1000})},
            "h5": {"airlift_usage": usage({"sentiment": 1000})}}
    for host, host_data in data.items():
        host_data["azure_api_key"] = API_KEY
        (host_vars / f"{host}.yml").write_text(yaml.safe_dump(host_data))
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "fleet.yml").write_text(yaml.safe_dump(
        {"airlift_usage_commitments": {"sentiment": {2026: 200}}}))
    return tmp_path / "inventory.ini"


def run(tmp_path: Path, inventory: Path, *args: str,
        **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **extra_env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CALLBACKS_ENABLED": "airlift_usage",
           "ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "plugins" / "callback"),
           "AIRLIFT_USAGE_REPORT_DIR": str(tmp_path / "reports")}
    playbook = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run([str(playbook), "-i", str(inventory), str(PLAYBOOK), *args],
                          capture_output=True, text=True, cwd=tmp_path, env=env, check=False,
                          timeout=180)


def report_files(tmp_path: Path) -> list[Path]:
    return sorted(path for path in tmp_path.rglob("usage-report.*") if path.is_file())


def test_report_statuses_totals_limit_and_no_secret(tmp_path):
    inventory = make_inventory(tmp_path)
    proc = run(tmp_path, inventory, "--limit", "fleet:!h5")
    assert proc.returncode != 0  # h3 failed, h4 unreachable
    files = report_files(tmp_path)
    assert [path.name for path in files] == ["usage-report.csv", "usage-report.html",
                                             "usage-report.json"], proc.stdout + proc.stderr
    assert files[0].parent.parent == tmp_path / "reports"  # <report_dir>/<UTC timestamp>
    report = json.loads(files[2].read_text())
    hosts = {entry["host"]: entry for entry in report["hosts"]}
    assert sorted(hosts) == ["h1", "h2", "h3", "h4"]  # --limit respected, none missing
    assert {h: e["status"] for h, e in hosts.items()} == {
        "h1": "reported", "h2": "reported", "h3": "failed", "h4": "unreachable"}
    assert "could not start a temporary instance" in hosts["h3"]["reason"]
    assert hosts["h4"]["reason"]
    assert "services" not in hosts["h3"] and "services" not in hosts["h4"]
    assert report["hosts_summary"] == {"expected": 4, "reported": 2,
                                       "reported_with_errors": 0, "failed": 1,
                                       "unreachable": 1}
    meters = report["totals"]["sentiment"]["meters"]["sentiment.calls"]
    assert meters["all_time"] == 150 and meters["all_time_hosts"] == 2
    assert meters["months"] == {"2026-10": 75}
    assert report["totals"]["read"]["meters"]["read.calls"]["all_time"] == 7
    h1 = {svc["name"]: svc for svc in hosts["h1"]["services"]}
    assert h1["sentiment"]["collected_via"] == "running"
    assert h1["sentiment"]["archive"]["sha256"] == "ab" * 32
    [commitment] = report["commitments"]
    assert (commitment["service"], commitment["year"], commitment["used"]) == ("sentiment",
                                                                               2026, 75)
    assert report["run"]["playbook"] == "usage_emit.yml"
    assert report["run"]["inventory"] == [str(inventory)]
    assert {h: e.get("site") for h, e in hosts.items()} == {
        "h1": "site_east", "h2": "site_east", "h3": "site_west", "h4": "site_west"}
    page = files[1].read_text()
    assert "<h2>Per site</h2>" in page and str(inventory) in page
    assert f"open in a browser: {files[1]}" in proc.stdout
    assert "airlift usage: 2 of 4 host(s) reported, 1 failed, 1 unreachable" in proc.stdout
    with files[0].open() as handle:
        rows = list(csv.DictReader(handle))
    assert {row["host"] for row in rows if row["record_type"] == "host"} == {"h3", "h4"}
    assert all(row["quantity"] == "" for row in rows if row["record_type"] == "host")
    for path in files:
        assert API_KEY not in path.read_text(), path
    summary = proc.stdout[proc.stdout.index("airlift usage:"):].split("\n\n")[0]
    assert "report: " in summary and "h3 failed" in summary and "h4 unreachable" in summary
    assert API_KEY not in summary


def test_run_dir_from_results_and_serial_batches(tmp_path):
    run_dir = tmp_path / "run"
    inventory = make_inventory(tmp_path, run_dir=str(run_dir))
    proc = run(tmp_path, inventory, "-e", "usage_serial=2",
               AIRLIFT_USAGE_SITE_GROUP_PATTERN="")  # no grouping by site
    report = json.loads((run_dir / "usage-report.json").read_text())
    assert not any("site" in entry for entry in report["hosts"])
    assert "Per site" not in (run_dir / "usage-report.html").read_text()
    assert {e["host"]: e["status"] for e in report["hosts"]} == {
        "h1": "reported", "h2": "reported", "h3": "failed", "h4": "unreachable",
        "h5": "reported"}, proc.stdout
    assert report["totals"]["sentiment"]["meters"]["sentiment.calls"]["all_time"] == 1150
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("extra", [("-e", "emit_usage=false")])
def test_run_without_usage_results_writes_nothing(tmp_path, extra):
    inventory = make_inventory(tmp_path)
    proc = run(tmp_path, inventory, *extra)
    assert "PLAY RECAP" in proc.stdout
    assert report_files(tmp_path) == []
    assert not (tmp_path / "reports").exists()
    assert "airlift usage" not in proc.stdout


def test_collection_where_no_host_reports_lists_every_host(tmp_path):
    """Every host failed, unreachable or silent: the marked play still gets its report."""
    inventory = make_inventory(tmp_path)
    run_dir = tmp_path / "run" / "usage"
    proc = run(tmp_path, inventory, "--limit", "h1,h3,h4", "-e", "emit_usage=false",
               "-e", f"collection_run_dir={run_dir}")
    assert proc.returncode != 0
    assert sorted(path.name for path in run_dir.iterdir()) == [
        "usage-report.csv", "usage-report.html", "usage-report.json"], proc.stdout
    report = json.loads((run_dir / "usage-report.json").read_text())
    assert {entry["host"]: entry["status"] for entry in report["hosts"]} == {
        "h1": "failed", "h3": "failed", "h4": "unreachable"}
    assert all(entry["reason"] and "services" not in entry for entry in report["hosts"])
    assert report["totals"] == {} and report["run"]["run_dir"] == str(run_dir)
    assert "airlift usage: 0 of 3 host(s) reported, 2 failed, 1 unreachable" in proc.stdout
    assert not (tmp_path / "reports").exists()
