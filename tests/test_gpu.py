"""GPU assignment per host (airlift.gpu): counts, all, indices, sharing, conflicts; a
conflict stops playbooks/deploy.yml before any host is contacted."""

from __future__ import annotations

import re

import pytest
import yaml
from conftest import flat, run_playbook

from airlift import catalog, gpu

CATALOG = catalog.load()


def svc(name, **extra):
    return {"name": name, "catalog": "summarization-gpu", "port": 5000, **extra}


def devices(plan):
    return {name: item["devices"] for name, item in plan.items()}


def test_catalog_default_is_one_gpu_and_services_get_distinct_ones_in_order():
    plan = gpu.assign([svc("a"), {"name": "s", "catalog": "sentiment"}, svc("b")], CATALOG)
    assert devices(plan) == {"a": [0], "b": [1]}
    assert plan["a"]["memory_mb"] == 16384 and plan["a"]["count"] == 1
    assert gpu.gpus_needed(plan) == 2


def test_counts_take_the_lowest_free_indices_after_explicit_ones():
    plan = gpu.assign([svc("a", gpus=2), svc("b", gpus=[0]), svc("c")], CATALOG)
    assert devices(plan) == {"a": [1, 2], "b": [0], "c": [3]}
    assert gpu.gpus_needed(plan) == 4
    # Same inventory, same GPUs: computed from the inventory alone.
    assert gpu.assign([svc("a", gpus=2), svc("b", gpus=[0]), svc("c")], CATALOG) == plan


def test_shared_services_use_the_same_gpu_and_their_memory_adds_up():
    plan = gpu.assign([svc("a", gpu_shared=True), svc("b", gpu_shared=True), svc("c")],
                      CATALOG)
    assert devices(plan) == {"a": [0], "b": [0], "c": [1]}
    assert gpu.memory_per_gpu(plan, [0, 1]) == {0: (32768, ["a", "b"]), 1: (16384, ["c"])}


def test_all_takes_every_gpu_and_excludes_others_unless_shared():
    plan = gpu.assign([svc("a", gpus="all")], CATALOG)
    assert devices(plan) == {"a": "all"} and gpu.gpus_needed(plan) == 1
    assert gpu.memory_per_gpu(plan, [0, 1]) == {0: (16384, ["a"]), 1: (16384, ["a"])}
    with pytest.raises(gpu.GpuError, match="a takes all GPUs of the host, so b cannot"):
        gpu.assign([svc("a", gpus="all"), svc("b")], CATALOG)
    both = gpu.assign([svc("a", gpus="all", gpu_shared=True), svc("b", gpu_shared=True)],
                      CATALOG)
    assert devices(both) == {"a": "all", "b": [0]}


@pytest.mark.parametrize(("value", "match"), [
    (0, "is not valid"), (True, "is not valid"), ([0, 0], "is not valid"), ([], "is not valid"),
    ("two", "is not valid"), ([-1], "is not valid")])
def test_invalid_requests_name_the_accepted_forms(value, match):
    with pytest.raises(gpu.GpuError, match=match) as err:
        gpu.assign([svc("a", gpus=value)], CATALOG)
    assert "use a count (gpus: 1), gpus: all, or GPU indices (gpus: [0])" in str(err.value)


def test_gpus_on_a_service_without_gpu_and_bad_share_flag_are_refused():
    with pytest.raises(gpu.GpuError, match="remove gpus: 1, catalog entry 'sentiment'"):
        gpu.assign([{"name": "s", "catalog": "sentiment", "gpus": 1}], CATALOG)
    with pytest.raises(gpu.GpuError, match="gpu_shared 'yes' must be true or false"):
        gpu.assign([svc("a", gpu_shared="yes")], CATALOG)


def test_each_engine_gets_its_form():
    item = {"devices": [0, 2], "count": 2, "shared": False, "memory_mb": 1}
    assert gpu.podman_devices(item) == ["nvidia.com/gpu=0", "nvidia.com/gpu=2"]
    assert gpu.docker_gpus(item) == '"device=0,2"'
    every = {**item, "devices": "all", "count": None}
    assert gpu.podman_devices(every) == ["nvidia.com/gpu=all"]
    assert gpu.docker_gpus(every) == "all"


def recap(output: str, host: str) -> dict[str, int]:
    match = re.search(rf"^{re.escape(host)}\s+:(.*)$", output, re.MULTILINE)
    assert match, f"no recap line for {host}\n{output[-2000:]}"
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def test_conflict_stops_deploy_before_the_host_is_contacted(tmp_path):
    """playbooks/deploy.yml against a host that is no container (podman exec into it is
    unreachable, no lab needed): `gpus: all` beside an exclusive GPU service stops the
    run at the inventory check, naming the fix; the same services sharing get past it
    and reach for the host, which proves the first run would have contacted it."""
    ghost = "airlift-ghost-gpu"

    def deploy(share: bool) -> str:
        services = [svc("everything", gpus="all", gpu_shared=share),
                    {**svc("sum", gpu_shared=share), "port": 5001}]
        inventory = tmp_path / f"inventory-{share}.yml"
        inventory.write_text(yaml.safe_dump({"all": {
            "vars": {"ansible_connection": "containers.podman.podman",
                     "airlift_eula": "accept", "airlift_report_dir": str(tmp_path / "reports"),
                     "airlift_services": services},
            "hosts": {ghost: {}}}}))
        proc = run_playbook("playbooks/deploy.yml", inventory=str(inventory))
        assert proc.returncode == (4 if share else 2), proc.stdout[-3000:]
        return proc.stdout

    refused = deploy(share=False)
    assert (f"{ghost}: inventory.gpus [host]: expected valid gpus, distinct or shared GPUs, "
            "observed conflicting or invalid - everything takes all GPUs of the host, so sum "
            "cannot have its own: set gpu_shared: true on both, or give everything a count "
            "or indices instead of gpus: all") in flat(refused)
    assert "UNREACHABLE" not in refused
    assert recap(refused, ghost) == {**recap(refused, ghost), "unreachable": 0, "failed": 1,
                                     "changed": 0}
    shared = deploy(share=True)
    assert "inventory.gpus" not in shared
    assert recap(shared, ghost)["unreachable"] == 1
