"""airlift's layout on a host, for controller code.

The one definition is plugins/module_utils/airlift_layout.py, which modules carry to the
hosts; this loads that same file so the controller and the modules cannot drift apart.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from airlift.paths import project_root


def _load() -> ModuleType:
    name = "airlift._host_layout"
    if name in sys.modules:
        return sys.modules[name]
    path = project_root() / "plugins" / "module_utils" / "airlift_layout.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:      # pragma: no cover - a broken checkout
        raise ImportError(f"airlift's host layout is missing: {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


host = _load()
