"""Modules imported on first use, for shared code whose heavy imports not every role needs.

Every role decodes its configuration with `healthdns.shared.config`, but only the supervisor
validates one: a responder never calls into dnspython, RE2 or ssl, and importing them would cost
each responder about 5 MB (see bench/memory.py). A module made here is a placeholder in
`sys.modules` that the standard library's `importlib.util.LazyLoader` replaces by the real
module on the first attribute access, so code keeps its usual `dns.name.from_text(...)` form.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def module(name: str) -> ModuleType:
    """`name`, imported at its first attribute access (its parent packages at once)."""
    found = sys.modules.get(name)
    if found is not None:
        return found
    spec = importlib.util.find_spec(name)  # imports the parent packages, which must be light
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    lazy = importlib.util.module_from_spec(spec)
    sys.modules[name] = lazy
    loader.exec_module(lazy)
    parent, _, child = name.rpartition(".")
    if parent:  # as the import statement does: `dns.name` is an attribute of `dns`
        setattr(sys.modules[parent], child, lazy)
    return lazy
