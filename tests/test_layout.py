"""The host layout is defined once: module_utils for the modules and controller code, the
shared role's defaults for the roles; everything else derives from those two."""

from __future__ import annotations

import ast
import re

import airlift_layout
import yaml
from conftest import ROOT

from airlift import deploy, frontdoor, layout

LITERAL = re.compile(r"/var/lib/airlift\b")
DOC_NAMES = {"DOCUMENTATION", "EXAMPLES", "RETURN"}


def _code_without_docs(path) -> str:
    """A module's source minus its documentation strings (those must repeat defaults)."""
    source = path.read_text()
    lines = source.splitlines()
    for node in ast.parse(source).body:
        names = {getattr(target, "id", "") for target in getattr(node, "targets", [])}
        if isinstance(node, ast.Assign) and names & DOC_NAMES:
            for number in range(node.lineno - 1, node.end_lineno):
                lines[number] = ""
    return "\n".join(lines)


def test_the_roles_and_the_modules_share_one_root():
    defaults = yaml.safe_load((ROOT / "roles/airlift/defaults/main.yml").read_text())
    assert defaults["airlift_host_dir"] == airlift_layout.ROOT
    assert layout.host.ROOT == airlift_layout.ROOT


def test_no_role_module_or_controller_file_repeats_the_host_root():
    allowed = {ROOT / "roles/airlift/defaults/main.yml",
               ROOT / "roles/airlift/meta/argument_specs.yml",
               ROOT / "plugins/module_utils/airlift_layout.py"}
    found = []
    for pattern in ("roles/**/*.yml", "roles/**/*.j2", "playbooks/*.yml"):
        found += [p for p in ROOT.glob(pattern)
                  if p not in allowed and LITERAL.search(p.read_text())]
    for pattern in ("plugins/**/*.py", "src/airlift/*.py"):
        found += [p for p in ROOT.glob(pattern)
                  if p not in allowed and LITERAL.search(_code_without_docs(p))]
    assert found == []


def test_every_role_folder_derives_from_the_shared_layout():
    """Moving airlift_host_dir moves every host folder of every role (none keeps its own)."""
    for defaults in ROOT.glob("roles/airlift_*/defaults/main.yml"):
        for name, value in (yaml.safe_load(defaults.read_text()) or {}).items():
            if name.endswith(("_state_dir", "_license_dir", "_output_dir", "_mounts_dir",
                              "_staging_dir", "_archive_dir", "_snapshot_dir")):
                assert "{{ airlift_" in str(value), (defaults, name, value)


def test_unit_names_come_from_the_layout():
    assert airlift_layout.unit_name("read") == "airlift-read.service"
    assert frontdoor.unit_name("read") == airlift_layout.unit_name("read")
    assert deploy.stale_units(["/etc/systemd/system/airlift-old.service",
                               "/etc/systemd/system/airlift-read.service"],
                              [{"name": "read"}]) == ["/etc/systemd/system/airlift-old.service"]
    assert deploy.SHARED_DIR == airlift_layout.MOUNTS_DIR
