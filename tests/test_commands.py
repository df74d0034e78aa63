"""What every command has: `--version`, a `--help` that ends with the documentation to read
(sections that exist), and bash and zsh completion generated from its parser."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import need_tool

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
COMMANDS = ("healthdns-supervisor", "healthdns-ctl", "healthdns-key")


def run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False,
                          cwd=cwd)


@pytest.mark.parametrize("command", COMMANDS)
def test_version(command: str) -> None:
    done = run(str(BIN / command), "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{command} {importlib.metadata.version('healthdns')}\n"


def test_python_m_supervisor_is_the_supervisor() -> None:
    done = run(sys.executable, "-m", "healthdns.supervisor", "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"healthdns-supervisor {importlib.metadata.version('healthdns')}\n"


def headings(path: Path) -> set[str]:
    return {m.strip().strip("`") for m in re.findall(r"^#+ (.+)$", path.read_text(),
                                                     re.MULTILINE)}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_ends_with_documentation_that_exists(command: str) -> None:
    done = run(str(BIN / command), "--help")
    assert done.returncode == 0, done.stderr
    epilog = " ".join(done.stdout.split("Documentation: ", 1)[1].split())
    named = 0
    for part in epilog.split(";"):
        (document,) = re.findall(r"[\w/]+\.md", part)
        assert (ROOT / document).is_file(), document
        for section in re.findall(r'"([^"]+)"', part):
            assert section in headings(ROOT / document), f"{document} has no {section!r}"
            named += 1
    assert named >= 1
    if "--print-completion" in done.stdout:  # its help names the section that explains it
        assert "Shell completion" in headings(ROOT / "docs" / "operations.md")


def bash_complete(command: str, words: list[str], cwd: Path) -> list[str]:
    """What bash offers after `command words...` (the last word being completed)."""
    function = "_shtab_" + re.sub(r"\W", "_", command)
    script = (f'source <("{BIN / command}" --print-completion bash)\n'
              f"COMP_WORDS=({command} {' '.join(repr(w) for w in words)})\n"
              f"COMP_CWORD={len(words)}\n{function}\n"
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    done = run("bash", "-c", script, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("command,words,offered", [
    ("healthdns-ctl", [""], {"status", "targets", "explain", "drain", "force", "reload"}),
    ("healthdns-ctl", ["targets", "--"], {"--down", "--help"}),
    ("healthdns-ctl", ["--token-file", "tok"], {"token.txt"}),
    ("healthdns-key", [""], {"generate", "ds"}),
    ("healthdns-key", ["generate", "--algorithm", "E"],
     {"ECDSAP256SHA256", "ECDSAP384SHA384", "ED25519"}),
    ("healthdns-key", ["ds", "--key", "tok"], {"token.txt"}),
    ("healthdns-supervisor", ["--"], {"--config", "--check-config", "--hosted-zone",
                                      "--version", "--print-completion"}),
    ("healthdns-supervisor", ["--log-format", ""], {"text", "json"}),
    ("healthdns-supervisor", ["--config", "tok"], {"token.txt"}),
])
def test_bash_completion(command: str, words: list[str], offered: set[str],
                         tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("x")
    assert offered <= set(bash_complete(command, words, tmp_path))


@pytest.mark.parametrize("command", COMMANDS)
def test_zsh_completion_is_valid_zsh(command: str, tmp_path: Path) -> None:
    zsh = need_tool("zsh")
    done = run(str(BIN / command), "--print-completion", "zsh")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith(f"#compdef {command}\n")
    script = tmp_path / f"_{command}"
    script.write_text(done.stdout)
    checked = run(zsh, "-n", str(script))
    assert checked.returncode == 0, checked.stderr
    # It defines the completion function and knows the subcommands and flags.
    assert re.search(rf"^_{re.escape(command).replace('-', '_')}\(\)|^_shtab_", done.stdout,
                     re.MULTILINE)
    for word in {"healthdns-ctl": ["explain", "--token-file"],
                 "healthdns-key": ["generate", "--out"],
                 "healthdns-supervisor": ["--config", "--log-format"]}[command]:
        assert word in done.stdout
