"""Where a value is in a TOML file (supervisor/tomllines.py), against a model: random documents
written out in every style TOML allows (table headers, arrays of tables, dotted keys, inline
tables, arrays over several lines, multi-line strings, comments), the writer noting the line of
each key and element as it writes it; the scanner must find the same lines."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.supervisor import tomllines

KEYS = st.sampled_from(["a", "port", "api.eu", "x y", "9", "k-1", "é"])
SCALARS = st.one_of(
    st.integers(-5, 70000), st.booleans(), st.sampled_from([1.5, -0.25]),
    st.text(st.sampled_from("ab ,]}#=[{'\"\\\n"), max_size=6))


def tables(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
    if depth == 0:
        return st.dictionaries(KEYS, leaf, max_size=3)
    inner = tables(depth - 1)
    return st.dictionaries(KEYS, st.one_of(leaf, inner, st.lists(inner, min_size=1, max_size=2)),
                           max_size=4)


class Writer:
    """Writes a document as TOML, choosing a style for each part, and notes each line."""

    def __init__(self, choose: st.DataObject) -> None:
        self.choose = choose
        self.out: list[str] = []
        self.lines: dict[tuple[Any, ...], int] = {}

    def pick(self, *styles: str) -> str:
        return self.choose.draw(st.sampled_from(styles))

    def emit(self, text: str, path: tuple[Any, ...] | None = None) -> None:
        if path is not None:
            self.lines[path] = len(self.out) + 1
        self.out.extend(text.split("\n"))
        if self.pick("plain", "plain", "blank", "comment") == "blank":
            self.out.append("")
        elif self.out[-1] and "'''" not in self.out[-1] and '"""' not in self.out[-1] \
                and self.pick("no", "comment") == "comment":
            self.out[-1] += "  # a comment, = [ { \""

    def table(self, table: dict[str, Any], path: tuple[Any, ...], keys: list[str]) -> None:
        """A table in a section of its own: pairs first, then its sub-sections."""
        later: list[tuple[str, Any, str]] = []
        for key, value in table.items():
            style = self.style(value)
            if style in ("header", "array-header"):
                later.append((key, value, style))
            elif style == "dotted":
                for sub, item in value.items():
                    self.emit(f"{name(key)}.{name(sub)} = {self.scalar(item, True)}",
                              (*path, key, sub))
            else:
                self.pair(key, value, path)
        for key, value, style in later:
            here = [*keys, name(key)]
            if style == "header":
                self.emit(f"[{'.'.join(here)}]", (*path, key))
                self.table(value, (*path, key), here)
            else:
                for i, item in enumerate(value):
                    self.emit(f"[[{'.'.join(here)}]]", (*path, key, i))
                    self.table(item, (*path, key, i), here)

    def style(self, value: Any) -> str:
        if isinstance(value, dict):
            if value and all(not isinstance(v, (dict, list)) for v in value.values()):
                return self.pick("header", "inline", "dotted")
            return self.pick("header", "inline")
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return self.pick("array-header", "inline")
        return "pair"

    def pair(self, key: str, value: Any, path: tuple[Any, ...]) -> None:
        if isinstance(value, list) and self.pick("one line", "lines") == "lines":
            start = len(self.out) + 1
            self.lines[(*path, key)] = start
            self.out.append(f"{name(key)} = [")
            for i, item in enumerate(value):
                self.lines[(*path, key, i)] = len(self.out) + 1
                self.out.extend(f"  {self.inline(item, (*path, key, i))},".split("\n"))
            self.out.append("]")
            return
        self.emit(f"{name(key)} = {self.inline(value, (*path, key), top=True)}", (*path, key))

    def inline(self, value: Any, path: tuple[Any, ...], top: bool = False) -> str:
        """`value` on one line (an inline table holds no line break); notes what it holds."""
        line = len(self.out) + 1
        if isinstance(value, dict):
            parts = []
            for key, item in value.items():
                self.lines[(*path, key)] = line
                parts.append(f"{name(key)} = {self.inline(item, (*path, key))}")
            return "{ " + ", ".join(parts) + " }" if parts else "{}"
        if isinstance(value, list):
            for i in range(len(value)):
                self.lines[(*path, i)] = line
            return "[" + ", ".join(self.inline(v, (*path, i)) for i, v in enumerate(value)) + "]"
        return self.scalar(value, top)

    def scalar(self, value: Any, multiline: bool) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return repr(value)
        if multiline and "\n" in value and "'''" not in value and not value.endswith("'") \
                and self.pick("basic", "multi") == "multi":
            return f"'''\n{value}'''"
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'


def name(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"'


@settings(max_examples=300, deadline=None)
@given(tables(2), st.data())
def test_the_scanner_finds_the_line_the_writer_wrote(document: dict[str, Any],
                                                     choose: st.DataObject) -> None:
    writer = Writer(choose)
    writer.table(document, (), [])
    text = "\n".join(writer.out) + "\n"
    assert tomllib.loads(text) == document, text  # the writer writes what it means to
    found = tomllines.lines(text)
    wrong = {path: (line, found.get(path)) for path, line in writer.lines.items()
             if found.get(path) != line}
    assert not wrong, f"{text}\n(written, found): {wrong}"


def test_error_paths_become_steps() -> None:
    assert tomllines.steps('zones[1].records."api.eu".pool.groups[0].addresses[2]') == (
        "zones", 1, "records", "api.eu", "pool", "groups", 0, "addresses", 2)
    assert tomllines.steps("zones[0].records.@.mx[0]") == ("zones", 0, "records", "@", "mx", 0)


def test_a_text_the_scanner_does_not_follow_gives_no_line() -> None:
    assert tomllines.lines("key = \n") == {}  # not TOML: no guess
    assert tomllines.locate("a = 1\n", "--port: 70000 is not a port") is None
