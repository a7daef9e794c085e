# Apache-2.0
"""The converged fast path's controller half: build what a host should have, then let
the airlift_host_state module compare it with the host in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlift_host_state
short_description: Compare a host with what the bundle and inventory want (controller half)
description:
  - Without O(compare), runs the module as it is (what distribute recorded and which
    units are installed).
  - With O(compare), works out on the controller what the host should have - the
    images and licenses of its services (from O(manifest), the verified bundle's
    manifest, else from what the host recorded), the unit file of each service exactly
    as deploy's template renders it, C(services.json), the folders deploy creates, and
    the front door's files and unit (or their absence) - and sends it to the module,
    which observes the host in one pass and returns every difference (see the module's
    RETURN). Role variables the host does not set come from the roles' defaults, so any
    play can make the call.
  - Reads only; check mode runs it in full.
options:
  compare:
    description: Build the wanted state and return the differences.
    type: bool
    default: false
  manifest:
    description: The verified bundle's manifest (distribute's); without it the images
      and licenses wanted are those the host recorded (images.json, licenses.json).
    type: dict
  state_dir:
    description: Directory of distribute's state files.
    type: path
  unit_dir:
    description: Directory of the installed systemd units.
    type: path
    default: /etc/systemd/system
author:
  - airlift developers
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template

from airlift import deploy, distribute, frontdoor
from airlift.controller_action import render_as_template_module
from airlift.layout import host as layout

ROLES = Path(__file__).resolve().parents[2] / "roles"
# Role files whose variables the wanted state needs when the play lacks the role.
VAR_FILES = [ROLES / "airlift_distribute/defaults/main.yml",
             ROLES / "airlift_deploy/defaults/main.yml",
             ROLES / "airlift_frontdoor/defaults/main.yml",
             ROLES / "airlift_frontdoor/vars/main.yml"]
DEPLOY_TEMPLATES = ROLES / "airlift_deploy/templates"
FRONTDOOR_TEMPLATES = ROLES / "airlift_frontdoor/templates"
FRONTDOOR_UNIT = layout.unit_name(frontdoor.RESERVED_NAME)
FRONTDOOR_CATALOG = "airlift-frontdoor"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise AnsibleActionFail(f"cannot read {path} on the controller: {exc}") from exc


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None,
            ) -> dict[str, Any]:
        super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = dict(self._task.args)
        compare_wanted = bool(args.pop("compare", False))
        manifest = args.pop("manifest", None)
        if not compare_wanted:
            return self._execute_module("airlift_host_state", module_args=args,
                                        task_vars=task_vars)
        self._vars = self._variables(task_vars)
        self._plan_errors: list[dict[str, str]] = []
        engine = self._var("airlift_container_engine")
        args.setdefault("state_dir", self._var("airlift_deploy_state_dir"))
        args["engine"] = engine
        self._unit_dir = args.get("unit_dir") or layout.UNIT_DIR
        if manifest is None:
            recorded = self._execute_module("airlift_host_state", module_args=args,
                                            task_vars=task_vars)
            if recorded.get("failed"):
                return recorded
            state = {"images": recorded["images"], "licenses": recorded["licenses"]}
            want: dict[str, Any] = {}
        else:
            state, want = self._planned("distribute", lambda: self._from_manifest(manifest),
                                        ({}, {}))
        for area, plan in (("deploy", self._deploy_want), ("frontdoor", self._frontdoor_want)):
            for key, value in self._planned(area, lambda plan=plan: plan(state), {}).items():
                want[key] = want.get(key, []) + value
        want["plan_errors"] = want.get("plan_errors", []) + self._plan_errors
        result = self._execute_module("airlift_host_state",
                                      module_args={**args, "want": want}, task_vars=task_vars)
        result.pop("images", None)
        result.pop("licenses", None)
        return result

    def _planned(self, area: str, plan: Any, fallback: Any) -> Any:
        """A part of the wanted state; when the controller cannot work it out (a bad
        inventory, a bundle that cannot serve the host), the area's own tasks run and
        refuse with their message: the fast path never skips what it cannot confirm."""
        try:
            return plan()
        except Exception as exc:
            self._plan_errors.append({"area": area, "subject": str(exc).split("\n")[0]})
            return fallback

    # Variables -------------------------------------------------------------------
    def _variables(self, task_vars: dict[str, Any]) -> dict[str, Any]:
        """The task's variables, with the roles' defaults under those the host lacks."""
        merged: dict[str, Any] = {}
        for path in VAR_FILES:
            merged.update(self._loader.load_from_file(str(path), trusted_as_template=True)
                          or {})
        merged.update(task_vars)
        return merged

    def _var(self, name: str, **extra: Any) -> Any:
        templar = self._templar.copy_with_new_env(available_variables={**self._vars, **extra})
        return templar.template(trust_as_template("{{ " + name + " }}"))

    def _render(self, source: Path, **extra: Any) -> str:
        """A role template rendered as the template module renders it."""
        return render_as_template_module(self._templar, source, {**self._vars, **extra})

    # What distribute would deliver -------------------------------------------------
    def _from_manifest(self, manifest: dict[str, Any]) -> tuple[dict, dict]:
        services = self._var("airlift_services")
        catalog = self._var("airlift_catalog")
        try:
            share = distribute.host_share(manifest, services, catalog,
                                          frontdoor=bool(self._var("airlift_frontdoor_enabled")))
        except distribute.ShareError as exc:
            raise AnsibleActionFail(str(exc)) from exc
        license_dir = self._var("airlift_distribute_license_dir")
        licenses = [{"service": lic["service"], "sha256": lic["sha256"],
                     "file": f"{license_dir}/{lic['service']}/{os.path.basename(lic['path'])}"}
                    for lic in share["licenses"]]
        images = [{"ref": image["ref"], "id": image["id"]} for image in share["images"]]
        state = {"images": {"images": {image["ref"]: {"id": image["id"]} for image in images}},
                 "licenses": {"licenses": {lic["service"]: {"file": lic["file"],
                                                            "sha256": lic["sha256"]}
                                           for lic in licenses}}}
        # A killed transfer's temporary files: distribute's image task discards them.
        leftovers = [{"dir": self._var("airlift_distribute_staging_dir"),
                      "suffix": layout.PARTIAL_SUFFIX, "area": "distribute"}]
        return state, {"images": images, "licenses": licenses, "leftovers": leftovers}

    # What deploy would install -----------------------------------------------------
    def _deploy_want(self, state: dict[str, Any]) -> dict[str, Any]:
        services = self._var("airlift_services")
        catalog = self._var("airlift_catalog")
        try:
            units = deploy.units(
                services, catalog, state, self._var("airlift_deploy_license_dir"),
                self._var("airlift_deploy_output_dir"),
                self._var("airlift_deploy_ready_timeout"),
                bind_address=self._var("airlift_deploy_bind_address"),
                bridge_address=self._var("airlift_deploy_bridge_address"),
                shared_dir=self._var("airlift_deploy_mounts_dir"))
        except deploy.DeployError as exc:
            # Nothing to compare units with: deploy's own tasks say what to run first.
            return {"plan_errors": [{"area": "deploy", "subject": str(exc)}]}
        template = DEPLOY_TEMPLATES / f"{self._var('airlift_container_engine')}.service.j2"
        unit_dir = self._unit_dir
        files = [{"path": f"{unit_dir}/{layout.unit_name(unit['name'])}",
                  "sha256": sha256_text(self._render(template, __airlift_deploy_unit=unit)),
                  "mode": "0644", "area": "deploy"} for unit in units]
        dirs = [{"path": unit["output_dir"], "uid": unit["owner"], "mode": "0750",
                 "area": "deploy"} for unit in units]
        dirs += [{"path": item["path"], "uid": item["owner"], "mode": "0750", "area": "deploy"}
                 for item in deploy.mount_dirs(units, read_only=False)]
        dirs += [{"path": item["path"], "area": "deploy"}
                 for item in deploy.mount_dirs(units, read_only=True)]
        # deploy writes {'services': units} | to_nice_json: compared as data.
        record = json.loads(json.dumps({"services": units}))
        return {"files": files, "dirs": dirs,
                "json_files": [{"path": f"{self._var('airlift_deploy_state_dir')}/services.json",
                                "content": record, "area": "deploy"}],
                "units": [{"name": layout.unit_name(unit["name"]), "area": "deploy"}
                          for unit in units],
                "keep_units": [FRONTDOOR_UNIT]}

    # What the front door would install ---------------------------------------------
    def _frontdoor_want(self, state: dict[str, Any]) -> dict[str, Any]:
        unit_path = f"{self._unit_dir}/{FRONTDOOR_UNIT}"
        if not self._var("airlift_frontdoor_enabled"):
            return {"absent": [{"path": unit_path, "area": "frontdoor"}]}
        catalog = self._var("airlift_catalog")
        images = (state.get("images") or {}).get("images") or {}
        image_id = ((images.get(catalog[FRONTDOOR_CATALOG]["image"]) or {}).get("id")
                    or "").split(":", 1)[-1]
        try:
            plan = frontdoor.routes(self._var("airlift_services"),
                                    **self._var("__airlift_frontdoor_route_options"))
        except (frontdoor.FrontdoorError, TypeError) as exc:
            raise AnsibleActionFail(str(exc)) from exc
        extra = {"__airlift_frontdoor_plan": plan, "__airlift_frontdoor_image_id": image_id}
        config_dir = self._var("airlift_frontdoor_config_dir")
        tls = self._var("__airlift_frontdoor_tls")
        files = [
            {"path": f"{config_dir}/nginx.conf", "mode": "0644", "area": "frontdoor",
             "sha256": sha256_text(self._render(FRONTDOOR_TEMPLATES / "nginx.conf.j2", **extra))},
            {"path": unit_path, "mode": "0644", "area": "frontdoor",
             "sha256": sha256_text(self._render(FRONTDOOR_TEMPLATES / "frontdoor.service.j2",
                                                **extra))},
            {"path": f"{config_dir}/tls/ca.crt", "mode": "0644", "area": "frontdoor",
             "sha256": sha256_file(tls["ca"])},
            {"path": f"{config_dir}/tls/server.crt", "mode": "0644", "area": "frontdoor",
             "sha256": sha256_file(tls["cert"])},
            {"path": f"{config_dir}/tls/server.key", "mode": "0600", "area": "frontdoor",
             "sha256": sha256_file(tls["key"])},
        ]
        dirs = [{"path": self._var("airlift_frontdoor_log_dir"), "uid": 0, "mode": "0750",
                 "area": "frontdoor"},
                {"path": config_dir, "uid": 0, "mode": "0700", "area": "frontdoor"},
                {"path": f"{config_dir}/tls", "uid": 0, "mode": "0700", "area": "frontdoor"}]
        return {"files": files, "dirs": dirs,
                "units": [{"name": FRONTDOOR_UNIT, "area": "frontdoor"}]}
