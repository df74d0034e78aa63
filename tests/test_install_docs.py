"""Installation and first-run instructions agree with each other and with the repository: one
way to install (from the sources; healthdns is on no package index), a README quick start of
two set-up commands that says how to move its ports, log recipes that parse."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from healthdns.supervisor import cli, ctl

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
UNIT = (ROOT / "deploy" / "healthdns.service").read_text()
TEXTS = {path.relative_to(ROOT).as_posix(): path.read_text()
         for path in [*ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md"), ROOT / "Dockerfile",
                      ROOT / "docker-compose.yml", *(ROOT / "deploy").rglob("*.*")]}


def test_nothing_installs_healthdns_from_a_package_index() -> None:
    for name, text in TEXTS.items():
        for line in re.findall(r"pip install[^\n]*", text):
            words = shlex.split(line.replace("\\", ""))[2:]
            assert "healthdns" not in words, f"{name}: {line}"


def test_the_unit_and_the_operations_page_install_the_same_way() -> None:
    in_unit = [line.removeprefix("#").strip() for line in UNIT.splitlines()
               if line.startswith("#   ")]
    section = OPERATIONS.split("\n## systemd\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block
    in_docs = [line for line in block.group(1).splitlines() if not line.startswith("journalctl")]
    assert in_unit == in_docs
    for line in in_docs:  # what they copy or install exists in the repository
        for word in shlex.split(line):
            if word.startswith(("deploy/", "requirements")):
                assert (ROOT / word).is_file(), word
    assert "pip install --no-deps ." in in_docs[2] and (ROOT / "pyproject.toml").is_file()


def quick_start() -> str:
    return README.split("## Quick start", 1)[1].split("\n## ", 1)[0]


def test_the_quick_start_has_two_set_up_commands() -> None:
    first = re.search(r"```sh\n(.*?)```", quick_start(), re.DOTALL)
    assert first
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert commands == ["./dev demo", "./dev test"]


def test_the_quick_start_says_how_to_move_the_ports_and_find_them() -> None:
    text = quick_start()
    assert "127.0.0.1:8053" in text
    moved = re.search(r"\./dev demo (--control-listen (\S+)) (--listen \S+)", text)
    assert moved, "no ./dev demo line that moves the ports"
    flags = cli.parser().parse_args(["--demo", *moved.group(0).split()[2:]])
    address = flags.control_listen
    asked = re.search(rf"healthdns-ctl --url (http://{re.escape(address)})\b", text)
    assert asked, "no healthdns-ctl --url line for the moved endpoint"
    assert ctl.parser().parse_args(["--url", asked.group(1), "status"]).url == asked.group(1)
    assert f"HEALTHDNS_CONTROL=http://{address}" in text


@pytest.mark.parametrize("name", ["docs/operations.md", "docker-compose.yml", "README.md"])
def test_compose_log_recipes_give_healthdns_own_lines(name: str) -> None:
    """Compose prefixes each line with the service's name unless told not to: `jq` then fails
    on every line."""
    for line in re.findall(r"docker compose logs[^\n]*", TEXTS[name]):
        assert "--no-log-prefix" in line, f"{name}: {line}"
