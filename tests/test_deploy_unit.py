"""Deploy's unit descriptions and the podman/docker unit templates, rendered."""

from __future__ import annotations

import shlex

import jinja2
import pytest
from conftest import ROOT

from airlift import catalog, deploy

CATALOG = catalog.load()
STATE = {
    "images": {"images": {"localhost/airlift-sim/read:1.0": {"id": "sha256:abc123"},
                          "localhost/airlift-sim/speech-to-text:1.0": {"id": "sha256:def"}}},
    "licenses": {"licenses": {"read": {"sha256": "11"}, "stt": {"sha256": "22"}}},
}
SERVICES = [
    {"name": "read", "catalog": "sim-read", "port": 5001, "memory": "1g",
     "settings": {"Logging:Console:LogLevel:Default": "Information"}},
    {"name": "stt", "catalog": "sim-speech-to-text", "port": 5002, "cpus": 1},
]


def plan():
    return deploy.units(SERVICES, CATALOG, STATE, "/var/lib/airlift/licenses",
                        "/var/lib/airlift/output", 120)


def test_units_pin_image_id_and_license_hash_and_use_catalog_defaults():
    read, stt = plan()
    assert read["image_id"] == "abc123" and read["license_sha256"] == "11"
    assert read["memory"] == "1024m" and read["cpus"] == 0.25
    assert stt["memory"] == "128m" and stt["cpus"] == 1
    assert stt["owner"] == 1001 and stt["ready_timeout"] == 60
    assert stt["output_dir"] == "/var/lib/airlift/output/stt"


def test_missing_image_or_license_says_run_distribute():
    with pytest.raises(deploy.DeployError, match=r"run playbooks/distribute\.yml first"):
        deploy.units(SERVICES, CATALOG, {"images": {}, "licenses": {}}, "/l", "/o", 120)


def test_stale_units_are_those_not_assigned_any_more():
    files = ["/etc/systemd/system/airlift-read.service", "/etc/systemd/system/airlift-old.service"]
    assert deploy.stale_units(files, SERVICES) == ["/etc/systemd/system/airlift-old.service"]


def render(engine: str, unit: dict, **extra) -> str:
    templates = ROOT / "roles/airlift_deploy/templates"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates),
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    values = {"ansible_managed": "managed", "airlift_eula": "accept",
              "airlift_deploy_restart_sec": 10, "airlift_deploy_stop_timeout": 30,
              "airlift_deploy_bind_address": "127.0.0.1", "airlift_deploy_run_options": [],
              "__airlift_deploy_unit": unit, **extra}
    return env.get_template(f"{engine}.service.j2").render(values)


def exec_start(text: str) -> list[str]:
    joined = text.replace("\\\n", " ")
    line = next(line for line in joined.splitlines() if line.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.mark.parametrize("engine", ["podman", "docker"])
def test_unit_runs_the_disconnected_contract(engine):
    text = render(engine, plan()[0], airlift_deploy_run_options=["--cgroupns=private"])
    args = exec_start(text)
    assert args[0] == f"/usr/bin/{engine}"
    assert args[args.index("--publish") + 1] == "127.0.0.1:5001:5000"
    assert "/var/lib/airlift/licenses/read:/license:ro" in args
    assert "/var/lib/airlift/output/read:/output" in args
    assert args[args.index("--memory") + 1] == "1024m"
    assert "--cgroupns=private" in args
    tail = args[args.index("abc123"):]
    assert tail[:4] == ["abc123", "Eula=accept", "Mounts:License=/license",
                        "Mounts:Output=/output"]
    assert "Logging:Console:LogLevel:Default=Information" in tail
    assert not any(arg.lower().startswith(("billing=", "apikey=")) for arg in args)
    assert "Restart=always" in text and "WantedBy=multi-user.target" in text
    assert "Environment=AIRLIFT_LICENSE_SHA256=11" in text


def test_podman_unit_uses_sdnotify_and_removes_stale_containers():
    text = render("podman", plan()[0])
    assert "Type=notify" in text and "--replace" in exec_start(text)
    assert "ExecStopPost=/usr/bin/podman rm --force --ignore" in text


def test_docker_unit_removes_a_stale_container_before_start():
    text = render("docker", plan()[0])
    assert "ExecStartPre=-/usr/bin/docker rm --force airlift-read" in text
    assert "Requires=docker.service" in text
