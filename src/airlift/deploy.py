"""What each service's systemd unit needs, from the inventory, the catalog and the host's
state files (what distribute loaded and placed)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airlift import frontdoor, gpu, layout
from airlift.units import to_mb

ANY_ADDRESS = ("0.0.0.0", "::", "")
SHARED_DIR = layout.host.MOUNTS_DIR


class DeployError(ValueError):
    """A service cannot be deployed yet; the message says what to run first."""


def mounts(service: Mapping[str, Any], entry: Mapping[str, Any],
           shared_dir: str = SHARED_DIR) -> list[dict[str, Any]]:
    """The catalog entry's extra mounts (Document Intelligence's Shared folder, model
    folders), each with its host folder: the service's own (`mounts: {name: path}`), else
    `<shared_dir>/<mount name>`, which every service on the host with that mount shares,
    as the published compose files share one SHARED_MOUNT_PATH."""
    chosen = service.get("mounts") or {}
    return [{"name": mount["name"],
             "source": str(chosen.get(mount["name"], f"{shared_dir}/{mount['name']}")),
             "target": mount["target"],
             "read_only": bool(mount.get("read_only", False))}
            for mount in entry.get("mounts") or []]


def mount_settings(entry: Mapping[str, Any]) -> dict[str, str]:
    """Settings that tell the container where each mount is (e.g. Mounts:Shared=/shared)."""
    return {setting: mount["target"] for mount in entry.get("mounts") or []
            for setting in mount.get("settings") or []}


def gpu_plan(services: Iterable[Mapping[str, Any]],
             catalog: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The host's GPU assignment (airlift.gpu), once for all its services."""
    try:
        return gpu.assign(services, catalog)
    except gpu.GpuError as exc:
        raise DeployError(str(exc)) from exc


def gpu_options(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A service's GPUs as each rendering hands them over: podman's CDI devices, docker's
    --gpus, the compose device reservation and the Kubernetes count."""
    if not item:
        return None
    every = item["devices"] == gpu.ALL
    return {**item,
            "podman_devices": gpu.podman_devices(item),
            "docker_gpus": gpu.docker_gpus(item),
            # Kubernetes schedules by count; `all` asks for one (see README, GPU services).
            "k8s_count": 1 if every else item["count"],
            "compose": {"driver": "nvidia", "capabilities": ["gpu"],
                        **({"count": "all"} if every else
                           {"device_ids": [str(i) for i in item["devices"]]})}}


def describe(service: Mapping[str, Any], entry: Mapping[str, Any],
             default_ready_timeout: int, shared_dir: str = SHARED_DIR,
             gpus: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What every rendering of a service shares (systemd, Kubernetes, compose); `gpus`
    is the service's item of the host's gpu_plan."""
    memory_mb = to_mb(service.get("memory") or entry["memory"]["minimum"])
    return {
        "name": service["name"],
        "catalog": service["catalog"],
        "title": entry.get("title", service["catalog"]),
        "image": entry["image"],
        "cpus": service.get("cpus") or entry["cores"]["minimum"],
        # docker's and podman's --memory accept the same form; normalise to MiB.
        "memory": f"{memory_mb}m",
        "memory_mb": memory_mb,
        "port": service["port"],
        "ready_timeout": int(entry.get("ready_timeout", default_ready_timeout)),
        "settings": {**mount_settings(entry), **(entry.get("settings") or {}),
                     **(service.get("settings") or {})},
        "mounts": mounts(service, entry, shared_dir),
        "owner": entry.get("mount_owner") or 0,
        "gpu": gpu_options(gpus),
    }


def describe_all(services: Iterable[Mapping[str, Any]], catalog: Mapping[str, Any],
                 default_ready_timeout: int = 120, address: str | None = None,
                 shared_dir: str = SHARED_DIR) -> list[dict[str, Any]]:
    """Every service described, dependencies first when `address` (how one reaches a
    service it needs on this target, see frontdoor.dependencies) is given."""
    services = list(services)
    plan = gpu_plan(services, catalog)
    described = [describe(service, catalog[service["catalog"]], default_ready_timeout,
                          shared_dir, plan.get(service["name"]))
                 for service in services]
    if address is None:
        return described
    try:
        needs = frontdoor.dependencies(services, catalog, address=address)
    except frontdoor.FrontdoorError as exc:
        raise DeployError(str(exc)) from exc
    by_name = {item["name"]: {**item, "settings": {**needs[item["name"]]["settings"],
                                                    **item["settings"]},
                              "depends_on": needs[item["name"]]["depends_on"]}
               for item in described}
    return [by_name[name] for name in frontdoor.start_order(needs)]


def units(services: Iterable[Mapping[str, Any]], catalog: Mapping[str, Any],
          state: Mapping[str, Any], license_dir: str, output_dir: str,
          default_ready_timeout: int, bind_address: str = "0.0.0.0",
          bridge_address: str = "10.88.0.1",
          shared_dir: str = SHARED_DIR) -> list[dict[str, Any]]:
    """Each service's unit, dependencies first (the order units are installed and started).

    A container reaches a service it needs at the container bridge's gateway (the host
    as its containers see it), on that service's published port. So a needed service is
    also published there when services bind to one address only (loopback behind the
    front door). Not podman's host.containers.internal: podman 4 points that name at the
    host's first non-loopback address, where a loopback-bound port is not.
    """
    services = list(services)
    images = (state.get("images") or {}).get("images") or {}
    licenses = (state.get("licenses") or {}).get("licenses") or {}
    try:
        needs = frontdoor.dependencies(services, catalog, address_host=bridge_address)
    except frontdoor.FrontdoorError as exc:
        raise DeployError(str(exc)) from exc
    plan = gpu_plan(services, catalog)
    by_name, problems = {}, []
    for service in services:
        name, entry = service["name"], catalog[service["catalog"]]
        image = images.get(entry["image"])
        lic = licenses.get(name)
        if image is None:
            problems.append(f"{name}: image {entry['image']} is not loaded on this host "
                            "(run playbooks/distribute.yml first)")
        if lic is None:
            problems.append(f"{name}: no license placed for this service "
                            "(run playbooks/distribute.yml first)")
        if image is None or lic is None:
            continue
        described = describe(service, entry, default_ready_timeout, shared_dir,
                             plan.get(name))
        need = needs[name]
        publish = [f"{bind_address}:{service['port']}"]
        if need["needed_by"] and bind_address not in ANY_ADDRESS:
            publish.append(f"{bridge_address}:{service['port']}")
        by_name[name] = {
            **described,
            # The service's own settings win over the address airlift fills in.
            "settings": {**need["settings"], **described["settings"]},
            "requires": need["requires"],
            "after": need["after"],
            "depends_on": need["depends_on"],
            "publish": publish,
            "image_id": image["id"].split(":", 1)[-1],
            "license_sha256": lic["sha256"],
            "license_dir": f"{license_dir}/{name}",
            "output_dir": f"{output_dir}/{name}",
        }
    if problems:
        raise DeployError("; ".join(problems))
    return [by_name[name] for name in frontdoor.start_order(needs)]


def stale_units(unit_files: Iterable[str], services: Iterable[Mapping[str, Any]]) -> list[str]:
    """airlift unit files on the host whose service is no longer assigned to it.

    The front door's unit is its own role's to keep or remove.
    """
    wanted = {layout.host.unit_name(service['name']) for service in services}
    wanted.add(frontdoor.unit_name(frontdoor.RESERVED_NAME))
    return sorted(path for path in unit_files if path.rsplit("/", 1)[-1] not in wanted)


def mount_dirs(units_: Iterable[Mapping[str, Any]], read_only: bool) -> list[dict[str, Any]]:
    """Host folders of the units' extra mounts, each once, with the owner of the first
    service that mounts it: deploy creates the writable ones and requires the read-only
    ones (models an operator places) to exist."""
    seen: dict[str, dict[str, Any]] = {}
    for unit in units_:
        for mount in unit.get("mounts") or []:
            if mount["read_only"] == read_only and mount["source"] not in seen:
                seen[mount["source"]] = {"path": mount["source"], "owner": unit["owner"],
                                         "services": []}
            if mount["source"] in seen:
                seen[mount["source"]]["services"].append(unit["name"])
    return list(seen.values())
