"""Where each value of a TOML file is: the line that an error about it names.

tomllib gives the values without their positions, so the text is scanned again, after tomllib
has accepted it: table headers (`[server]`, `[zones.records."api.eu"]`), arrays of tables
(`[[zones]]`, counted, nested ones per parent), dotted keys, inline tables and arrays (each
element on its own line when it has one). An error path then finds its line
(`zones[1].records.www.pool.check.port` is line 14). A path the file does not hold (a default)
gets the line of its table when that is one step up (`check.timeout` left out: the line of
`check`), else none: no line is better than a wrong one.
"""

from __future__ import annotations

import re
import tomllib

Step = str | int
Path = tuple[Step, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_PATH_STEP = re.compile(r'\.?(?:"([^"]*)"|([^.\[\]"\s]+))|\[(\d+)\]')
_ERROR_PATH = re.compile(r'[A-Za-z_@][\w@-]*(?:\[\d+\]|\.(?:"[^"]*"|[\w@-]+))*')


def locate(text: str, error: str) -> int | None:
    """The line of the value an error message (`path: message`) is about, if known."""
    found = _ERROR_PATH.match(error)
    if not found or error[found.end():found.end() + 2] != ": ":
        return None
    return line_of(lines(text), steps(found[0]))


def steps(path: str) -> Path:
    """`zones[0].records."api.eu".a` as ("zones", 0, "records", "api.eu", "a")."""
    out: list[Step] = []
    for quoted, bare, index in _PATH_STEP.findall(path):
        out.append(int(index) if index else quoted or bare)
    return tuple(out)


def line_of(found: dict[Path, int], path: Path) -> int | None:
    if path in found:
        return found[path]
    return found.get(path[:-1]) if len(path) > 1 else None


def lines(text: str) -> dict[Path, int]:
    """The line (from 1) of every table, key and array element of a valid TOML `text`; empty
    if the text holds what this scanner does not know."""
    try:
        tomllib.loads(text)  # the scanner follows valid TOML only
        return _Scanner(text).scan()
    except (IndexError, ValueError, tomllib.TOMLDecodeError):
        return {}


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0
        self.line = 1
        self.found: dict[Path, int] = {}
        self.arrays: dict[Path, int] = {}  # array of tables -> its last index

    def scan(self) -> dict[Path, int]:
        table: Path = ()
        while True:
            self.blank(newlines=True)
            if self.at >= len(self.text):
                return self.found
            if self.text.startswith("[[", self.at):
                self.at += 2
                *parents, last = self.key("]")
                array = (*self.resolve(tuple(parents)), last)  # a new table, not the last one
                self.expect("]]")
                self.arrays[array] = self.arrays.get(array, -1) + 1
                table = (*array, self.arrays[array])
                self.found.setdefault(table, self.line)
            elif self.text[self.at] == "[":
                self.at += 1
                table = self.resolve(self.key("]"))
                self.expect("]")
                self.found.setdefault(table, self.line)
            else:
                self.pair(table)

    def resolve(self, keys: Path) -> Path:
        """A header's keys as a path: a step through an array of tables is its last table."""
        path: Path = ()
        for key in keys:
            path = (*path, key)
            if path in self.arrays:
                path = (*path, self.arrays[path])
        return path

    def pair(self, table: Path) -> None:
        line = self.line
        path = (*table, *self.key("="))
        self.expect("=")
        self.found.setdefault(path, line)
        self.value(path)

    def key(self, end: str) -> Path:
        """A dotted key up to `end` (not consumed)."""
        parts: list[Step] = []
        while True:
            self.blank()
            char = self.text[self.at]
            if char in "\"'":
                start = self.at
                self.string()
                parts.append(tomllib.loads(f"k = {self.text[start:self.at]}")["k"])
            else:
                bare = _BARE.match(self.text, self.at)
                if not bare:
                    raise ValueError(f"no key at {self.at}")
                parts.append(bare[0])
                self.at = bare.end()
            self.blank()
            if self.text[self.at] != ".":
                if not self.text.startswith(end, self.at):
                    raise ValueError(f"expected {end!r} at {self.at}")
                return tuple(parts)
            self.at += 1

    def value(self, path: Path) -> None:
        self.blank()
        char = self.text[self.at]
        if char in "\"'":
            self.string()
        elif char == "[":
            self.array(path)
        elif char == "{":
            self.inline(path)
        else:  # a number, boolean or date: up to what ends a value
            end = re.compile(r"[,\]}#\n]").search(self.text, self.at)
            self.at = end.start() if end else len(self.text)

    def array(self, path: Path) -> None:
        self.at += 1
        index = 0
        while True:
            self.blank(newlines=True)
            if self.text[self.at] == "]":
                self.at += 1
                return
            self.found.setdefault((*path, index), self.line)
            self.value((*path, index))
            index += 1
            self.blank(newlines=True)
            if self.text[self.at] == ",":
                self.at += 1

    def inline(self, path: Path) -> None:
        self.at += 1
        while True:
            self.blank(newlines=True)
            if self.text[self.at] == "}":
                self.at += 1
                return
            self.pair(path)
            self.blank(newlines=True)
            if self.text[self.at] == ",":
                self.at += 1

    def string(self) -> None:
        """Past one string: basic or literal, one line or multi-line."""
        quote = self.text[self.at]
        triple = self.text.startswith(quote * 3, self.at)
        self.at += 3 if triple else 1
        while True:
            char = self.text[self.at]
            if char == "\\" and quote == '"':
                self.skip(2)
            elif triple and self.text.startswith(quote * 3, self.at):
                self.at += 3
                while self.at < len(self.text) and self.text[self.at] == quote:
                    self.at += 1  # up to two quotes of the content end a multi-line string
                return
            elif not triple and char == quote:
                self.at += 1
                return
            else:
                self.skip(1)

    def skip(self, count: int) -> None:
        self.line += self.text.count("\n", self.at, self.at + count)
        self.at += count

    def blank(self, newlines: bool = False) -> None:
        """Past spaces and a comment; with `newlines`, past line ends and blank lines too."""
        while self.at < len(self.text):
            char = self.text[self.at]
            if char in " \t\r":
                self.at += 1
            elif char == "#":
                end = self.text.find("\n", self.at)
                self.at = len(self.text) if end < 0 else end
            elif char == "\n" and newlines:
                self.skip(1)
            else:
                return

    def expect(self, token: str) -> None:
        self.blank()
        if not self.text.startswith(token, self.at):
            raise ValueError(f"expected {token!r} at {self.at}")
        self.at += len(token)
