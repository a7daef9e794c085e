# Apache-2.0
"""Filters for the front door (logic in src/airlift/frontdoor.py and src/airlift/ca.py).

Service dependencies are resolved in the deploy role's airlift_deploy_units."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

from airlift import ca, frontdoor


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


def tls_files(ca_dir: str, host: str) -> dict[str, str]:
    """The controller paths of a host's certificate and key and of the CA certificate."""
    try:
        cert, key = ca.server_paths(Path(ca_dir), host)
    except ca.CAError as exc:
        raise AnsibleFilterError(str(exc)) from exc
    return {"cert": str(cert), "key": str(key), "ca": str(Path(ca_dir) / ca.CA_CERT)}


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "airlift_frontdoor_routes": frontdoor_routes,
            "airlift_frontdoor_cert_problems": cert_problems,
            "airlift_frontdoor_tls_files": tls_files,
        }
