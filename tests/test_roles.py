"""Roles never import each other: each role folder imports only its own modules and shared/,
and shared/ imports no role. What two roles share lives in shared/ (CONTRIBUTING.md)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from healthdns.supervisor import installation
from tests import test_types

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("supervisor", "responder", "prober", "signer", "transfer", "peers")
PACKAGES = (*ROLES, "shared")


def imported(path: Path) -> set[str]:
    """The healthdns packages `path` imports from (`healthdns.<package>`), wherever the import
    is: at the top, in a function, or under TYPE_CHECKING."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name.split(".")[1] for name in names
                  if name.startswith("healthdns.") and name.count(".") >= 1}
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_a_role_imports_only_itself_and_shared(package: str) -> None:
    allowed = {"shared"} if package == "shared" else {package, "shared"}
    crossing = {f"{path.relative_to(ROOT)}: {', '.join(sorted(imported(path) - allowed))}"
                for path in sorted((ROOT / package).rglob("*.py")) if imported(path) - allowed}
    assert not crossing, "\n".join(sorted(crossing))


def test_every_role_folder_is_checked() -> None:
    """A new role folder (one with a main.py entry point) joins ROLES."""
    folders = {path.parent.name for path in ROOT.glob("*/main.py")}
    assert folders == set(ROLES)


def test_every_list_of_the_role_packages_names_them_all() -> None:
    """Where the packages are listed by hand: pyproject.toml installs them, the Dockerfile
    copies them, the installation check reads them as `server.user`, the mypy test checks them."""
    folders = set(PACKAGES)
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    # A package's own packages (shared/config/) are listed too: a wheel holds only those named.
    inner = {".".join(("healthdns", *init.parent.relative_to(ROOT).parts))
             for p in folders for init in (ROOT / p).glob("*/**/__init__.py")}
    assert set(setuptools["packages"]) == {f"healthdns.{p}" for p in folders} | inner
    assert setuptools["package-dir"] == {f"healthdns.{p}": p for p in folders}
    copied = re.findall(r"^COPY (\w+)/ \1/$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert set(copied) == folders
    assert set(installation.ROLES) == folders
    assert set(test_types.ROLES) == folders
