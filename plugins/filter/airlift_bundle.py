# Apache-2.0
"""Filters that plan a bundle and pick each host's share of it (logic in src/airlift)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

from airlift import distribute, stage


def stage_plan(hosts: list[str], hostvars: Any, builtin: dict[str, Any],
               ) -> list[dict[str, Any]]:
    try:
        return stage.plan(hosts, hostvars, builtin)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def stage_uncredentialed(plan: list[dict[str, Any]], resources: dict[str, Any],
                         endpoint: str, api_key: str) -> list[str]:
    """Catalog keys with no billing endpoint or API key (names only, never keys)."""
    missing = []
    for entry in plan:
        if not entry.get("license", True):
            continue  # the front door's proxy: no license, no credentials
        own = resources.get(entry["catalog"]) or {}
        if not (own.get("endpoint") or endpoint) or not (own.get("api_key") or api_key):
            missing.append(entry["catalog"])
    return missing


def stage_licenses(found: list[dict[str, Any]], images: list[dict[str, Any]],
                   bundle_dir: str, fallback_expires: str | None) -> list[dict[str, Any]]:
    """License entries for the manifest from `find` results, one per license file."""
    by_catalog = {image["catalog"]: image for image in images}
    entries = []
    for result in found:
        catalog = result["item"]["image"]["catalog"]
        for match in result.get("files", []):
            path = Path(match["path"])
            entries.append({
                "catalog": catalog,
                "image": by_catalog[catalog]["ref"],
                "image_id": by_catalog[catalog]["id"],
                "path": path.relative_to(bundle_dir).as_posix(),
                "expires": stage.license_expiry(path, fallback_expires or None),
            })
    return entries


def host_share(manifest: dict[str, Any], services: list[dict[str, Any]],
               catalog: dict[str, Any], today: str | None = None,
               frontdoor: bool = False) -> dict[str, Any]:
    try:
        return distribute.host_share(manifest, services, catalog, today, frontdoor=frontdoor)
    except distribute.ShareError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def license_payload(licenses: list[dict[str, Any]], bundle_dir: str) -> list[dict[str, Any]]:
    """The airlift_license module's input: each license file's content, base64."""
    return [{"service": lic["service"], "name": Path(lic["path"]).name,
             "content": base64.b64encode((Path(bundle_dir) / lic["path"]).read_bytes()).decode(),
             "sha256": lic["sha256"], "owner": lic.get("owner")} for lic in licenses]


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "airlift_stage_plan": stage_plan,
            "airlift_stage_licenses": stage_licenses,
            "airlift_stage_uncredentialed": stage_uncredentialed,
            "airlift_host_share": host_share,
            "airlift_license_payload": license_payload,
        }
