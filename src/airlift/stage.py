"""Connected side: decide what to stage, save images into the bundle, seal it.

Staging is incremental: an archive named after its image ID is saved once; the manifest
is rewritten (and re-signed) only when the bundle's content changed, reusing the hashes
of files that did not change since the previous manifest.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from airlift import bundle
from airlift.catalog import merge

# The proxy airlift runs on hosts with the front door: its image travels like a service's.
FRONTDOOR_SERVICE = {"name": "frontdoor", "catalog": "airlift-frontdoor"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def plan(hosts: Iterable[str], hostvars: Mapping[str, Any],
         builtin: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One entry per catalog key used by any of the hosts: what the bundle must carry.

    Each host's catalog is the built-in one merged with that host's overrides (role
    defaults are not in other hosts' hostvars, so the merge is done here).
    """
    entries: dict[str, dict[str, Any]] = {}
    for host in hosts:
        host_vars = hostvars[host]
        catalog = merge(dict(builtin), host_vars.get("airlift_catalog_overrides") or {})
        services = list(host_vars.get("airlift_services") or [])
        if host_vars.get("airlift_frontdoor_enabled"):
            services.append(FRONTDOOR_SERVICE)
        for service in services:
            key = service.get("catalog")
            if key not in catalog:
                raise ValueError(f"{host}: service {service.get('name')!r} names unknown "
                                 f"catalog entry {key!r}")
            entry = catalog[key]
            entries.setdefault(key, {"catalog": key, "image": entry["image"],
                                     "mount_owner": entry.get("mount_owner"),
                                     "mirror": entry.get("mirror"),
                                     "license": entry.get("license", True) is not False,
                                     "hosts": []})["hosts"].append(host)
    return [entries[key] for key in sorted(entries)]


def podman(*args: str) -> str:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:2])} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def image_identity(ref: str, local: str | None = None) -> dict[str, str]:
    """ID and digest of the local image `local` (default `ref`), recorded under `ref`."""
    image_id, digest = podman("image", "inspect", "--format", "{{.Id}} {{.Digest}}",
                              local or ref).split()
    return {"ref": ref, "id": f"sha256:{image_id}", "digest": digest}


def save_image(ref: str, bundle_dir: Path, catalog: str,
               archive_format: str = "docker-archive",
               check_mode: bool = False, local: str | None = None,
               extra: dict[str, Any] | None = None) -> tuple[bool, dict[str, Any]]:
    """Save `ref` as images/<catalog>-<id12>.tar unless that archive exists already.

    `local` names the image in the engine when it differs from the catalog's `ref` (a
    reference with a pinned digest); `extra` (tag, pinned digest, mirror it came from,
    repo digests) is recorded with the image in the manifest.
    """
    identity = image_identity(ref, local)
    short = identity["id"].split(":", 1)[1][:12]
    relative = f"images/{_UNSAFE.sub('_', catalog)}-{short}.tar"
    target = bundle_dir / relative
    changed = not target.exists()
    if changed and not check_mode:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        podman("save", "--quiet", "--format", archive_format, "--output", str(partial),
               local or ref)
        os.replace(partial, target)
    recorded = {key: value for key, value in (extra or {}).items() if value}
    return changed, {**identity, **recorded, "catalog": catalog, "archive": relative,
                     "format": archive_format}


def license_expiry(path: Path, fallback: str | None) -> str | None:
    """The expiry written in the license when it is readable JSON, else the fallback."""
    try:
        return json.loads(path.read_text()).get("expires") or fallback
    except (OSError, ValueError, AttributeError):
        return fallback


def prune(bundle_dir: Path, keep: set[str]) -> list[str]:
    """Remove staged files the current plan no longer references (connected side only)."""
    removed = []
    for top in ("images", "licenses"):
        for path in sorted((bundle_dir / top).rglob("*")) if (bundle_dir / top).exists() else []:
            relative = path.relative_to(bundle_dir).as_posix()
            if path.is_file() and relative not in keep and not any(
                    k.startswith(relative + "/") for k in keep):
                path.unlink()
                removed.append(relative)
    for top in ("images", "licenses"):
        for path in sorted((bundle_dir / top).rglob("*"), reverse=True) if (
                bundle_dir / top).exists() else []:
            if path.is_dir() and not any(path.iterdir()):
                shutil.rmtree(path)
    return removed


def _previous(bundle_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((bundle_dir / bundle.MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def seal(bundle_dir: Path, images: list[dict[str, Any]], licenses: list[dict[str, Any]],
         key_path: Path) -> tuple[bool, dict[str, Any]]:
    """Write and sign the manifest when the content changed; returns (changed, manifest)."""
    keep = {image["archive"] for image in images} | {lic["path"] for lic in licenses}
    prune(bundle_dir, keep)
    previous = _previous(bundle_dir)
    cache = bundle.HashCache(bundle.default_hash_cache())
    manifest = bundle.build_manifest(bundle_dir, images, licenses, cache)
    cache.save()
    key = bundle.load_private_key(key_path)
    unchanged = previous and all(previous.get(k) == manifest[k]
                                 for k in ("files", "images", "licenses"))
    # Unchanged content still needs a signature that verifies (a seal may have been
    # interrupted between writing the manifest and its signature).
    if unchanged and signature_valid(bundle_dir, key):
        return False, previous
    bundle.write_signed(bundle_dir, manifest, key)
    return True, manifest


def signature_valid(bundle_dir: Path, key: Any) -> bool:
    try:
        data = (bundle_dir / bundle.MANIFEST).read_bytes()
        signature = base64.b64decode((bundle_dir / bundle.SIGNATURE).read_bytes().strip())
        key.public_key().verify(signature, data)
    except (OSError, ValueError, InvalidSignature):
        return False
    return True
