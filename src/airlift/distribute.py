"""Disconnected side: which part of a verified bundle each host needs, and whether the
licenses in it can serve the host's services."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from airlift.stage import FRONTDOOR_SERVICE
from airlift.timeutil import as_utc


class ShareError(ValueError):
    """The bundle cannot serve this host; the message says what to stage."""


def host_share(manifest: Mapping[str, Any], services: Iterable[Mapping[str, Any]],
               catalog: Mapping[str, Any], today: str | None = None,
               frontdoor: bool = False) -> dict[str, Any]:
    """Images and licenses for the host's services (and its front door's proxy),
    refusing what cannot work."""
    now = as_utc(today) if today else dt.datetime.now(dt.UTC)
    services = [*services, *([FRONTDOOR_SERVICE] if frontdoor else [])]
    images = {image["ref"]: image for image in manifest.get("images", [])}
    problems, share_images, share_licenses = [], {}, []
    for service in services:
        name, key = service["name"], service["catalog"]
        ref = catalog[key]["image"]
        image = images.get(ref)
        if image is None:
            problems.append(f"{name}: the bundle has no image {ref} (stage it again with "
                            "this inventory)")
            continue
        share_images[image["id"]] = image
        if catalog[key].get("license", True) is False:
            continue  # an image airlift runs itself (the front door): no license
        licenses = [lic for lic in manifest.get("licenses", []) if lic["catalog"] == key]
        if not licenses:
            problems.append(f"{name}: the bundle has no license for {key}")
            continue
        for lic in licenses:
            if lic.get("image_id") != image["id"]:
                problems.append(f"{name}: license {lic['path']} belongs to image "
                                f"{lic.get('image_id')}, not {image['id']}: download a new "
                                "license for this image")
                continue
            expires = lic.get("expires")
            if expires and as_utc(expires) <= now:
                problems.append(f"{name}: license {lic['path']} expired on {expires[:10]}: "
                                "renew it on the connected side")
                continue
            share_licenses.append({**lic, "service": name,
                                   "owner": catalog[key].get("mount_owner")})
    if problems:
        raise ShareError("; ".join(problems))
    return {"images": list(share_images.values()), "licenses": share_licenses}
