"""`mypy --strict` (pyproject.toml's [tool.mypy]) over every role's package, as installed.

The role folders are installed as healthdns.<role> (setuptools `package-dir`), a mapping mypy
cannot follow in the source tree: the test lays out healthdns/<role> as links to them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("supervisor", "responder", "prober", "signer", "transfer", "peers", "shared")


def test_every_role_passes_mypy_strict(tmp_path: Path) -> None:
    package = tmp_path / "healthdns"
    package.mkdir()
    for role in ROLES:
        (package / role).symlink_to(ROOT / role, target_is_directory=True)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "cache"), "-p", "healthdns"],
        cwd=tmp_path, capture_output=True, text=True, timeout=110, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
