# Apache-2.0
"""Save a local image into the bundle, once per image ID (connected side)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlift_stage_image
short_description: Save a container image into an airlift bundle directory
description:
  - Saves the image as images/<catalog>-<id12>.tar (written under a temporary name and
    renamed), unless an archive of that image ID is already there. Returns the image's
    reference, ID and digest for the manifest. Runs on the controller only.
options:
  ref:
    description: Image reference present in the local engine.
    type: str
    required: true
  catalog:
    description: Catalog key the image serves (names the archive).
    type: str
    required: true
  bundle_dir:
    description: The bundle directory.
    type: path
    required: true
  format:
    description: Archive format for podman save; both keep the image ID.
    type: str
    choices: [docker-archive, oci-archive]
    default: docker-archive
  local:
    description: Name of the image in the engine when it differs from ref (digest pins).
    type: str
  extra:
    description: Fields recorded with the image (tag, digest, pinned, pulled_from).
    type: dict
    default: {}
author:
  - airlift developers
"""

EXAMPLES = r"""
- name: Save the sentiment image into the bundle
  airlift_stage_image:
    ref: mcr.microsoft.com/azure-cognitive-services/textanalytics/sentiment:latest
    catalog: sentiment
    bundle_dir: bundles/current
"""

RETURN = r"""
image:
  description: ref, id, digest, catalog, archive and format of the saved image.
  returned: success
  type: dict
"""

from pathlib import Path
from typing import Any, ClassVar

from airlift import stage
from airlift.controller_action import ControllerAction


class ActionModule(ControllerAction):
    ARGUMENT_SPEC: ClassVar[dict[str, dict[str, Any]]] = {
        "ref": {"type": "str", "required": True},
        "catalog": {"type": "str", "required": True},
        "bundle_dir": {"type": "path", "required": True},
        "format": {"type": "str", "choices": ["docker-archive", "oci-archive"],
                   "default": "docker-archive"},
        "local": {"type": "str"},
        "extra": {"type": "dict", "default": {}},
    }

    def act(self, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        try:
            changed, image = stage.save_image(args["ref"], Path(args["bundle_dir"]),
                                              args["catalog"], args["format"],
                                              check_mode=self._task.check_mode,
                                              local=args["local"], extra=args["extra"])
        except RuntimeError as exc:
            return {"failed": True, "msg": str(exc)}
        return {"changed": changed, "image": image}
