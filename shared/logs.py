"""Logging set-up shared by every process: one line per event on stderr, tagged by role."""

from __future__ import annotations

import logging
import sys


def setup(role: str, level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {role}[%(process)d] %(levelname)s %(message)s",
        force=True,
    )
