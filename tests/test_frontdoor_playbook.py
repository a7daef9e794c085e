"""The front door on a lab host through the playbooks: certificates, HTTPS, refusals of a
certificate that cannot work (before any change), preflight's checks, and removal.

The door stands on one podman and one docker host (lab.mixed_fleet); the refusals are
shown on the podman host, HTTPS, metering and removal on both.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import yaml
from conftest import run_playbook

from airlift import ca, lab, podman, traffic

pytestmark = pytest.mark.lab

SERVICES = [{"name": "sentiment", "catalog": "sim-sentiment", "port": 5000}]
TLS = "/etc/airlift/frontdoor/tls"
FETCH = ("import ssl,sys,urllib.request as u\n"
         "ctx = ssl.create_default_context(cafile=sys.argv[2])\n"
         "print(u.urlopen(sys.argv[1], timeout=10, context=ctx).status)\n")


def on(host: str, *command: str, check: bool = True) -> str:
    return podman.run(["exec", host, *command], check=check).stdout


def published_addresses(host: str, container: str) -> list[str]:
    """Host addresses a container's port is published on (docker and podman alike)."""
    ports = json.loads(on(host, lab.host_engine(host), "inspect", "--format",
                          "{{json .NetworkSettings.Ports}}", container))
    return sorted({entry["HostIp"] for entries in ports.values() for entry in entries or []})


def fingerprint(host: str) -> str:
    """Contents and times of everything deploy would change, to prove nothing did."""
    return on(host, "sh", "-c", "stat -c '%n %Y %s' /etc/systemd/system/airlift-*.service "
              "/etc/airlift/frontdoor/nginx.conf /etc/airlift/frontdoor/tls/*; "
              "systemctl show -p MainPID airlift-frontdoor airlift-sentiment")


@pytest.fixture(scope="module")
def door(tmp_path_factory):
    lab.ensure_proxy_image()
    hosts = lab.mixed_fleet()
    host = hosts[0]
    work = tmp_path_factory.mktemp("frontdoor")
    extra = work / "vars.yml"
    extra.write_text(yaml.safe_dump({
        "airlift_services": SERVICES,
        "airlift_frontdoor_enabled": True,
        "airlift_frontdoor_allowed_networks": ["127.0.0.0/8"],
        "airlift_frontdoor_host_names": ["{{ inventory_hostname }}", "localhost"],
        "airlift_frontdoor_ca_dir": str(work / "ca"),
        "airlift_stage_bundle_dir": str(work / "bundle"),
        "airlift_distribute_bundle_dir": str(work / "bundle"),
    }))
    args = ["--limit", host, "-e", f"@{extra}"]
    both = ["--limit", ",".join(hosts), "-e", f"@{extra}"]
    # Staging runs on the controller (localhost): no --limit, or it would do nothing.
    proc = run_playbook("playbooks/stage.yml", "-e", f"@{extra}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    for playbook in ("playbooks/certificates.yml", "playbooks/distribute.yml",
                     "playbooks/deploy.yml"):
        proc = run_playbook(playbook, *both)
        assert proc.returncode == 0, playbook + proc.stdout[-3000:]
    yield {"host": host, "hosts": hosts, "args": args, "both": both, "ca": work / "ca",
           "work": work}
    # Leave the hosts as the rest of the suite expects: no front door.
    run_playbook("playbooks/deploy.yml", "--limit", ",".join(hosts))


@pytest.mark.parametrize("index", [0, 1], ids=["podman", "docker"])
def test_https_answers_verified_against_the_ca_and_the_port_is_loopback_only(door, index):
    host = door["hosts"][index]
    assert on(host, "systemctl", "cat", "airlift-frontdoor").count(
        f"/usr/bin/{lab.host_engine(host)} run ") == 1
    assert on(host, "python3", "-c", FETCH, "https://localhost:15000/ready",
              f"{TLS}/ca.crt").strip() == "200"
    assert published_addresses(host, "airlift-sentiment") == ["127.0.0.1"]
    assert on(host, "stat", "-c", "%a %U", f"{TLS}/server.key").strip() == "600 root"


def test_certificates_rerun_keeps_what_is_valid(door):
    proc = run_playbook("playbooks/certificates.yml", *door["both"], json_output=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    stats = json.loads(proc.stdout)["stats"]
    assert all(entry["changed"] == 0 for entry in stats.values()), stats


@pytest.mark.parametrize("problem", ["names", "expired"])
def test_unusable_certificate_is_refused_before_any_change(door, problem, tmp_path):
    host = door["host"]
    args = list(door["args"])
    if problem == "names":
        wrong = tmp_path / "names.yml"
        wrong.write_text(yaml.safe_dump({"airlift_frontdoor_host_names": ["ai-01.example"]}))
        args += ["-e", f"@{wrong}"]
        expected = "does not name ai-01.example"
    else:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
        ca.issue_server(door["ca"], host, [host, "localhost"], days=2, now=past, force=True)
        expected = "expired on"
    before = fingerprint(host)
    try:
        proc = run_playbook("playbooks/deploy.yml", *args)
        assert proc.returncode != 0
        assert expected in proc.stdout
        assert f"airlift ca issue-server --dir {door['ca']} --host {host}" in proc.stdout
        assert fingerprint(host) == before
        # Preflight reports the same problem as a failed check, for the fleet report.
        preflight = run_playbook("playbooks/preflight.yml", *args)
        assert "frontdoor.certificate" in preflight.stdout and expected in preflight.stdout
    finally:
        proc = run_playbook("playbooks/certificates.yml", *door["args"])
        assert proc.returncode == 0, proc.stdout[-2000:]


def test_demo_traffic_through_the_front_door_is_metered_and_a_refusal_is_named(door):
    host = door["host"]
    planned = traffic.plan(SERVICES, requests=3)
    for each in door["hosts"]:
        metered = traffic.send(each, planned)
        assert metered == {"sentiment": planned[0].expected} and planned[0].expected == 9
    # read is not deployed here: nothing answers on its front-door port.
    missing = traffic.plan([{"name": "read", "catalog": "sim-read", "port": 5001}])
    with pytest.raises(traffic.TrafficError, match=f"{host}: requests through the front door "
                       "failed: .*(refused|Errno)"):
        traffic.send(host, missing)


def test_switching_it_off_removes_proxy_and_key_and_keeps_the_access_log(door):
    for host in door["hosts"]:
        on(host, "python3", "-c", FETCH, "https://localhost:15000/status", f"{TLS}/ca.crt")
    off = door["work"] / "off.yml"
    off.write_text(yaml.safe_dump({"airlift_frontdoor_enabled": False}))
    proc = run_playbook("playbooks/deploy.yml", *door["both"], "-e", f"@{off}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    for host in door["hosts"]:
        switched_off(host)


def switched_off(host: str) -> None:
    assert on(host, "systemctl", "is-active", "airlift-frontdoor", check=False).strip() \
        != "active"
    assert podman.run(["exec", host, "test", "-e", "/etc/airlift/frontdoor"],
                      check=False).returncode == 1
    log = on(host, "cat", "/var/lib/airlift/output/frontdoor/access.log")
    assert '"status":200' in log and '"service":"sentiment"' in log
    # Published on every address again (podman reports it as "", docker as 0.0.0.0).
    assert published_addresses(host, "airlift-sentiment") in (["0.0.0.0"], [""])

