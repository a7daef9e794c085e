# Apache-2.0
"""Filters that evaluate preflight checks; the logic lives in the airlift package."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airlift import checks


def fleet_failures(hosts: list[str], hostvars: Any, results_var: str) -> list[str]:
    """Every failed check of every host as 'host: ...' lines (hosts without results skipped)."""
    lines = []
    for host in hosts:
        results = hostvars[host].get(results_var)
        lines.extend(f"{host}: {line}" for line in checks.failures(results or []))
    return lines


def unset_folders(folders: dict[str, list[Any]]) -> list[str]:
    """'set NAME to PURPOSE' for each folder variable left empty ({name: [value, purpose]}).

    An empty folder is not refused by an argument spec ("" is a path) and would put the
    role's files under / on a host or the controller: each role refuses it first.
    """
    return [f"set {name} to {purpose}" for name, (value, purpose) in folders.items()
            if not str(value if value is not None else "").strip()]


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "airlift_inventory_checks": lambda host_vars, catalog: checks.inventory_checks(
                host_vars, catalog),
            "airlift_host_checks": checks.host_checks,
            "airlift_waive": checks.apply_waivers,
            "airlift_check_failures": checks.failures,
            "airlift_fleet_failures": fleet_failures,
            "airlift_frontdoor_checks": checks.frontdoor_checks,
            "airlift_unset_folders": unset_folders,
        }
