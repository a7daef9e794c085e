"""Shared fixtures: project paths, and the lab images (built on demand, cached)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
sys.path.insert(0, str(ROOT / "lab" / "simulator"))
# Modules import their support code as Ansible ships it (ansible.module_utils.<name>);
# register the plain-name imports under that name too, so tests load the same objects.
# The layout first: the others import it.
for _path in sorted((ROOT / "plugins" / "module_utils").glob("airlift_*.py"),
                    key=lambda path: (path.stem != "airlift_layout", path.stem)):
    sys.modules.setdefault(f"ansible.module_utils.{_path.stem}", __import__(_path.stem))
os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "lab" / "containers.conf"))
# inventories/example has a vaulted placeholder; its password file is public, example only.
EXAMPLE_VAULT = ["--vault-password-file", "inventories/example/vault-password.example.txt"]


def run_playbook(playbook: str, *args: str, inventory: str = "inventories/lab",
                 json_output: bool = False) -> subprocess.CompletedProcess:
    """ansible-playbook from the project root, optionally with the JSON stdout callback."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    if json_output:
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    return subprocess.run(["ansible-playbook", "-i", inventory, playbook, *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, check=False)


def flat(text: str) -> str:
    """Output with runs of whitespace as one space: Ansible's YAML results fold long
    messages across lines."""
    return " ".join(text.split())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def sim_images() -> dict[str, str]:
    from airlift import lab

    return {image.service: image.ref for image in lab.ensure_simulator_images()}
