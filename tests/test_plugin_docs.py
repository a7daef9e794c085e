"""Every module and action plugin documents itself in parseable YAML."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

PLUGINS = sorted([*(ROOT / "plugins" / "modules").glob("*.py"),
                  *(ROOT / "plugins" / "action").glob("*.py")])


def doc_strings(path: Path) -> dict[str, str]:
    tree = ast.parse(path.read_text())
    return {node.targets[0].id: node.value.value for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in {"DOCUMENTATION", "EXAMPLES", "RETURN"}}


@pytest.mark.parametrize("path", PLUGINS, ids=[p.name for p in PLUGINS])
def test_documentation_examples_and_return_parse(path):
    docs = doc_strings(path)
    if path.parent.name == "action" and (ROOT / "plugins/modules" / path.name).exists():
        return  # documented by the module of the same name
    assert set(docs) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}, path
    documentation = yaml.safe_load(docs["DOCUMENTATION"])
    assert documentation["module"] == path.stem
    assert documentation["short_description"]
    for name, option in (documentation.get("options") or {}).items():
        assert option.get("description"), f"{path.stem}: option {name} has no description"
    examples = yaml.safe_load(docs["EXAMPLES"])
    assert isinstance(examples, list) and all("name" in task for task in examples)
    yaml.safe_load(docs["RETURN"])
