"""requirements.lock, which the container image installs, agrees with pyproject.toml: every
dependency and the build backend pinned to a version its bounds allow, every file hashed, and
nothing else but what those pull in. Offline: it reads the files only (`./dev lock` makes the
lock, with the network)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = (ROOT / "requirements.lock").read_text()


def entries() -> dict[str, tuple[str, list[str], list[str]]]:
    """name -> (version, hashes, what pulls it in) of each package of the lock."""
    found = {}
    for block in re.split(r"\n(?=\S)", LOCK.strip()):
        if block.startswith("#"):
            continue
        head = re.match(r"([A-Za-z0-9._-]+)==(\S+) \\", block)
        assert head, f"not pinned as name==version: {block.splitlines()[0]!r}"
        via = re.findall(r"#\s+(?:via\s+)?([A-Za-z0-9._-]+)(?: \(pyproject\.toml\))?$",
                         block, re.MULTILINE)
        found[canonicalize_name(head.group(1))] = (
            head.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", block),
            [canonicalize_name(v) for v in via if v != "via"])
    return found


def wanted() -> list[Requirement]:
    return [Requirement(r) for r in (*PYPROJECT["project"]["dependencies"],
                                     *PYPROJECT["build-system"]["requires"])]


def test_every_dependency_is_pinned_within_its_bounds() -> None:
    locked = entries()
    for requirement in wanted():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is in pyproject.toml, not in requirements.lock: " \
            "run ./dev lock"
        version = locked[name][0]
        assert requirement.specifier.contains(version, prereleases=True), \
            f"{name}=={version} is outside pyproject's {requirement}: run ./dev lock"


def test_every_package_is_hashed_and_pulled_in_by_a_dependency() -> None:
    locked = entries()
    direct = {canonicalize_name(r.name) for r in wanted()}
    reached, todo = set(direct), list(direct)
    while todo:  # follow the lock's own "via" notes from the dependencies down
        name = todo.pop()
        for other, (_, _, via) in locked.items():
            if name in via and other not in reached:
                reached.add(other)
                todo.append(other)
    for name, (version, hashes, _) in locked.items():
        assert hashes, f"{name}=={version} has no hash"
        assert name in reached, f"{name} is in the lock but nothing in pyproject.toml needs " \
            "it: run ./dev lock"
    assert "./dev lock" in LOCK.split("\n", 2)[1]  # the header says how it was made


def test_the_image_installs_the_lock_with_hashes() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY requirements.lock ./" in dockerfile
    assert re.search(r"pip install --require-hashes --no-deps -r requirements\.lock", dockerfile)
    # healthdns itself: from the sources, with no index (nothing unpinned comes in).
    assert re.search(r"pip install --no-deps --no-index --no-build-isolation \.", dockerfile)
