"""Services that need each other on one host: a Document Intelligence pair of simulators
(custom template needs layout), deployed behind loopback as the front door does."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from conftest import run_playbook

from airlift import lab, podman

pytestmark = pytest.mark.lab

CUSTOM = {"name": "custom", "catalog": "sim-custom-template", "port": 5011}
LAYOUT = {"name": "layout", "catalog": "sim-layout", "port": 5010}
ROUTE = "/formrecognizer/documentModels/custom:syncAnalyze"


def on(host: str, *command: str, check: bool = True) -> str:
    return podman.run(["exec", host, *command], check=check).stdout


def http(host: str, url: str, post: bool = False) -> tuple[int, dict]:
    """Status and JSON body of a request made on the host (0 when nothing answers)."""
    code = (
        "import json,sys,urllib.request as u\n"
        "req = u.Request(sys.argv[1], data=b'{}' if sys.argv[2] == 'post' else None)\n"
        "try:\n"
        " r = u.urlopen(req, timeout=5); print(r.status, r.read().decode())\n"
        "except u.HTTPError as e: print(e.code, e.read().decode())\n"
        "except OSError: print(0, '{}')\n")
    status, body = on(host, "python3", "-c", code, url, "post" if post else "get").split(" ", 1)
    return int(status), json.loads(body)


def wait_ready(host: str, port: int, tries: int = 60) -> None:
    for _ in range(tries):
        if http(host, f"http://127.0.0.1:{port}/ready")[0] == 200:
            return
        subprocess.run(["sleep", "1"], check=True)
    raise AssertionError(f"{host}:{port} not ready")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    lab.ensure_simulator_images(services=["layout", "custom-template"])
    lab.up(1)
    host = lab.host_names(1)[0]
    work = tmp_path_factory.mktemp("pair")
    extra = work / "vars.yml"
    extra.write_text(yaml.safe_dump({
        "airlift_services": [CUSTOM, LAYOUT],  # dependent first: airlift must reorder
        "airlift_deploy_bind_address": "127.0.0.1",  # as behind the front door
        "airlift_stage_bundle_dir": str(work / "bundle"),
        "airlift_distribute_bundle_dir": str(work / "bundle"),
    }))
    args = ["--limit", host, "-e", f"@{extra}"]
    # Staging runs on the controller (localhost): no --limit, or it would do nothing.
    proc = run_playbook("playbooks/stage.yml", "-e", f"@{extra}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    for playbook in ("playbooks/distribute.yml", "playbooks/deploy.yml"):
        proc = run_playbook(playbook, *args)
        assert proc.returncode == 0, proc.stdout[-3000:]
    yield host, args
    on(host, "sh", "-c", "systemctl disable --now airlift-custom airlift-layout; "
       "rm -f /etc/systemd/system/airlift-custom.service "
       "/etc/systemd/system/airlift-layout.service; systemctl daemon-reload", check=False)


def test_dependent_starts_after_what_it_needs_and_answers_through_it(pair):
    host, _ = pair
    shown = on(host, "systemctl", "show", "--property", "Requires,After", "airlift-custom")
    assert "airlift-layout.service" in shown.split("Requires=")[1].split("\n")[0]
    assert "airlift-layout.service" in shown.split("After=")[1]
    started = {
        name: int(on(host, "systemctl", "show", "--value", "--property",
                     "ActiveEnterTimestampMonotonic", f"airlift-{name}").strip())
        for name in ("layout", "custom")}
    assert 0 < started["layout"] <= started["custom"]
    status, body = http(host, f"http://127.0.0.1:{CUSTOM['port']}{ROUTE}", post=True)
    assert status == 200, body
    # The address airlift filled in: the layout's port on the bridge gateway.
    assert body["upstream"] == f"http://10.88.0.1:{LAYOUT['port']}"


def test_ports_are_on_loopback_only_except_the_one_containers_need(pair):
    host, _ = pair
    gateway = "10.88.0.1"
    assert http(host, f"http://{gateway}:{CUSTOM['port']}/ready")[0] == 0
    assert http(host, f"http://127.0.0.1:{CUSTOM['port']}/ready")[0] == 200
    assert http(host, f"http://{gateway}:{LAYOUT['port']}/ready")[0] == 200


def test_stopping_the_dependency_stops_the_dependent_and_starting_it_pulls_both(pair):
    host, _ = pair
    on(host, "systemctl", "stop", "airlift-layout")
    assert on(host, "systemctl", "is-active", "airlift-custom", check=False).strip() \
        == "inactive"
    on(host, "systemctl", "start", "airlift-custom")
    assert on(host, "systemctl", "is-active", "airlift-layout").strip() == "active"
    wait_ready(host, LAYOUT["port"])
    wait_ready(host, CUSTOM["port"])


def test_rerun_changes_nothing(pair):
    host, args = pair
    proc = run_playbook("playbooks/deploy.yml", *args, json_output=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert json.loads(proc.stdout)["stats"][host]["changed"] == 0


def test_missing_dependency_is_refused_before_the_host_changes(pair, tmp_path):
    host, args = pair
    unit = "/etc/systemd/system/airlift-custom.service"
    before = on(host, "stat", "--format", "%Y %s", unit)
    alone = tmp_path / "alone.yml"
    alone.write_text(yaml.safe_dump({"airlift_services": [CUSTOM]}))
    proc = run_playbook("playbooks/deploy.yml", *args, "-e", f"@{alone}")
    assert proc.returncode != 0
    assert "needs a sim-layout service on the same host" in proc.stdout
    assert "add one to this host's airlift_services" in proc.stdout
    assert on(host, "stat", "--format", "%Y %s", unit) == before
    assert on(host, "systemctl", "is-active", "airlift-layout").strip() == "active"
