# Apache-2.0
"""Move only the image archives a host lacks, each once, then load them on the host.

With C(bundle_dir) set, this action asks the host which image IDs it has (the module's
C(state=query), no hashing anywhere), transfers each missing archive from the verified
bundle to a temporary name on the host, and has the module verify, rename and load it.
A converged host costs one module call and moves no bytes. Without C(bundle_dir) the
arguments go to the airlift_image module unchanged.

Before the first byte moves, the free space the host reports for the staging directory
and each of C(disk_paths) is held against preflight's host.disk rule (airlift.checks, on
the controller): a transfer preflight would flag is refused, never half done.
"""

from __future__ import annotations

import os
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from airlift.checks import transfer_refusal

MODULE = "airlift_image"
SYNC_ARGS = ("bundle_dir", "images", "engine", "staging_dir", "keep_archive", "state_file",
             "disk_paths", "disk_headroom")
# airlift_preflight_disk_headroom's default, for callers that do not pass one.
DISK_HEADROOM = 1.5


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None,
            ) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if "bundle_dir" not in args:
            result.update(self._execute_module(MODULE, module_args=args, task_vars=task_vars))
            return result
        unknown = sorted(set(args) - set(SYNC_ARGS))
        if unknown:
            raise AnsibleActionFail(f"unsupported option(s) with bundle_dir: {unknown}")
        bundle_dir = args.pop("bundle_dir")
        common = {key: args[key] for key in ("engine", "staging_dir", "state_file")
                  if key in args}
        images = args.get("images") or []
        probe = self._execute_module(MODULE, task_vars=task_vars, module_args={
            **common, "state": "query", "disk_paths": list(args.get("disk_paths") or []),
            "images": [{"id": image["id"], "ref": image["ref"]} for image in images]})
        if probe.get("failed"):
            return {**result, **probe}
        staging = args.get("staging_dir", "/var/lib/airlift/staging")
        by_id = {image["id"]: image for image in images}
        missing = [by_id[item["id"]] for item in probe["missing"]]
        # Refuse before moving a byte what preflight's host.disk check would flag.
        refusal = transfer_refusal([int(image["size"]) for image in missing],
                                   probe["free_mb"],
                                   float(args.get("disk_headroom", DISK_HEADROOM)), staging)
        if refusal:
            return {**result, "failed": True, "msg": refusal, "free_mb": probe["free_mb"]}
        result.update(changed=bool(probe.get("changed")), present=probe["present"],
                      discarded=probe["discarded"], transferred_bytes=0, loaded=[],
                      would_transfer=[])
        for item in probe.get("unrecorded", []):
            # Present already: the module tags and records it, nothing is transferred.
            recorded = self._execute_module(MODULE, task_vars=task_vars, module_args={
                **common, "state": "loaded",
                "image": {key: by_id[item["id"]][key] for key in ("id", "ref", "sha256", "size")}})
            if recorded.get("failed"):
                return {**result, **recorded}
            result["changed"] |= bool(recorded.get("changed"))
        for image in missing:
            if self._task.check_mode:
                result["would_transfer"].append({"ref": image["ref"], "size": image["size"]})
                result["changed"] = True
                continue
            source = os.path.join(bundle_dir, image["archive"])
            # Root logs in: write straight into the root-only staging directory. Another
            # user cannot: upload to Ansible's temp dir; the module takes it over as root.
            take_over = self._play_context.become or (
                self._get_remote_user() not in (None, "root"))
            if take_over:
                temporary = self._connection._shell.join_path(
                    self._make_tmp_path(), f"{image['sha256']}.tar")
            else:
                temporary = f"{staging}/.{image['sha256']}.tar.partial"
            self._connection.put_file(source, temporary)
            if take_over:
                self._fixup_perms2([temporary])
            result["transferred_bytes"] += image["size"]
            loaded = self._execute_module(MODULE, task_vars=task_vars, module_args={
                **common, "state": "loaded", "src": temporary, "take_over": take_over,
                "keep_archive": args.get("keep_archive", False),
                "image": {key: image[key] for key in ("id", "ref", "sha256", "size")}})
            if loaded.get("failed"):
                return {**result, **loaded, "msg": f"{image['ref']}: {loaded.get('msg')}"}
            result["loaded"].append(image["ref"])
            result["changed"] = True
        self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
