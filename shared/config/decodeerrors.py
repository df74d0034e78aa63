"""msgspec's decode errors, said in the words of the configuration file.

msgspec speaks of types ("Expected `int | null`, got `str`"); an operator wrote a TOML file. So
each error is told again from what the file holds at that place and what the field means:
"'60' must be a whole number of seconds (write 60, without quotes)", "unknown key; did you
mean 'port'?". An error of a shape this module does not know keeps msgspec's words.
"""

from __future__ import annotations

import datetime
import difflib
import json
import re
from typing import Any

import msgspec

# Fields that hold seconds, whole (TTLs, SOA timers, signature times) or not (check timing).
SECONDS = frozenset({
    "ttl", "ns_ttl", "dnskey_ttl", "refresh", "retry", "expire", "minimum", "validity",
    "inception_offset", "window", "rotation", "interval", "timeout", "hold_down", "hung_after",
    "warm_start_max_age", "tcp_idle_timeout", "notify_timeout", "idle_timeout"})
PORTS = frozenset({"port"})
HIDDEN = frozenset({"variant"})  # set by normalisation: never suggested

_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_MISSING = object()
Step = str | int


def explain(error: msgspec.ValidationError, kind: type, document: Any) -> tuple[list[Step], str]:
    """The path steps (keys and list indexes, from `kind`'s root) and the message, for an error
    of `msgspec.convert(document, kind)`."""
    text, _, where = str(error).partition(" - at `$")
    steps = _steps(where.rstrip("`"), document)
    node = _type_at(msgspec.inspect.type_info(kind), steps)
    given = _value_at(document, steps)
    found = re.fullmatch(r"Object contains unknown field `(.+)`", text)
    if found:
        return [*steps, found[1]], unknown_key(found[1], _fields(node))
    found = re.fullmatch(r"Object missing required field `(.+)`", text)
    if found:
        return [*steps, found[1]], "is required"
    found = re.fullmatch(r"Invalid enum value (.+)", text)
    if found and isinstance(node, msgspec.inspect.LiteralType):
        return steps, not_one_of(given, tuple(str(v) for v in node.values))
    if text.startswith("Expected `") and given is not _MISSING:
        field = next((s for s in reversed(steps) if isinstance(s, str)), "")
        message = _wrong_type(given, _plain(node), field)
        if _tables(node) and isinstance(given, dict) and len(steps) == 1:
            message += f" (write [[{field}]], with two brackets, before each one)"
        return steps, message
    return steps, text[0].lower() + text[1:] if text else text


def unknown_key(key: str, known: list[str]) -> str:
    """The message for an unknown key, with the known key it most likely means."""
    candidates = [k for k in known if k not in HIDDEN]
    close = difflib.get_close_matches(key.lower(), candidates, n=1) or \
        [k for k in candidates if len(key) >= 3 and k.startswith(key.lower())][:1]
    return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"


def not_one_of(value: Any, choices: tuple[str, ...]) -> str:
    """The message for a value that is not one of `choices`."""
    listed = ", ".join(map(repr, choices))
    close = difflib.get_close_matches(str(value).lower(), choices, n=1) \
        if isinstance(value, str) else []
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{shown(value)} is not one of {listed}{hint}"


def shown(value: Any) -> str:
    """A value from the file as the messages show it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def _steps(where: str, document: Any) -> list[Step]:
    """`.zones[0].records[...]` as steps; `[...]`, a key msgspec does not name, is found in
    the document (the first value of that table that is not a table, or its only key)."""
    steps: list[Step] = []
    for name, index in _STEP.findall(where):
        if name:
            steps.append(name)
        elif index.isdigit():
            steps.append(int(index))
        else:
            table = _value_at(document, steps)
            odd = [k for k, v in table.items() if not isinstance(v, dict)] \
                if isinstance(table, dict) else []
            if not odd and isinstance(table, dict) and len(table) == 1:
                odd = list(table)
            steps.append(odd[0] if odd else "...")
    return steps


def _value_at(document: Any, steps: list[Step]) -> Any:
    node = document
    for step in steps:
        try:
            node = node[step]
        except (IndexError, KeyError, TypeError):  # not there, or not a list or table
            return _MISSING
    return node


def _type_at(node: Any, steps: list[Step]) -> Any:
    for step in steps:
        node = _unwrap(node)
        if isinstance(node, msgspec.inspect.StructType):
            node = next((f.type for f in node.fields if f.encode_name == step), None)
        elif isinstance(node, (msgspec.inspect.ListType, msgspec.inspect.VarTupleType)):
            node = node.item_type
        elif isinstance(node, msgspec.inspect.DictType):
            node = node.value_type
        else:
            return None
    return _unwrap(node)


def _unwrap(node: Any) -> Any:
    """A union with null (an optional field) as the type it holds when given."""
    if isinstance(node, msgspec.inspect.UnionType):
        kept = [t for t in node.types if not isinstance(t, msgspec.inspect.NoneType)]
        return kept[0] if len(kept) == 1 else node
    return node


def _tables(node: Any) -> bool:
    """Whether `node` is a list of tables (`[[zones]]`)."""
    return isinstance(node, (msgspec.inspect.ListType, msgspec.inspect.VarTupleType)) and \
        isinstance(_unwrap(node.item_type), msgspec.inspect.StructType)


def _fields(node: Any) -> list[str]:
    if isinstance(node, msgspec.inspect.StructType):
        return [f.encode_name for f in node.fields]
    return []


def _plain(node: Any) -> str:
    """What a value of type `node` is, in words."""
    match node:
        case msgspec.inspect.IntType():
            return "int"
        case msgspec.inspect.FloatType():
            return "float"
        case msgspec.inspect.StrType() | msgspec.inspect.LiteralType():
            return "str"
        case msgspec.inspect.BoolType():
            return "bool"
        case msgspec.inspect.ListType() | msgspec.inspect.VarTupleType():
            return "list"
        case msgspec.inspect.StructType() | msgspec.inspect.DictType():
            return "table"
        case msgspec.inspect.UnionType(types=types):  # a number first: a TTL, or its range
            return next((p for t in types if (p := _plain(t)) in ("int", "float")), "")
    return ""


_WORDS = {"int": "a whole number", "float": "a number", "str": "a string (text in quotes)",
          "bool": "true or false", "list": "a list", "table": "a table"}


def _wrong_type(value: Any, wanted: str, field: str) -> str:
    words = _WORDS.get(wanted, "of another type")
    if wanted == "int" and field in PORTS:
        words = "a port number, 1-65535"
    elif wanted in ("int", "float") and field in SECONDS:
        words += " of seconds"
    if isinstance(value, (list, dict)):
        return f"must be {words}, not {shown(value)}"
    return f"{shown(value)} must be {words}{_hint(value, wanted)}"


def _hint(value: Any, wanted: str) -> str:
    """How to write `value` as the field wants it, when that is plain."""
    if wanted in ("int", "float") and isinstance(value, str):
        try:
            number = float(value) if wanted == "float" else int(value)
        except ValueError:
            return ""
        return f" (write {number:g}, without quotes)" if isinstance(number, float) \
            else f" (write {number}, without quotes)"
    if wanted == "int" and isinstance(value, float) and value.is_integer():
        return f" (write {int(value)})"
    if wanted == "bool" and isinstance(value, str) and value.lower() in ("true", "false"):
        return f" (write {value.lower()}, without quotes)"
    if wanted == "list" and not isinstance(value, (list, dict)):
        return f": write [{json.dumps(value) if isinstance(value, str) else shown(value)}]"
    return ""
