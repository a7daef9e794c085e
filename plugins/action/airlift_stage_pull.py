# Apache-2.0
"""Pull the plan's images (logging in, through mirrors, checking digest pins)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlift_stage_pull
short_description: Make the images an airlift bundle needs present on the controller
description:
  - Logs in to the registries that have credentials with a temporary auth file that
    only this run can read (removed when the pulls end, also on failure), pulls each
    image through its mirror, tags it with the catalog's name, and refuses an image
    whose digest differs from the one pinned in its reference.
  - In check mode nothing is pulled; each registry is asked for the tag's digest now,
    and a tag that moved since the previous bundle is reported.
options:
  plan:
    description: Entries of the stage plan (catalog, image, mirror).
    type: list
    elements: dict
    required: true
  mirrors:
    description: Global rewrites, registry (or prefix) to mirror.
    type: dict
    default: {}
  credentials:
    description: Per registry, username and password.
    type: dict
    default: {}
  insecure:
    description: Registries reached without TLS verification.
    type: list
    elements: str
    default: []
  pull:
    description: false uses only images present locally (fully offline).
    type: bool
    default: true
  bundle_dir:
    description: Bundle directory whose previous manifest tells whether a tag moved.
    type: path
    required: true
author:
  - airlift developers
"""

EXAMPLES = r"""
- name: Pull the images through the internal mirror
  airlift_stage_pull:
    plan: "{{ __airlift_stage_plan }}"
    mirrors: {mcr.microsoft.com: registry.internal:5000}
    credentials: "{{ airlift_stage_registry_credentials }}"
    bundle_dir: bundles/current
"""

RETURN = r"""
images:
  description: Per plan entry, ref, local name, pulled_from, tag, pinned digest, id, digest.
  returned: success
  type: list
would_pull:
  description: In check mode, what would be pulled and the registry's digest now.
  returned: check mode
  type: list
moved:
  description: References whose digest differs from the previous bundle's.
  returned: always
  type: list
"""

from pathlib import Path
from typing import Any, ClassVar

from airlift import bundle, registry
from airlift.controller_action import ControllerAction


class ActionModule(ControllerAction):
    ARGUMENT_SPEC: ClassVar[dict[str, dict[str, Any]]] = {
        "plan": {"type": "list", "elements": "dict", "required": True},
        "mirrors": {"type": "dict", "default": {}},
        "credentials": {"type": "dict", "default": {}, "no_log": True},
        "insecure": {"type": "list", "elements": "str", "default": []},
        "pull": {"type": "bool", "default": True},
        "bundle_dir": {"type": "path", "required": True},
    }

    def act(self, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        try:    # the last bundle, to tell whether a tag moved; none on a first stage
            previous = bundle.read_manifest(Path(args["bundle_dir"]))
        except bundle.BundleError:
            previous = None
        insecure = set(args["insecure"])
        try:
            if self._task.check_mode:
                return self.check(args, insecure, previous)
            return self.stage(args, insecure, previous)
        except registry.RegistryError as exc:
            return {"failed": True, "msg": str(exc)}

    @staticmethod
    def stage(args: dict[str, Any], insecure: set[str],
              previous: dict[str, Any] | None) -> dict[str, Any]:
        sources = {registry.parse(registry.rewrite(entry["image"], args["mirrors"],
                                                   entry.get("mirror"))).registry
                   for entry in args["plan"]}
        images, moved = [], []
        with registry.logged_in(sources if args["pull"] else set(), args["credentials"],
                                insecure) as authfile:
            for entry in args["plan"]:
                image = registry.stage_image(entry, args["mirrors"], authfile, insecure,
                                             args["pull"], args["credentials"])
                before = registry.moved(image["ref"], image["digest"], previous)
                if before:
                    moved.append({"ref": image["ref"], "before": before, "now": image["digest"]})
                images.append(image)
        return {"changed": bool(args["pull"]), "images": images, "moved": moved,
                "airlift_lines": moved_lines(moved)}

    @staticmethod
    def check(args: dict[str, Any], insecure: set[str],
              previous: dict[str, Any] | None) -> dict[str, Any]:
        would, moved, images = [], [], []
        for entry in args["plan"]:
            source = registry.rewrite(entry["image"], args["mirrors"], entry.get("mirror"))
            tagged = registry.parse(entry["image"]).tagged
            local = registry.local_identity(tagged)
            if local is not None:
                images.append({"catalog": entry["catalog"], "ref": entry["image"],
                               "local": tagged})
            if not args["pull"]:
                would.append({"ref": entry["image"], "pull": None,
                              "present": local is not None})
                continue
            now = registry.remote_digest(source, args["credentials"], insecure)
            before = registry.moved(entry["image"], now, previous)
            if before:
                moved.append({"ref": entry["image"], "before": before, "now": now})
            pinned = registry.parse(entry["image"]).digest
            would.append({"ref": entry["image"], "pull": registry.parse(source).pull_ref,
                          "digest": now, "present": local is not None,
                          "refused": bool(pinned and now != pinned)})
        lines = [f"{item['ref']}: would pull {item['pull']} ({item['digest']})"
                 + (", which differs from the pin: the stage would refuse it"
                    if item["refused"] else "") if item["pull"]
                 else f"{item['ref']}: {'present' if item['present'] else 'NOT present'} locally"
                 for item in would]
        return {"changed": any(item["pull"] for item in would), "would_pull": would,
                "moved": moved, "images": images, "airlift_lines": lines + moved_lines(moved)}


def moved_lines(moved: list[dict[str, Any]]) -> list[str]:
    return [f"tag moved since the last bundle: {item['ref']} was {item['before']}, "
            f"now {item['now']}" for item in moved]
