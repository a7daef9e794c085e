"""README "What airlift guarantees": every line names tests, and every named test exists.

A guarantee whose test was renamed or removed would otherwise stay in the README unproven.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

from conftest import ROOT

SECTION = "## What airlift guarantees"
REFERENCE = re.compile(r"`(tests/test_\w+\.py)::((?:\w+::)?test_\w+)`")


def section(title: str = SECTION) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start:end if end != -1 else None]


def defined_tests(path: Path) -> set[str]:
    """`test_x` and `Class::test_x` for every test function of the module."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(f"{node.name}::{item.name}" for item in node.body
                         if isinstance(item, ast.FunctionDef) and item.name.startswith("test_"))
    return names


def rows() -> list[str]:
    """The table rows of the section (not headers or separators)."""
    lines = [line for line in section().splitlines() if line.startswith("| ")]
    return [line for line in lines if not line.startswith(("| Fault |", "|---"))]


def test_every_guarantee_names_a_test():
    assert len(rows()) >= 15
    for row in rows():
        assert REFERENCE.search(row), f"no test named for: {row[:100]}"


def test_every_named_test_exists():
    references = REFERENCE.findall(section())
    assert references
    missing = [f"{module}::{name}" for module, name in references
               if name not in defined_tests(ROOT / module)]
    assert missing == []


def test_every_lab_command_is_in_the_lab_section():
    """README "The lab" shows every `airlift lab` verb the command line has."""
    from airlift import cli

    parser = cli.build_parser()
    verbs = next(action for action in parser._actions
                 if isinstance(action, argparse._SubParsersAction))
    lab = next(action for action in verbs.choices["lab"]._actions
               if isinstance(action, argparse._SubParsersAction))
    text = section("## The lab")
    missing = [verb for verb in lab.choices if f"airlift lab {verb}" not in text]
    assert len(lab.choices) >= 6
    assert missing == []
