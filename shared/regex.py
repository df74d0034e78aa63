"""The regular expressions of `body_regex`, matched in linear time (RE2).

A backend controls the body a pattern is matched against. With a backtracking engine (Python's
`re`), `^(a+)+$` on a hostile body took seconds, and the prober runs every check on one event
loop: all of them stalled. RE2 matches in time linear in the body and has no backreferences or
lookaround, so a pattern that needs them is refused when the configuration is read.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Protocol

from healthdns.shared import lazy

if TYPE_CHECKING:
    import re2  # type: ignore[import-untyped]
else:  # the prober matches, the supervisor checks patterns; a responder only imports us
    re2 = lazy.module("re2")


class Pattern(Protocol):
    def search(self, text: str) -> object | None: ...


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the text says why."""


@functools.lru_cache(maxsize=1024)
def compile(pattern: str) -> Pattern:
    """The compiled `pattern`; the prober compiles each once, the config check first."""
    options = re2.Options()
    options.log_errors = False  # the error comes back in the exception; stderr stays quiet
    try:
        compiled: Pattern = re2.compile(pattern, options)
    except re2.error as e:
        reason = e.args[0].decode(errors="replace") if e.args else "not valid"
        raise PatternError(f"{reason} (RE2 syntax: no backreferences or lookaround)") from None
    return compiled
