"""`healthdns-supervisor`: the container's single entry point."""

from __future__ import annotations

import sys

import msgspec

from healthdns.shared import keyfiles, logs, titles
from healthdns.shared.errors import BindError, ConfigError
from healthdns.supervisor import cli, ports
from healthdns.supervisor.arbiter import EXIT_FATAL, Supervisor


def main(argv: list[str] | None = None) -> int:
    args = cli.parser().parse_args(argv)
    try:
        cfg = cli.load(args)
        # Everything a start checks except binding, and before binding: a bad key is a
        # configuration error, never hidden behind a busy port or a signer that keeps dying.
        keyfiles.check_config(cfg)
    except (ConfigError, keyfiles.KeyFileError) as e:
        print(f"healthdns-supervisor: configuration error: {e}", file=sys.stderr)
        return EXIT_FATAL
    if args.check_config:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(cfg), indent=2).decode())
        sys.stdout.write("\n")
        return 0
    logs.setup("supervisor", cfg.server.log_level, cfg.server.log_format)
    titles.set_supervisor(cfg.server.instance)
    try:
        ports.check_free(cfg.server.endpoints())
    except BindError as e:
        print(f"healthdns-supervisor: {e}", file=sys.stderr)
        return EXIT_FATAL
    return Supervisor(cfg).run()


if __name__ == "__main__":
    sys.exit(main())
