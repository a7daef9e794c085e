"""Thin wrapper over the podman CLI that always applies the project's containers.conf.

The lab never edits /etc: runtime (runc) and ulimits come from lab/containers.conf
through CONTAINERS_CONF, which every podman call made here inherits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from airlift.paths import lab_dir


class PodmanError(RuntimeError):
    """A podman command failed; the message carries its stderr."""


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(lab_dir() / "containers.conf"))
    return env


def missing_tools(tools: Sequence[str] = ("podman", "runc")) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]


def run(
    args: Sequence[str],
    *,
    check: bool = True,
    capture: bool = True,
    stdin: Any = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `podman ARGS`; raise PodmanError with podman's own words on failure."""
    proc = subprocess.run(
        ["podman", *args],
        env=environment(),
        stdin=stdin,
        input=input_text,
        text=True,
        capture_output=capture,
        check=False,
    )
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip() if capture else ""
        raise PodmanError(f"podman {' '.join(args[:3])} failed: {detail}")
    return proc


def image_exists(ref: str) -> bool:
    return run(["image", "exists", ref], check=False).returncode == 0


def image_labels(ref: str) -> dict[str, str]:
    out = run(["image", "inspect", "--format", "{{json .Labels}}", ref]).stdout
    return json.loads(out) or {}


def container_state(name: str) -> str | None:
    """'running', 'exited', ... or None when the container does not exist."""
    proc = run(["container", "inspect", "--format", "{{.State.Status}}", name], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def is_stale(name: str) -> bool:
    """True when podman records the container as up but its processes are gone.

    Happens when every process on the machine is killed at once (conmon with the
    container), so no exit file is written and podman keeps the old state; such a
    container can be neither exec'd into, started nor stopped, only removed.
    """
    state = container_state(name)
    if state not in {"running", "stopping", "paused"}:
        return False
    return run(["exec", name, "true"], check=False).returncode != 0


def containers_with_label(label: str) -> list[dict[str, Any]]:
    out = run(["ps", "-a", "--filter", f"label={label}", "--format", "json"]).stdout
    return json.loads(out or "[]")
