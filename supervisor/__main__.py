"""`python -m healthdns.supervisor`: the same as `healthdns-supervisor`."""

from __future__ import annotations

import sys

from healthdns.supervisor.main import main

if __name__ == "__main__":
    sys.exit(main())
