"""execution-environment.yml stays in step with the project's pins."""

from __future__ import annotations

import re

import yaml
from conftest import ROOT


def pins() -> dict[str, str]:
    text = (ROOT / "pyproject.toml").read_text()
    return dict(re.findall(r'"([A-Za-z0-9_.-]+)==([^"]+)"', text))


def test_execution_environment_uses_the_pinned_versions_and_installs_airlift():
    ee = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    pinned = pins()
    assert ee["version"] == 3
    assert ee["dependencies"]["ansible_core"]["package_pip"] == \
        f"ansible-core=={pinned['ansible-core']}"
    assert ee["dependencies"]["ansible_runner"]["package_pip"] == \
        f"ansible-runner=={pinned['ansible-runner']}"
    for requirement in ee["dependencies"]["python"]:
        name, version = requirement.split("==")
        assert pinned[name] == version, requirement
    steps = " ".join(ee["additional_build_steps"]["append_final"])
    assert "pip install" in steps and "/opt/airlift" in steps
    assert {item["src"] for item in ee["additional_build_files"]} == {"pyproject.toml", "src"}
