# Apache-2.0
"""Seal (manifest + signature) or verify a bundle on the controller, with airlift's code."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlift_bundle
short_description: Seal or verify an airlift bundle on the controller
description:
  - C(state=sealed) writes manifest.json for the bundle directory (every file with size
    and sha256, the given images and licenses) and signs it with Ed25519; unchanged
    content leaves the manifest alone (C(changed=false)). Files the plan no longer
    references are removed from the bundle directory (connected side only).
  - C(state=verified) checks signature, schema and every file and fails listing every
    problem. Runs on the controller only; check mode verifies as usual and seals nothing.
  - The same code backs C(airlift bundle sign) and C(airlift bundle verify).
options:
  path:
    description: The bundle directory.
    type: path
    required: true
  state:
    description: What to do.
    type: str
    choices: [sealed, verified]
    default: verified
  key:
    description: Ed25519 private key (sealed) or public key (verified), PEM.
    type: path
    required: true
  images:
    description: Image entries (ref, id, digest, catalog, archive) for sealing.
    type: list
    elements: dict
    default: []
  licenses:
    description: License entries (catalog, image, image_id, path, expires) for sealing.
    type: list
    elements: dict
    default: []
  hash_cache:
    description: When verifying, skip re-reading files unchanged since they were last
      verified (same inode, size, mtime and ctime). The cache lives in
      ~/.cache/airlift/verified-hashes.json.
    type: bool
    default: true
author:
  - airlift developers
"""

EXAMPLES = r"""
- name: Verify the bundle before any host is touched
  airlift_bundle:
    path: /media/transfer/bundle
    key: /etc/airlift/bundle-signing.pub
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
manifest:
  description: The bundle's manifest.
  returned: success
  type: dict
problems:
  description: Every problem found (verified).
  returned: always
  type: list
"""

from pathlib import Path
from typing import Any, ClassVar

from airlift import bundle, stage
from airlift.controller_action import ControllerAction


class ActionModule(ControllerAction):
    ARGUMENT_SPEC: ClassVar[dict[str, dict[str, Any]]] = {
        "path": {"type": "path", "required": True},
        "state": {"type": "str", "choices": ["sealed", "verified"], "default": "verified"},
        "key": {"type": "path", "required": True},
        "images": {"type": "list", "elements": "dict", "default": []},
        "licenses": {"type": "list", "elements": "dict", "default": []},
        "hash_cache": {"type": "bool", "default": True},
    }

    def act(self, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        root, key = Path(args["path"]), Path(args["key"])
        try:
            if args["state"] == "sealed":
                if self._task.check_mode:
                    return {"changed": True, "problems": [],
                            "msg": "would seal the bundle"}
                changed, manifest = stage.seal(root, args["images"], args["licenses"], key)
                return {"changed": changed, "manifest": manifest, "problems": []}
            checked = bundle.verify(root, key, bundle.default_hash_cache()
                                    if args["hash_cache"] else None)
        except (bundle.BundleError, OSError) as exc:
            return {"failed": True, "msg": str(exc), "problems": [str(exc)]}
        if not checked.ok:
            return {"failed": True, "problems": checked.problems,
                    "msg": f"bundle {root} refused, {len(checked.problems)} problem(s): "
                           + "; ".join(checked.problems)}
        return {"changed": False, "manifest": checked.manifest, "problems": []}
