# Apache-2.0
"""The converged fast path: what a host shows against what the bundle and inventory want.

The controller works out what each host should have (image IDs, license hashes, the
unit files deploy would render, the front door's files) and sends it to the host's
airlift_host_state module, which observes everything in one pass and calls compare().
Pure functions, stdlib only: they run on the host and are unit-tested off-host.

Every difference names the role whose tasks repair it (its area): distribute (images,
licenses and their records), deploy (units, their states, folders, services.json) or
frontdoor (the proxy's files and unit). A host with no difference in an area skips that
role's tasks.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable
from typing import Any

AREAS = ("distribute", "deploy", "frontdoor")


def bare_id(image_id: str | None) -> str:
    """An image ID without its algorithm prefix, as engines print it both ways."""
    return (image_id or "").split(":", 1)[-1]


def sha256_of(path: str) -> str | None:
    """The file's sha256, or None when it cannot be read (absent). Licenses, units and
    configuration files are small; images are compared by ID, never hashed."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def read_json(path: str) -> Any:
    """A JSON file's content; None when absent or unreadable (it then differs)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def dir_state(path: str) -> dict[str, Any] | None:
    """Owner and mode of a folder, or None when it is not one."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode):
        return None
    return {"uid": info.st_uid, "mode": f"{stat.S_IMODE(info.st_mode):04o}"}


def file_mode(path: str) -> str | None:
    try:
        return f"{stat.S_IMODE(os.stat(path).st_mode):04o}"
    except OSError:
        return None


def observe(want: dict[str, Any], engine_ids: Iterable[str], unit_states: dict[str, dict],
            installed_units: Iterable[str], state: dict[str, Any],
            reader: Callable[[str], str | None] = sha256_of) -> dict[str, Any]:
    """What the host shows for everything `want` names (files hashed by `reader`)."""
    return {
        "engine_ids": sorted({bare_id(item) for item in engine_ids}),
        "units": unit_states,
        "installed_units": sorted(installed_units),
        "state": state,
        "files": {path: {"sha256": reader(path), "mode": file_mode(path)}
                  for path in [*(item["path"] for item in want.get("files", [])),
                               *(item["file"] for item in want.get("licenses", []))]},
        "json_files": {item["path"]: read_json(item["path"])
                       for item in want.get("json_files", [])},
        "dirs": {item["path"]: dir_state(item["path"]) for item in want.get("dirs", [])},
        "absent": {item["path"]: os.path.lexists(item["path"])
                   for item in want.get("absent", [])},
        "leftovers": {item["dir"]: leftovers(item["dir"], item["suffix"])
                      for item in want.get("leftovers", [])},
    }


def leftovers(folder: str, suffix: str) -> list[str]:
    """Names in `folder` ending in `suffix` (a killed transfer's temporary files)."""
    try:
        return sorted(name for name in os.listdir(folder) if name.endswith(suffix))
    except OSError:
        return []


def _diff(area: str, kind: str, subject: str, want: Any = None, have: Any = None
          ) -> dict[str, Any]:
    return {"area": area, "kind": kind, "subject": subject, "want": want, "have": have}


def compare(want: dict[str, Any], seen: dict[str, Any]) -> list[dict[str, Any]]:
    """Every way the host (`seen`, from observe()) differs from `want`, in one list.

    `want` keys: images [{ref, id}], licenses [{service, file, sha256}], files
    [{path, sha256, mode?, area}], json_files [{path, content, area}], dirs [{path,
    uid?, mode?, area}], units [{name, area}] (active and enabled), absent [{path,
    area}], leftovers [{dir, suffix, area}] (a killed transfer's files: the role's
    tasks discard them once stale), plan_errors [{area, subject}] (the controller
    could not plan: that role's tasks run and say why), keep_units (installed
    airlift-*.service not in units or keep_units are stale: deploy removes them).
    """
    out: list[dict[str, Any]] = [_diff(item["area"], "plan_error", item["subject"])
                                 for item in want.get("plan_errors", [])]
    engine_ids = set(seen["engine_ids"])
    recorded_images = ((seen["state"].get("images") or {}).get("images") or {})
    for image in want.get("images", []):
        ref, image_id = image["ref"], bare_id(image["id"])
        if image_id not in engine_ids:
            out.append(_diff("distribute", "image_missing", ref, image_id, None))
        elif bare_id((recorded_images.get(ref) or {}).get("id")) != image_id:
            out.append(_diff("distribute", "image_unrecorded", ref, image_id,
                             bare_id((recorded_images.get(ref) or {}).get("id")) or None))
    recorded_licenses = ((seen["state"].get("licenses") or {}).get("licenses") or {})
    wanted_services = set()
    for lic in want.get("licenses", []):
        wanted_services.add(lic["service"])
        have = seen["files"].get(lic["file"], {}).get("sha256")
        if have != lic["sha256"]:
            out.append(_diff("distribute", "license_differs", lic["file"], lic["sha256"], have))
        elif recorded_licenses.get(lic["service"]) != {"file": lic["file"],
                                                       "sha256": lic["sha256"]}:
            out.append(_diff("distribute", "license_unrecorded", lic["service"],
                             lic["sha256"], recorded_licenses.get(lic["service"])))
    if "licenses" in want and set(recorded_licenses) - wanted_services:
        out.append(_diff("distribute", "license_unrecorded", "licenses.json",
                         sorted(wanted_services), sorted(recorded_licenses)))
    for item in want.get("files", []):
        have = seen["files"].get(item["path"], {})
        if have.get("sha256") is None:
            out.append(_diff(item["area"], "file_missing", item["path"], item["sha256"], None))
        elif have["sha256"] != item["sha256"]:
            out.append(_diff(item["area"], "file_differs", item["path"], item["sha256"],
                             have["sha256"]))
        elif item.get("mode") and have.get("mode") != item["mode"]:
            out.append(_diff(item["area"], "mode_differs", item["path"], item["mode"],
                             have.get("mode")))
    for item in want.get("json_files", []):
        have = seen["json_files"].get(item["path"])
        if have != item["content"]:
            out.append(_diff(item["area"], "record_differs", item["path"], None,
                             None if have is None else "other content"))
    for item in want.get("dirs", []):
        have = seen["dirs"].get(item["path"])
        if have is None:
            out.append(_diff(item["area"], "dir_missing", item["path"]))
            continue
        for key in ("uid", "mode"):
            if item.get(key) is not None and have[key] != item[key]:
                out.append(_diff(item["area"], f"dir_{key}_differs", item["path"], item[key],
                                 have[key]))
    for unit in want.get("units", []):
        have = seen["units"].get(unit["name"]) or {}
        if have.get("ActiveState") != "active":
            out.append(_diff(unit["area"], "unit_inactive", unit["name"], "active",
                             have.get("ActiveState") or "unknown"))
        if have.get("UnitFileState") != "enabled":
            out.append(_diff(unit["area"], "unit_disabled", unit["name"], "enabled",
                             have.get("UnitFileState") or "unknown"))
    for item in want.get("absent", []):
        if seen["absent"].get(item["path"]):
            out.append(_diff(item["area"], "present", item["path"], None, "present"))
    for item in want.get("leftovers", []):
        for name in seen["leftovers"].get(item["dir"], []):
            out.append(_diff(item["area"], "leftover", os.path.join(item["dir"], name), None,
                             "present"))
    if "keep_units" in want:
        keep = {unit["name"] for unit in want.get("units", [])} | set(want["keep_units"])
        for name in seen["installed_units"]:
            if name not in keep:
                out.append(_diff("deploy", "unit_stale", name, None, "installed"))
    return out


def areas(differences: Iterable[dict[str, Any]]) -> dict[str, bool]:
    """Which roles have work on this host: {area: bool} for every area."""
    found = {item["area"] for item in differences}
    return {area: area in found for area in AREAS}


def summary(differences: list[dict[str, Any]]) -> list[str]:
    """One short line per difference, for the play's output."""
    return [f"{item['area']}: {item['kind'].replace('_', ' ')} {item['subject']}"
            for item in differences]
