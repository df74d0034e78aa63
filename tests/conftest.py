from __future__ import annotations

import os
import shutil

import pytest


def need_tool(name: str) -> str:
    """The path of a client tool; CI installs them all, so there a missing one fails."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: .ci/run must install it")
        pytest.skip(f"{name} is not installed (apt-get install it to run this test)")
    return path


@pytest.fixture
def dig() -> str:
    return need_tool("dig")
