"""GPU assignment per host (airlift.gpu): counts, all, indices, sharing, conflicts."""

from __future__ import annotations

import pytest

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
