"""Where the project's files live, so the CLI works from any working directory."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The airlift checkout (installed editable); AIRLIFT_HOME overrides it."""
    override = os.environ.get("AIRLIFT_HOME")
    if override:
        return Path(override).resolve()
    return Path(__file__).resolve().parents[2]


def lab_dir() -> Path:
    return project_root() / "lab"


def state_dir() -> Path:
    """Machine-local lab state (SSH keys, known_hosts): never committed."""
    path = lab_dir() / ".state"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Slow-to-fetch inputs (debootstrap's .deb cache) kept between builds."""
    path = lab_dir() / ".cache"
    path.mkdir(parents=True, exist_ok=True)
    return path
