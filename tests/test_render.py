"""Kubernetes and compose renderings of the example inventory, parsed and checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import EXAMPLE_VAULT, ROOT, flat

from airlift.units import to_mb


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("rendered")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    proc = subprocess.run(["ansible-playbook", "-i", "inventories/example", *EXAMPLE_VAULT,
                           "playbooks/render.yml", "-e", f"airlift_render_dir={out}"],
                          capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:]
    return out / "north-ai-01.enclave.local"


def test_kubernetes_deployments_follow_the_contract(rendered):
    docs = [doc for doc in yaml.safe_load_all((rendered / "kubernetes.yml").read_text()) if doc]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert set(deployments) == set(services) == {"airlift-sentiment", "airlift-language"}
    container = deployments["airlift-sentiment"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env == {"Eula": "accept", "Mounts__License": "/license", "Mounts__Output": "/output"}
    assert not [name for name in env if ":" in name]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 5000}
    assert container["resources"]["limits"] == {"cpu": "4", "memory": f"{to_mb('8g')}Mi"}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/license"]["readOnly"] is True
    volumes = deployments["airlift-sentiment"]["spec"]["template"]["spec"]["volumes"]
    assert {v["name"]: v["hostPath"]["path"] for v in volumes} == {
        "license": "/var/lib/airlift/licenses/sentiment",
        "output": "/var/lib/airlift/output/sentiment"}
    assert services["airlift-language"]["spec"]["ports"][0] == {
        "name": "http", "port": 5001, "targetPort": 5000}


def test_compose_file_matches_the_units(rendered):
    compose = yaml.safe_load((rendered / "compose.yml").read_text())["services"]
    assert set(compose) == {"sentiment", "language"}
    sentiment = compose["sentiment"]
    assert sentiment["ports"] == ["0.0.0.0:5000:5000"]
    assert sentiment["command"][:3] == ["Eula=accept", "Mounts:License=/license",
                                        "Mounts:Output=/output"]
    assert "/var/lib/airlift/licenses/sentiment:/license:ro" in sentiment["volumes"]
    assert sentiment["restart"] == "always" and sentiment["cpus"] == 4


@pytest.fixture(scope="module")
def rendered_gpu_hosts(tmp_path_factory):
    """One render of two hosts: north-ai-02 runs a Document Intelligence pair (custom
    template needs layout) and two summarization GPU services; north-ai-03 runs a
    summarization service with `gpus: all`. Each host's services come as host vars from
    a second inventory source, so one run renders both."""
    out = tmp_path_factory.mktemp("rendered-gpu-hosts")
    pair = [{"name": "custom", "catalog": "di-custom-template", "port": 5011},
            {"name": "layout", "catalog": "di-layout", "port": 5010},
            # Two GPU services on the host: GPU 0, then GPUs 1 and 2.
            {"name": "sum", "catalog": "summarization-gpu", "port": 5020},
            {"name": "sum2", "catalog": "summarization-gpu", "port": 5021, "gpus": 2}]
    every = [{"name": "everything", "catalog": "summarization-gpu", "port": 5013,
              "gpus": "all"}]
    hosts = out / "gpu-hosts.yml"
    hosts.write_text(yaml.safe_dump({"all": {"hosts": {
        "north-ai-02.enclave.local": {"airlift_services": pair},
        "north-ai-03.enclave.local": {"airlift_services": every}}}}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    proc = subprocess.run(["ansible-playbook", "-i", "inventories/example", "-i", str(hosts),
                           *EXAMPLE_VAULT, "playbooks/render.yml",
                           "--limit", "north-ai-02.enclave.local,north-ai-03.enclave.local",
                           "-e", f"airlift_render_dir={out}"],
                          capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:]
    return out


@pytest.fixture(scope="module")
def rendered_pair(rendered_gpu_hosts):
    return rendered_gpu_hosts / "north-ai-02.enclave.local"


@pytest.fixture(scope="module")
def rendered_all_gpus(rendered_gpu_hosts):
    return rendered_gpu_hosts / "north-ai-03.enclave.local"


def test_needed_service_is_reached_by_its_name_on_each_target(rendered_pair):
    compose = yaml.safe_load((rendered_pair / "compose.yml").read_text())["services"]
    assert [name for name in compose if name in ("layout", "custom")] == ["layout", "custom"]
    assert compose["custom"]["depends_on"] == ["layout"]
    assert "AzureCognitiveServiceLayoutHost=http://layout:5000" in compose["custom"]["command"]
    docs = [doc for doc in yaml.safe_load_all((rendered_pair / "kubernetes.yml").read_text())
            if doc and doc["kind"] == "Deployment"]
    custom = next(d for d in docs if d["metadata"]["name"] == "airlift-custom")
    env = custom["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "AzureCognitiveServiceLayoutHost",
            "value": "http://airlift-layout:5010"} in env
    # Both mount the node's one Shared folder, as the published compose file does.
    shared = "/var/lib/airlift/mounts/shared"
    assert f"{shared}:/shared" in compose["custom"]["volumes"]
    assert f"{shared}:/shared" in compose["layout"]["volumes"]
    spec = custom["spec"]["template"]["spec"]
    volumes = {v["name"]: v["hostPath"] for v in spec["volumes"]}
    assert volumes["mount-shared"] == {"path": shared, "type": "DirectoryOrCreate"}
    assert {"name": "mount-shared", "mountPath": "/shared", "readOnly": False} in (
        spec["containers"][0]["volumeMounts"])
    assert {"name": "Mounts__Shared", "value": "/shared"} in env


def test_setting_names_convert_for_kubernetes():
    from importlib import util

    spec = util.spec_from_file_location("f", ROOT / "plugins/filter/airlift_deploy.py")
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.k8s_env_name("Mounts:License") == "Mounts__License"
    assert module.k8s_env_name("Logging:Console:LogLevel:Default") == \
        "Logging__Console__LogLevel__Default"
    assert module.k8s_env_name("Eula") == "Eula"


def test_gpu_services_get_their_gpus_in_compose_and_kubernetes(rendered_pair):
    compose = yaml.safe_load((rendered_pair / "compose.yml").read_text())["services"]
    assert compose["sum"]["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "capabilities": ["gpu"], "device_ids": ["0"]}]
    assert compose["sum2"]["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "capabilities": ["gpu"], "device_ids": ["1", "2"]}]
    assert "deploy" not in compose["layout"]
    docs = {doc["metadata"]["name"]: doc for doc in
            yaml.safe_load_all((rendered_pair / "kubernetes.yml").read_text())
            if doc and doc["kind"] == "Deployment"}
    limits = {name: doc["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
              for name, doc in docs.items()}
    assert limits["airlift-sum"]["nvidia.com/gpu"] == 1
    assert limits["airlift-sum2"]["nvidia.com/gpu"] == 2
    assert "nvidia.com/gpu" not in limits["airlift-layout"]


def test_gpus_all_renders_as_every_gpu_in_compose_and_one_in_kubernetes(rendered_all_gpus):
    compose = yaml.safe_load((rendered_all_gpus / "compose.yml").read_text())["services"]
    assert set(compose) == {"everything"}
    assert compose["everything"]["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "capabilities": ["gpu"], "count": "all"}]
    docs = [doc for doc in yaml.safe_load_all((rendered_all_gpus / "kubernetes.yml").read_text())
            if doc and doc["kind"] == "Deployment"]
    assert [doc["metadata"]["name"] for doc in docs] == ["airlift-everything"]
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    # Kubernetes schedules GPUs by count: `all` asks for one (README, GPU services).
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


@pytest.mark.parametrize("fixture", ["rendered", "rendered_pair", "rendered_all_gpus"])
def test_renderings_pass_the_kubernetes_and_compose_validators(fixture, request):
    """kubernetes-validate --strict and the compose spec's JSON schema (check-jsonschema's
    vendored copy): both offline, both accept the GPU parts."""
    folder = request.getfixturevalue(fixture)
    bin_dir = os.path.dirname(sys.executable)
    kube = subprocess.run([os.path.join(bin_dir, "kubernetes-validate"), "--strict",
                           str(folder / "kubernetes.yml")],
                          capture_output=True, text=True, check=False)
    assert kube.returncode == 0, kube.stdout + kube.stderr
    assert "INFO" in kube.stdout and "ERROR" not in kube.stdout
    compose = subprocess.run([os.path.join(bin_dir, "check-jsonschema"), "--builtin-schema",
                              "vendor.compose-spec", str(folder / "compose.yml")],
                             capture_output=True, text=True, check=False)
    assert compose.returncode == 0, compose.stdout + compose.stderr
    assert "ok -- validation done" in compose.stdout


def test_validators_refuse_a_broken_gpu_rendering(rendered_pair, tmp_path):
    """The validators really look at the GPU parts: a misspelt field or a list for a
    quantity fails."""
    bin_dir = os.path.dirname(sys.executable)
    broken = tmp_path / "compose.yml"
    broken.write_text((rendered_pair / "compose.yml").read_text().replace(
        '"device_ids"', '"device_id"'))
    proc = subprocess.run([os.path.join(bin_dir, "check-jsonschema"), "--builtin-schema",
                           "vendor.compose-spec", str(broken)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    kube = tmp_path / "kubernetes.yml"
    kube.write_text((rendered_pair / "kubernetes.yml").read_text().replace(
        "nvidia.com/gpu: 2}", "nvidia.com/gpu: [2]}"))
    proc = subprocess.run([os.path.join(bin_dir, "kubernetes-validate"), "--strict", str(kube)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0


def test_conflicting_gpus_stop_the_render_naming_the_fix(tmp_path):
    services = [{"name": "sum", "catalog": "summarization-gpu", "port": 5020, "gpus": [0]},
                {"name": "sum2", "catalog": "summarization-gpu", "port": 5021, "gpus": [0]}]
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    proc = subprocess.run(["ansible-playbook", "-i", "inventories/example", *EXAMPLE_VAULT,
                           "playbooks/render.yml", "--limit", "north-ai-02.enclave.local",
                           "-e", f"airlift_render_dir={tmp_path}",
                           "-e", json.dumps({"airlift_services": services})],
                          capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert proc.returncode != 0
    assert ("sum and sum2 both ask for GPU 0: give each its own (gpus: [N]) or set "
            "gpu_shared: true on both") in " ".join(proc.stdout.split())
    assert not list(tmp_path.rglob("*.yml"))


def render(out, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(["ansible-playbook", "-i", "inventories/example", *EXAMPLE_VAULT,
                           "playbooks/render.yml", "-e", f"airlift_render_dir={out}", *extra],
                          capture_output=True, text=True, cwd=ROOT, env=env, check=False)


@pytest.mark.parametrize(("eula", "services", "messages"), [
    ("Accept", [{"name": "a", "catalog": "sentiment", "port": 5000, "cpus": -1},
                {"name": "b", "catalog": "sentiment", "port": 5000, "cpus": 0},
                {"name": "c", "catalog": "nope", "port": 5002}],
     ["inventory.eula [host]", "set airlift_eula: accept in the inventory",
      "fix cpus -1 (use a positive number)", "fix cpus 0 (use a positive number)",
      "give each service its own port; repeated: 5000",
      "unknown catalog entry 'nope'; valid: ",
      "(or add it with airlift_catalog_overrides)"]),
    ("", [{"name": "sentiment", "catalog": "sentiment", "port": 5000}],
     ["set airlift_eula: accept in the inventory"]),
])
def test_render_refuses_what_preflight_and_deploy_refuse_before_writing(tmp_path, eula,
                                                                        services, messages):
    """Before: `Eula=Accept` and `cpu: "-1"` were written, cpus 0 became the catalog
    minimum, a port clash landed in one compose file, an unknown name crashed a filter."""
    out = tmp_path / "rendered"
    proc = render(out, "-e", json.dumps({"airlift_eula": eula, "airlift_services": services}))
    assert proc.returncode != 0
    text = flat(proc.stdout)
    for message in messages:
        assert message in text, proc.stdout[-3000:]
    assert "Stop the run if any host's inventory is wrong" in proc.stdout
    assert not out.exists()   # not a folder, not a file


def test_render_refuses_an_empty_folder_naming_the_variable(tmp_path):
    proc = render("")
    assert proc.returncode != 0
    assert "set airlift_render_dir to the controller folder for the renderings" in proc.stdout
    assert "Create the host's rendering folder" not in proc.stdout
