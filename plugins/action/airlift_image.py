# Apache-2.0
"""Move only the image archives a host lacks, each once, then load them on the host.

With C(bundle_dir) set, this action asks the host which image IDs it has (the module's
C(state=query), no hashing anywhere), transfers each missing archive from the verified
bundle to a temporary name on the host, and has the module verify and load it.
A converged host costs one module call and moves no bytes. Without C(bundle_dir) the
arguments go to the airlift_image module unchanged.

Each run has its own ID (the controller's pid and a random suffix), which names its
temporary files on the host and the archive locks it holds: a re-run that overlaps with
the still-working orphan of a killed run never writes, loads or removes that run's files.

Before the first byte moves, the free space the host reports for the staging directory
and each of C(disk_paths) is held against preflight's host.disk rule (airlift.checks, on
the controller): a transfer preflight would flag is refused, never half done.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from airlift import layout
from airlift.checks import transfer_refusal

MODULE = "airlift_image"
SYNC_ARGS = ("bundle_dir", "images", "engine", "staging_dir", "keep_archive", "state_file",
             "disk_paths", "disk_headroom", "lock_timeout", "stale_after")
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
        run_id = f"{os.getpid()}-{secrets.token_hex(3)}"
        common = {key: args[key] for key in ("engine", "staging_dir", "state_file")
                  if key in args}
        common["run_id"] = run_id
        try:
            return self._sync(result, args, bundle_dir, common, task_vars)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)

    def _sync(self, result: dict[str, Any], args: dict[str, Any], bundle_dir: str,
              common: dict[str, Any], task_vars: dict[str, Any] | None) -> dict[str, Any]:
        """Query, refuse or transfer and load; the temp dir is removed by the caller."""
        images = args.get("images") or []
        stale = {"stale_after": args["stale_after"]} if "stale_after" in args else {}
        probe = self._execute_module(MODULE, task_vars=task_vars, module_args={
            **common, **stale, "state": "query",
            "disk_paths": list(args.get("disk_paths") or []),
            "images": [{"id": image["id"], "ref": image["ref"]} for image in images]})
        if probe.get("failed"):
            return {**result, **probe, "msg": failure_text(probe)}
        staging = args.get("staging_dir", layout.host.STAGING_DIR)
        by_id = {image["id"]: image for image in images}
        missing = [by_id[item["id"]] for item in probe["missing"]]
        # Refuse before moving a byte what preflight's host.disk check would flag.
        refusal = transfer_refusal([int(image["size"]) for image in missing],
                                   probe["free_mb"],
                                   float(args.get("disk_headroom", DISK_HEADROOM)), staging)
        if refusal:
            return {**result, "failed": True, "msg": refusal, "free_mb": probe["free_mb"]}
        result.update(changed=bool(probe.get("changed")), present=probe["present"],
                      discarded=probe["discarded"], kept=probe.get("kept", []),
                      transferred_bytes=0, loaded=[],
                      would_transfer=[])
        for item in probe.get("unrecorded", []):
            # Present already: the module tags and records it, nothing is transferred.
            recorded = self._execute_module(MODULE, task_vars=task_vars, module_args={
                **common, "state": "loaded",
                "image": {key: by_id[item["id"]][key] for key in ("id", "ref", "sha256", "size")}})
            if recorded.get("failed"):
                return {**result, **recorded, "msg": failure_text(recorded)}
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
                temporary = f"{staging}/{partial_name(image['sha256'], common['run_id'])}"
            self._connection.put_file(source, temporary)
            if take_over:
                self._fixup_perms2([temporary])
            result["transferred_bytes"] += image["size"]
            extra = {"lock_timeout": args["lock_timeout"]} if "lock_timeout" in args else {}
            loaded = self._execute_module(MODULE, task_vars=task_vars, module_args={
                **common, **extra, "state": "loaded", "src": temporary,
                "take_over": take_over, "keep_archive": args.get("keep_archive", False),
                "image": {key: image[key] for key in ("id", "ref", "sha256", "size")}})
            if loaded.get("failed"):
                return {**result, **loaded, "msg": f"{image['ref']}: {failure_text(loaded)}"}
            # Another run may have loaded it while this one waited for the lock: then
            # this run's copy was discarded and nothing changed.
            if loaded.get("loaded"):
                result["loaded"].append(image["ref"])
            result["changed"] |= bool(loaded.get("changed"))
        return result


def partial_name(sha256: str, run_id: str) -> str:
    """The module's name for this run's temporary copy (airlift_images.partial_name)."""
    return f".{sha256}.tar.{run_id}{layout.host.PARTIAL_SUFFIX}"


def failure_text(answer: dict[str, Any]) -> str:
    """The reason a module call failed, also when it died of an exception.

    ansible-core 2.19 returns an uncaught exception as an `exception` object with no
    `msg`; reading only `msg` printed "None".
    """
    if answer.get("msg"):
        return str(answer["msg"])
    exception = answer.get("exception")
    event = getattr(exception, "event", None)
    if getattr(event, "msg", None):
        return str(event.msg)
    for key in ("exception", "module_stderr", "module_stdout"):
        text = str(answer.get(key) or "").strip()
        if text:
            return text.splitlines()[-1]
    return "the module failed without saying why (run again with -vvv)"
