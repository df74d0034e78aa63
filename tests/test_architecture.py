"""The tree keeps the shape docs/architecture.md describes: modules a reader can hold (at most
500 lines, classes at most 300), and every module of a role named on that page."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("supervisor", "responder", "prober", "signer", "transfer", "peers", "shared")
MODULE_LINES = 500
CLASS_LINES = 300
MODULES = sorted(p for f in FOLDERS for p in (ROOT / f).rglob("*.py"))


def test_the_folders_are_the_roles_and_shared() -> None:
    roles = {p.parent.name for p in ROOT.glob("*/main.py")}
    assert roles | {"shared"} == set(FOLDERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_and_its_classes_fit_in_a_reading(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= MODULE_LINES
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= CLASS_LINES, f"class {node.name} is {length} lines"


def test_the_architecture_page_names_every_module() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`?([\w/]+\.py)`?", page)) | set(re.findall(r"`(\w+)`", page))
    missing = [str(p.relative_to(ROOT)) for p in MODULES
               if p.stem not in ("__init__", "__main__")
               and str(p.relative_to(ROOT)) not in named and p.name not in named
               and p.stem not in named]
    assert not missing, f"docs/architecture.md does not say where these live: {missing}"
