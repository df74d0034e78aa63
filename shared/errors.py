"""The exception root of healthdns: only ``main`` functions turn these into exit codes."""

from __future__ import annotations


class HealthdnsError(Exception):
    """healthdns failed."""


class ConfigError(HealthdnsError):
    """The configuration is invalid.

    ``path`` names the field (``zones[0].records.www.check.port``) and the message says what is
    wrong with its value, so ``str(error)`` reads ``path: message``.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class BindError(HealthdnsError):
    """A listening socket could not be bound."""
