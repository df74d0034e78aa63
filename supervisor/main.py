"""`healthdns-supervisor`: the container's single entry point."""

from __future__ import annotations

import argparse
import importlib.machinery
import logging
import os
import platform
import stat
import sys

from healthdns.shared import heap, logs, privilege, titles
from healthdns.shared.config import Config
from healthdns.shared.errors import BindError, ConfigError
from healthdns.shared.version import version
from healthdns.supervisor import cli, installation, ports, shown, state, validate
from healthdns.supervisor.arbiter import EXIT_FATAL, Supervisor

log = logging.getLogger("healthdns.supervisor")


def main(argv: list[str] | None = None) -> int:
    logs.capture_warnings()  # first: every line on stderr is a log record
    heap.return_large_blocks()  # it keeps the latest snapshot, and relays every one
    argv = sys.argv[1:] if argv is None else argv
    args = cli.parser().parse_args(argv)
    cli.log_before_start(args)
    try:
        # Checked in a process of its own, which takes the key checks' imports with it.
        cfg = validate.checked(args) if args.check_config else validate.elsewhere(argv)
        account = privilege.resolve(cfg.server.user, cfg.server.group)
        signer = privilege.resolve_signer(account, cfg.server.signer_user)
        installation.check_readable(account)  # every process will import Python as the user
        installation.check_readable(signer)
    except ConfigError as e:
        log.error("configuration error: %s", e)
        return EXIT_FATAL
    for warning in _keys_open_to(account, cfg) if account is not None else ():
        log.warning("configuration warning: %s", warning)
    if args.check_config:
        sys.stdout.write(shown.text(cfg))  # never a secret: see supervisor/shown.py
        return 0
    logs.setup("supervisor", cfg.server.log_level, cfg.server.log_format)
    log.info("healthdns %s (Python %s) starting: %s", version(), platform.python_version(),
             _source(args))
    titles.set_supervisor(cfg.server.instance)
    try:
        if not args.replace:  # --replace: the busy ports are the old server's, on purpose
            ports.check_free(cfg.server.endpoints())
        seal = state.seal_key(cfg.control.state_file)  # root's own key, when started as root
        # After every check that needs root, before anything else runs: see shared/privilege.py.
        privilege.become(account, signer)
    except (BindError, privilege.PrivilegeError) as e:
        log.error("%s", e)
        return EXIT_FATAL
    if args.replace:  # the old server's responders hand their ports over to ours
        ports.warn_tcp_handover()
    _children_skip_main()
    # A reload reads the same files, with the same flags, and checks them all again.
    return Supervisor(cfg, loader=lambda: validate.elsewhere(argv), seal=seal).run()


def _source(args: argparse.Namespace) -> str:
    if args.config is not None:
        return os.path.abspath(str(args.config))
    return "the built-in demo" if args.demo else f"a-healthy-dns flags for {args.hosted_zone}"


def _keys_open_to(account: privilege.Account, cfg: Config) -> list[str]:
    """Key files the user every process runs as may read: the responders could too."""
    found = []
    for index, zone in enumerate(cfg.zones):
        for role, file in zone.dnssec.key_files() if zone.dnssec is not None else ():
            status = os.stat(file)
            if status.st_uid == account.uid or (status.st_gid == account.gid
                                                and status.st_mode & stat.S_IRGRP):
                found.append(f"zones[{index}].dnssec.{role}: {file} can be read by "
                             f"{account.user}, the user every process runs as, so also by the "
                             "responders; only the signer needs it: chown root and chmod 600")
    return found


def _children_skip_main() -> None:
    """Keep spawned children from running this process's `__main__` again.

    The spawn start method re-runs the parent's main module in every child (as `__mp_main__`),
    so that functions defined there can be unpickled. A child needs nothing from it (its entry
    point is `healthdns.shared.child.enter`), and running it would import the whole supervisor
    into every child: the command line, the key checks, dnspython and cryptography, about
    10 MB a process. A main module whose spec is named `__main__` is the one it leaves alone.
    """
    sys.modules["__main__"].__spec__ = importlib.machinery.ModuleSpec("__main__", None)


if __name__ == "__main__":
    sys.exit(main())
