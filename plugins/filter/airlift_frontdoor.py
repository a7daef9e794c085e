# Apache-2.0
"""Filters for the front door (logic in src/airlift/frontdoor.py and src/airlift/ca.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError

from airlift import ca, frontdoor


def frontdoor_dependencies(services: list[dict[str, Any]], catalog: dict[str, Any],
                           host: str = "",
                           address_host: str = frontdoor.DEPENDENCY_HOST) -> dict[str, Any]:
    """{service: {requires, after, settings, depends_on, needed_by}}; refuses bad input."""
    try:
        return frontdoor.dependencies(services, catalog, host=host, address_host=address_host)
    except frontdoor.FrontdoorError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def frontdoor_start_order(plan: dict[str, Any]) -> list[str]:
    return frontdoor.start_order(plan)


def frontdoor_routes(services: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    """The nginx plan (servers, ports, paths) for roles/airlift_frontdoor/templates."""
    try:
        return frontdoor.routes(services, **options)
    except (frontdoor.FrontdoorError, TypeError) as exc:
        raise AnsibleFilterError(str(exc)) from exc


def cert_problems(cert: str, host_names: list[str], ca_cert: str,
                  renew_days: int = ca.DEFAULT_RENEW_DAYS) -> list[str]:
    """Problems of a host certificate on the controller (expired, names, CA); [] if fine."""
    return ca.check_cert(cert, host_names, ca_cert, renew_days=renew_days)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "airlift_frontdoor_dependencies": frontdoor_dependencies,
            "airlift_frontdoor_start_order": frontdoor_start_order,
            "airlift_frontdoor_routes": frontdoor_routes,
            "airlift_frontdoor_cert_problems": cert_problems,
        }
