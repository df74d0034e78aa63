"""The running healthdns's version: one number, kept in pyproject.toml only."""

from __future__ import annotations

import importlib.metadata


def version() -> str:
    """The installed distribution's version, or a plain word when run from a source tree."""
    try:
        return importlib.metadata.version("healthdns")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"
