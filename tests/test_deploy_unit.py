"""Deploy's unit descriptions and the podman/docker unit templates, rendered."""

from __future__ import annotations

import importlib.util
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
                        "/var/lib/airlift/output", 120, bind_address="127.0.0.1")


PAIR = [  # listed dependent first: the plan must still start layout first
    {"name": "custom", "catalog": "sim-custom-template", "port": 5011},
    {"name": "layout", "catalog": "sim-layout", "port": 5010},
]
PAIR_STATE = {
    "images": {"images": {"localhost/airlift-sim/layout:1.0": {"id": "sha256:aaa"},
                          "localhost/airlift-sim/custom-template:1.0": {"id": "sha256:bbb"}}},
    "licenses": {"licenses": {"layout": {"sha256": "33"}, "custom": {"sha256": "44"}}},
}


# The Document Intelligence pair's catalog entries mount one Shared folder.
SHARED_SETTINGS = {"Mounts:Shared": "/shared", "SharedRootFolder": "/shared"}


def pair_plan(bind_address: str = "127.0.0.1", services=PAIR):
    return deploy.units(services, CATALOG, PAIR_STATE, "/l", "/o", 120,
                        bind_address=bind_address, bridge_address="10.88.0.1")


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


def test_dependency_starts_first_and_gets_its_address_filled():
    layout, custom = pair_plan()
    assert [layout["name"], custom["name"]] == ["layout", "custom"]
    assert custom["requires"] == custom["after"] == ["airlift-layout.service"]
    assert custom["settings"] == {
        "AzureCognitiveServiceLayoutHost": "http://10.88.0.1:5010", **SHARED_SETTINGS}
    assert layout["requires"] == [] and layout["settings"] == SHARED_SETTINGS
    # Behind the front door only loopback is published, plus the bridge for the one needed.
    assert layout["publish"] == ["127.0.0.1:5010", "10.88.0.1:5010"]
    assert custom["publish"] == ["127.0.0.1:5011"]


def test_dependency_on_every_address_needs_no_bridge_publish():
    layout, _ = pair_plan(bind_address="0.0.0.0")
    assert layout["publish"] == ["0.0.0.0:5010"]


def test_own_setting_wins_over_the_filled_address():
    services = [{**PAIR[0], "settings": {"AzureCognitiveServiceLayoutHost": "http://far:5000"}},
                PAIR[1]]
    units = {unit["name"]: unit for unit in pair_plan(services=services)}
    layout, custom = units["layout"], units["custom"]
    assert custom["settings"] == {"AzureCognitiveServiceLayoutHost": "http://far:5000",
                                  **SHARED_SETTINGS}
    assert custom["requires"] == [] and layout["publish"] == ["127.0.0.1:5010"]


def test_missing_dependency_is_refused_before_any_unit():
    with pytest.raises(deploy.DeployError, match=r"needs a sim-layout service on the same host"):
        pair_plan(services=[PAIR[0]])


@pytest.mark.parametrize("engine", ["podman", "docker"])
def test_dependent_unit_is_ordered_after_and_reaches_the_gateway(engine):
    layout, custom = pair_plan()
    text = render(engine, custom)
    assert "Requires=airlift-layout.service" in text.splitlines()
    assert "After=airlift-layout.service" in text.splitlines()
    args = exec_start(text)
    assert "AzureCognitiveServiceLayoutHost=http://10.88.0.1:5010" in args
    layout_args = exec_start(render(engine, layout))
    published = [layout_args[i + 1] for i, arg in enumerate(layout_args) if arg == "--publish"]
    assert published == ["127.0.0.1:5010:5000", "10.88.0.1:5010:5000"]
    assert "airlift-" not in "".join(line for line in render(engine, layout).splitlines()
                                    if line.startswith(("Requires=", "After=")))


def test_stale_units_are_those_not_assigned_any_more():
    files = ["/etc/systemd/system/airlift-read.service", "/etc/systemd/system/airlift-old.service",
             "/etc/systemd/system/airlift-frontdoor.service"]  # the front door role's
    assert deploy.stale_units(files, SERVICES) == ["/etc/systemd/system/airlift-old.service"]


def deploy_filters() -> dict:
    """The deploy role's filters, as Ansible loads them for its templates."""
    spec = importlib.util.spec_from_file_location(
        "airlift_deploy_filters", ROOT / "plugins/filter/airlift_deploy.py")
    code = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code)
    return code.FilterModule().filters()


def render(engine: str, unit: dict, **extra) -> str:
    templates = ROOT / "roles/airlift_deploy/templates"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates),
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    env.filters.update(deploy_filters())
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


@pytest.mark.parametrize("engine", ["podman", "docker"])
def test_shared_mount_is_one_host_folder_for_the_pair(engine):
    layout, custom = pair_plan()
    assert layout["mounts"] == custom["mounts"] == [
        {"name": "shared", "source": "/var/lib/airlift/mounts/shared", "target": "/shared",
         "read_only": False}]
    args = exec_start(render(engine, custom))
    assert args[args.index("/var/lib/airlift/mounts/shared:/shared") - 1] == "--volume"
    assert "Mounts:Shared=/shared" in args and "SharedRootFolder=/shared" in args
    # Deploy creates the folder once, for both services.
    assert deploy.mount_dirs([layout, custom], read_only=False) == [
        {"path": "/var/lib/airlift/mounts/shared", "owner": 0, "services": ["layout", "custom"]}]
    assert deploy.mount_dirs([layout, custom], read_only=True) == []


def test_service_chooses_its_mount_folder_and_read_only_mounts_say_so():
    models = {**CATALOG["sim-read"],
              "mounts": [{"name": "models", "target": "/usr/local/models", "read_only": True}]}
    catalog_ = {**CATALOG, "sim-read": models}
    services = [{**SERVICES[0], "mounts": {"models": "/srv/models/read"}}]
    (read,) = deploy.units(services, catalog_, STATE, "/l", "/o", 120)
    assert read["mounts"] == [{"name": "models", "source": "/srv/models/read",
                               "target": "/usr/local/models", "read_only": True}]
    assert "/srv/models/read:/usr/local/models:ro" in exec_start(render("podman", read))
    assert deploy.mount_dirs([read], read_only=True) == [
        {"path": "/srv/models/read", "owner": 0, "services": ["read"]}]
    # No mount settings declared: none added.
    assert read["settings"] == SERVICES[0]["settings"]


GPU_STATE = {
    "images": {"images": {CATALOG["summarization-gpu"]["image"]: {"id": "sha256:ggg"}}},
    "licenses": {"licenses": {"sum": {"sha256": "55"}, "sum2": {"sha256": "66"}}},
}


def gpu_units(services):
    return deploy.units(services, CATALOG, GPU_STATE, "/l", "/o", 120)


def test_podman_unit_hands_over_each_gpu_through_cdi():
    services = [{"name": "sum", "catalog": "summarization-gpu", "port": 5000},
                {"name": "sum2", "catalog": "summarization-gpu", "port": 5001, "gpus": 2}]
    first, second = (exec_start(render("podman", unit)) for unit in gpu_units(services))
    assert [first[i + 1] for i, a in enumerate(first) if a == "--device"] == [
        "nvidia.com/gpu=0"]
    assert [second[i + 1] for i, a in enumerate(second) if a == "--device"] == [
        "nvidia.com/gpu=1", "nvidia.com/gpu=2"]
    every = gpu_units([{"name": "sum", "catalog": "summarization-gpu", "port": 5000,
                        "gpus": "all"}])[0]
    args = exec_start(render("podman", every))
    assert args[args.index("--device") + 1] == "nvidia.com/gpu=all"
    # The image still comes last but for its arguments: the devices are options.
    assert args.index("--device") < args.index("ggg")


def test_docker_unit_hands_over_gpus_with_its_quoting():
    services = [{"name": "sum", "catalog": "summarization-gpu", "port": 5000, "gpus": [1, 3]}]
    args = exec_start(render("docker", gpu_units(services)[0]))
    # systemd passes '"device=1,3"' as "device=1,3": docker reads --gpus as CSV.
    assert args[args.index("--gpus") + 1] == '"device=1,3"'
    every = [{"name": "sum", "catalog": "summarization-gpu", "port": 5000, "gpus": "all"}]
    assert exec_start(render("docker", gpu_units(every)[0])).count("--gpus") == 1


@pytest.mark.parametrize("engine", ["podman", "docker"])
def test_units_without_gpu_carry_none(engine):
    args = exec_start(render(engine, plan()[0]))
    assert "--device" not in args and "--gpus" not in args


def test_conflicting_gpus_are_refused_before_any_unit():
    services = [{"name": "sum", "catalog": "summarization-gpu", "port": 5000, "gpus": [0]},
                {"name": "sum2", "catalog": "summarization-gpu", "port": 5001, "gpus": [0]}]
    with pytest.raises(deploy.DeployError, match="sum and sum2 both ask for GPU 0"):
        gpu_units(services)
