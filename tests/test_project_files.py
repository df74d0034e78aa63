"""The files every project has: the licence pyproject names, a changelog with the version being
built, a security policy and a contributing guide whose links lead somewhere."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_licence_is_the_one_pyproject_names() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert " ".join(text.split()[:6]) == "Apache License Version 2.0, January 2004"
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.split()) > 1500  # the full text
    assert PROJECT["license-files"] == ["LICENSE"]
    metadata = importlib.metadata.metadata("healthdns")
    assert metadata["License-Expression"] == "Apache-2.0"
    assert "LICENSE" in (metadata.get_all("License-File") or [])


def test_the_changelog_has_the_version_being_built() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    versions = re.findall(r"^## (\S+)", text, re.MULTILINE)
    assert versions[0] == "Unreleased"
    assert PROJECT["version"] in versions


@pytest.mark.parametrize("name", ["README.md", "CHANGELOG.md", "SECURITY.md", "CONTRIBUTING.md"])
def test_relative_links_lead_to_files_and_sections(name: str) -> None:
    text = (ROOT / name).read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # another site
        path, _, anchor = target.partition("#")
        document = ROOT / path if path else ROOT / name
        assert document.exists(), f"{name}: {target}"
        if anchor:
            slugs = {_slug(h) for h in re.findall(r"^#+ (.+)$", document.read_text(),
                                                    re.MULTILINE)}
            assert anchor in slugs, f"{name}: {target}"


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
