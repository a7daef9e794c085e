# Apache-2.0
"""Filters for the deploy role (logic in src/airlift/deploy.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError

from airlift import deploy, layout


def deploy_units(services: list[dict[str, Any]], catalog: dict[str, Any],
                 state: dict[str, Any], license_dir: str, output_dir: str,
                 default_ready_timeout: int, bind_address: str = "0.0.0.0",
                 bridge_address: str = "10.88.0.1",
                 shared_dir: str = deploy.SHARED_DIR) -> list[dict[str, Any]]:
    try:
        return deploy.units(services, catalog, state, license_dir, output_dir,
                            default_ready_timeout, bind_address=bind_address,
                            bridge_address=bridge_address, shared_dir=shared_dir)
    except deploy.DeployError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def describe_services(services: list[dict[str, Any]], catalog: dict[str, Any],
                      address: str | None = None,
                      shared_dir: str = deploy.SHARED_DIR) -> list[dict[str, Any]]:
    try:
        return deploy.describe_all(services, catalog, address=address, shared_dir=shared_dir)
    except deploy.DeployError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def k8s_env_name(setting: str) -> str:
    """Kubernetes rejects ':' in env var names; the containers read '__' the same way."""
    return setting.replace(":", "__")


def unit_path(service: str) -> str:
    """Where the service's unit file lives on the host (the layout's unit folder)."""
    return f"{layout.host.UNIT_DIR}/{layout.host.unit_name(service)}"


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "airlift_deploy_units": deploy_units,
            "airlift_stale_units": deploy.stale_units,
            "airlift_k8s_env_name": k8s_env_name,
            "airlift_describe_services": describe_services,
            "airlift_mount_dirs": deploy.mount_dirs,
            # The host layout's names (plugins/module_utils/airlift_layout.py).
            "airlift_unit_name": layout.host.unit_name,
            "airlift_unit_path": unit_path,
            "airlift_container_name": layout.host.container_name,
        }
