"""Logging set-up shared by every process: one line per event on stderr, tagged by role.

Two formats (`server.log_format`, `--log-format`): `text` for a person reading a terminal or
`journalctl`, and `json`, one object a line, for a log pipeline (Loki, Elasticsearch,
CloudWatch) that should not have to parse free text. JSON lines carry the structured fields a
call passes with `extra=` (the prober's `target` and `reason`, for one) as keys of their own.

Messages carry strings that come from outside (an override's reason, a URL path, a check's
answer): in the text format every control character of a message is written escaped, so no
such string can end a line and forge the next one, nor send a terminal escape sequence. JSON
escapes them itself.
"""

from __future__ import annotations

import datetime
import logging
import logging.handlers
import sys
from typing import Any

import msgspec

# The attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def setup(role: str, level: str, fmt: str = "text", slot: int | None = None) -> None:
    """Log to stderr as `role` (a responder also gives its `slot`) at `level` in `fmt`."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(role, slot))
    else:
        name = role if slot is None else f"{role}{slot}"
        handler.setFormatter(TextFormatter(
            f"%(asctime)s {name}[%(process)d] %(levelname)s %(message)s"))
    _install(handler, level.upper())


def setup_command(role: str, prog: str, fmt: str = "text") -> None:
    """Log to stderr as a command does before (or without) a server's logging: in text, each
    line starts with the command's name (`healthdns-supervisor: configuration error: ...`);
    in JSON, a record as `setup` writes them."""
    handler = _Stderr()
    handler.setFormatter(JsonFormatter(role) if fmt == "json"
                         else logging.Formatter(f"{prog}: %(message)s"))
    _install(handler, "INFO")


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]  # generic in typeshed only
    """Writes to `sys.stderr` as it is when a record comes: a command's `main` may run inside
    another program (a test) that swaps it."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # StreamHandler's constructor sets it


def _install(handler: logging.Handler, level: str) -> None:
    """`handler` as the only one, and the records that waited for it (`capture_warnings`)."""
    waiting = [r for h in logging.getLogger().handlers if isinstance(h, _Waiting)
               for r in h.take()]
    # force: a spawned child may have logged (or a test configured logging) before its Start.
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for record in waiting:
        handler.handle(record)


def capture_warnings() -> None:
    """Python's warnings (a library's deprecation, say) become log records, one line each.

    Every line a healthdns process writes is then a record in the chosen format. Records
    logged before `setup` or `setup_command` wait for it (a child learns its format from its
    Start message); if neither comes, they reach stderr as plain lines at exit.
    """
    logging.captureWarnings(True)
    warned = logging.getLogger("py.warnings")
    if not any(isinstance(f, _OneLine) for f in warned.filters):
        warned.addFilter(_OneLine())
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(_Waiting())


class _OneLine(logging.Filter):
    """A warning in one line: `captureWarnings` logs the text of `warnings.formatwarning`, the
    message and then, on a line of its own, the source line that warned."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = record.getMessage().strip().split("\n", 1)[0], ()
        return True


class _Waiting(logging.handlers.MemoryHandler):
    """Holds records until the process knows its log format."""

    def __init__(self) -> None:
        super().__init__(capacity=1000, flushLevel=logging.CRITICAL + 1,
                         target=logging.StreamHandler(sys.stderr))

    def take(self) -> list[logging.LogRecord]:
        with self.lock:  # type: ignore[union-attr]  # a Handler's lock exists once created
            records, self.buffer = self.buffer, []
        return records


# C0 controls and DEL, C1 controls (CSI 0x9B starts a terminal sequence too), and the
# Unicode line and paragraph separators some log viewers break lines at.
_CONTROLS = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
_ESCAPES = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _CONTROLS} | {
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def escaped(text: str) -> str:
    """`text` with every control character written as its escape ("\\n", "\\x1b"): one
    line whatever it holds."""
    return text.translate(_ESCAPES)


class TextFormatter(logging.Formatter):
    """One line per record: the message with its control characters escaped. A traceback
    (`exc_info`) follows on lines of its own, as Python writes it."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escaped(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, role, pid, message, then the `extra=` fields."""

    def __init__(self, role: str, slot: int | None = None) -> None:
        super().__init__()
        self.role = role
        self.slot = slot
        self._encoder = msgspec.json.Encoder(enc_hook=str)  # an odd extra value: its str()

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "role": self.role,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if self.slot is not None:
            fields["slot"] = self.slot
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in fields:
                fields[key] = value
        if record.exc_info:
            fields["traceback"] = self.formatException(record.exc_info)
        return self._encoder.encode(fields).decode()


def _utc(created: float) -> str:
    """RFC 3339 in UTC with milliseconds: sorts as text, parses everywhere."""
    moment = datetime.datetime.fromtimestamp(created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
