"""DNS names in the configuration: checked, with what is wrong said in words."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from healthdns.shared import lazy
from healthdns.shared.errors import ConfigError

if TYPE_CHECKING:
    import dns.exception
    import dns.name
else:  # only validation needs them, and a responder only decodes (see shared/lazy.py)
    for _module in ("exception", "name"):
        lazy.module(f"dns.{_module}")
    dns = lazy.module("dns")


LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def dns_reason(error: Exception) -> str:
    """A dnspython parse error in words: its messages speak of tokens and identifiers."""
    if isinstance(error, dns.exception.UnexpectedEnd):
        return "it ends too early (a field is missing, or a quote is not closed)"
    if isinstance(error, dns.name.EmptyLabel):
        return "a name has an empty label (two dots in a row)"
    if isinstance(error, dns.name.LabelTooLong):
        return "a name has a label longer than 63 characters"
    if isinstance(error, dns.name.NameTooLong):
        return "a name is longer than 255 octets"
    text = str(error).rstrip(".")
    extra = re.fullmatch(r'expected EOL or EOF, got \d+ "(.*)"', text)
    if extra:
        return f"unexpected {extra[1]!r} after the last field"
    if text in ("expecting an identifier", "expecting an integer", "expecting a string"):
        return "a field is missing or has the wrong kind of value"
    if text == "string too long":
        return "a string is longer than 255 characters (split it into several quoted strings)"
    if not text or text == "Text input is malformed":
        return "malformed"
    return text[0].lower() + text[1:]


def absolute_name(text: str, path: str) -> dns.name.Name:
    """A name given as absolute, with or without the trailing dot."""
    absolute = text if text.endswith(".") else text + "."
    return parse_name(text, path, None, absolute)


def parse_name(text: str, path: str, origin: dns.name.Name | None,
          parse: str | None = None) -> dns.name.Name:
    if not isinstance(text, str) or not text or text.strip() != text:
        raise ConfigError(path, f"{text!r} is not a valid DNS name")
    if any(label == "*" for label in text.split(".")):
        raise ConfigError(path, f"{text!r}: wildcard names are not supported")
    problem = name_problem(parse or text)
    if problem:
        raise ConfigError(path, f"{text!r} is not a valid DNS name: {problem}")
    try:
        name = dns.name.from_text(parse or text, origin=origin)
    except dns.name.NameTooLong:
        whole = text if origin is None else f"{text}.{origin.to_text()}"
        raise ConfigError(path, f"{text!r} is not a valid DNS name: {whole} is longer than "
                          "255 octets") from None
    except dns.exception.DNSException as e:
        raise ConfigError(path, f"{text!r} is not a valid DNS name: {dns_reason(e)}") from e
    return name.canonicalize()


def name_problem(text: str) -> str:
    """What is wrong with a host or zone name, in words ("" if nothing); dnspython's own
    messages name labels as bytes or not at all, so every rule is checked here first."""
    if text == ".":
        return ""  # the root: a name, refused where it is not wanted (a zone's origin)
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    for label in labels:
        if not label:
            return "it has an empty label (two dots in a row, or a leading dot)"
        if len(label) > 63:
            return f"label {label!r} is {len(label)} characters long, more than 63"
        if not LABEL.match(label.lower()):
            return (f"label {label!r} may only hold letters, digits, '-' and '_', and may "
                    "not start or end with '-'")
    if sum(len(label) + 1 for label in labels) + 1 > 255:
        return "it is longer than 255 octets"
    return ""
