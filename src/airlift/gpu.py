"""Which GPUs each service of a host gets, computed once per host from the inventory.

The assignment needs no facts: deploy (which gathers none), render (which never contacts
a host) and preflight must agree on it, so it depends only on the host's services, in
their inventory order. Preflight then checks that the host has the GPUs the assignment
uses, with enough memory on each.

A service asks with `gpus`: a count (`gpus: 2`), `all`, or indices (`gpus: [0]`); without
it, the catalog entry's `gpu.count` (default 1). GPU services on one host get distinct
GPUs; services that may share set `gpu_shared: true` (all the services on a GPU must).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

ALL = "all"
# What a CDI spec for NVIDIA GPUs provides (nvidia-ctk cdi generate) and podman asks for.
CDI_KIND = "nvidia.com/gpu"
FIX_TOOLKIT = ("install nvidia-container-toolkit on the host and generate the CDI spec: "
               "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml")
FIX_DOCKER = ("install nvidia-container-toolkit on the host and register its runtime with "
              "docker: nvidia-ctk runtime configure --runtime=docker && systemctl restart "
              "docker")


class GpuError(ValueError):
    """The inventory asks for GPUs in a way no host can honour; the message names the fix."""


def requested(service: Mapping[str, Any], entry: Mapping[str, Any]) -> int | str | list[int] | None:
    """What the service asks for: a count, 'all', indices, or None when it uses no GPU."""
    name, value, gpu = service.get("name", "?"), service.get("gpus"), entry.get("gpu")
    if not gpu:
        if value is not None:
            raise GpuError(f"{name}: remove gpus: {value!r}, catalog entry "
                           f"{service.get('catalog')!r} uses no GPU")
        return None
    if value is None:
        value = gpu.get("count", 1)
    if value == ALL:
        return ALL
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if (isinstance(value, list) and value and len(set(value)) == len(value)
            and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                    for i in value)):
        return sorted(value)
    raise GpuError(f"{name}: gpus {value!r} is not valid: use a count (gpus: 1), "
                   "gpus: all, or GPU indices (gpus: [0])")


def shared(service: Mapping[str, Any]) -> bool:
    value = service.get("gpu_shared", False)
    if not isinstance(value, bool):
        raise GpuError(f"{service.get('name', '?')}: gpu_shared {value!r} must be true or false")
    return value


def assign(services: Iterable[Mapping[str, Any]],
           catalog: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{service name: {devices: [indices] or 'all', count, shared, memory_mb}} for the GPU
    services of one host; every problem at once in one GpuError.

    Indices given in the inventory are placed first, then counts take the lowest indices
    free in service order (a shared service's may be another shared service's), so the
    same inventory always gives the same GPUs.
    """
    wanted, problems = [], []
    for service in services:
        entry = catalog.get(service.get("catalog"))
        if entry is None:
            continue
        try:
            ask = requested(service, entry)
            share = shared(service)
        except GpuError as exc:
            problems.append(str(exc))
            continue
        if ask is not None:
            wanted.append((service["name"], ask, share, int(entry["gpu"].get("memory_mb", 0))))
    holders: dict[int, list[tuple[str, bool]]] = {}
    out: dict[str, dict[str, Any]] = {}

    def clash(name: str, index: int, share: bool) -> str | None:
        others = holders.get(index, [])
        if others and not (share and all(other_share for _, other_share in others)):
            return others[0][0]
        return None

    everything = [(name, share) for name, ask, share, _ in wanted if ask == ALL]
    for name, ask, share, _ in wanted:
        if ask == ALL:
            continue
        for other, other_share in everything:
            if not (share and other_share):
                problems.append(f"{other} takes all GPUs of the host, so {name} cannot have "
                                f"its own: set gpu_shared: true on both, or give {other} a "
                                "count or indices instead of gpus: all")
    for name, ask, share, memory in wanted:
        if isinstance(ask, list):
            for index in ask:
                other = clash(name, index, share)
                if other:
                    problems.append(f"{other} and {name} both ask for GPU {index}: give each "
                                    "its own (gpus: [N]) or set gpu_shared: true on both")
                holders.setdefault(index, []).append((name, share))
            out[name] = {"devices": ask, "count": len(ask), "shared": share, "memory_mb": memory}
    for name, ask, share, memory in wanted:
        if ask == ALL:
            out[name] = {"devices": ALL, "count": None, "shared": share, "memory_mb": memory}
        elif isinstance(ask, int):
            devices, index = [], 0
            while len(devices) < ask:
                if clash(name, index, share) is None:
                    devices.append(index)
                index += 1
            for index in devices:
                holders.setdefault(index, []).append((name, share))
            out[name] = {"devices": devices, "count": ask, "shared": share, "memory_mb": memory}
    if problems:
        raise GpuError("; ".join(problems))
    return {name: out[name] for name, *_ in wanted}


def gpus_needed(plan: Mapping[str, Mapping[str, Any]]) -> int:
    """How many GPUs the host must have: the highest index used plus one (a service with
    `gpus: all` needs at least one)."""
    indices = [i for item in plan.values() if item["devices"] != ALL for i in item["devices"]]
    return max([i + 1 for i in indices] + [1 if plan else 0])


def memory_per_gpu(plan: Mapping[str, Mapping[str, Any]],
                   host_indices: Iterable[int]) -> dict[int, tuple[int, list[str]]]:
    """GPU index -> (MiB its services need together, their names); `all` counts on each
    GPU the host has."""
    host_indices = list(host_indices)
    need: dict[int, tuple[int, list[str]]] = {}
    for name, item in plan.items():
        for index in host_indices if item["devices"] == ALL else item["devices"]:
            total, names = need.get(index, (0, []))
            need[index] = (total + item["memory_mb"], [*names, name])
    return need


def podman_devices(item: Mapping[str, Any]) -> list[str]:
    """CDI device names for podman's --device (nvidia.com/gpu=0, or =all)."""
    if item["devices"] == ALL:
        return [f"{CDI_KIND}={ALL}"]
    return [f"{CDI_KIND}={index}" for index in item["devices"]]


def docker_gpus(item: Mapping[str, Any]) -> str:
    """docker's --gpus value: all, or "device=0,1" (quoted: the CLI reads it as CSV)."""
    if item["devices"] == ALL:
        return ALL
    return '"device=' + ",".join(str(i) for i in item["devices"]) + '"'
