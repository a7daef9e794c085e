"""The container catalog: shipped YAML merged with the inventory's overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from airlift.paths import project_root


def builtin_catalog() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((project_root() / "roles" / "airlift" / "vars" / "main.yml").read_text())
    return data["airlift_catalog_builtin"]


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge: override's dict values merge into base's, others replace."""
    result = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def load(overrides: dict[str, Any] | None = None, path: Path | None = None) -> dict[str, Any]:
    base = builtin_catalog() if path is None else yaml.safe_load(path.read_text())
    return merge(base, overrides or {})
