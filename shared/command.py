"""What every healthdns command line has: `--version`, shell completion, and a pointer to the
documentation below `--help`.

Completion scripts are generated from the argparse parsers themselves (shtab), so they know
every flag and subcommand of the installed version; `docs/operations.md` ("Shell completion")
says where to put them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from healthdns.shared.version import version

SHELLS = ("bash", "zsh")
DOCS = "in the healthdns source tree"
_FILE = "file"  # an action's `complete`: a file name (shtab.FILE once shtab is imported)


def standard(parser: argparse.ArgumentParser, docs: str) -> argparse.ArgumentParser:
    """`parser` with `--version`, `--print-completion {bash,zsh}` and an epilog naming `docs`,
    the sections of the documentation that explain the command."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--print-completion", choices=SHELLS, action=_PrintCompletion,
                        help="print the shell's completion script for this command, and exit "
                        '(docs/operations.md, "Shell completion")')
    parser.epilog = f"Documentation: {docs}, {DOCS}."
    return parser


def path(action: argparse.Action) -> argparse.Action:
    """`action` completes as a file name."""
    action.complete = _FILE  # type: ignore[attr-defined]  # read by shtab
    return action


class _PrintCompletion(argparse.Action):
    """Prints shtab's script for the whole parser, as `--version` prints the version."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=None, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        import shtab  # about 4 MiB once imported: only a command that prints a script pays it

        for action in _actions(parser):
            if getattr(action, "complete", None) == _FILE:
                action.complete = shtab.FILE  # type: ignore[attr-defined]
        script = shtab.complete(parser, shell=values)
        sys.stdout.write(script if script.endswith("\n") else script + "\n")
        parser.exit()


def _actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
