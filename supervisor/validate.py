"""The configuration, read and checked in a process of its own that exits once it is done.

Checking a configuration loads every key it names, with cryptography and dnspython's DNSSEC
modules: a few MiB that the supervisor would keep for good, since Python never unloads a
module. So at start and at every reload the supervisor runs this module with its own command
line (`elsewhere`) and takes back the configuration, encoded, or the problem, word for word as
the same check in its own process says it (`checked`). `--check-config` checks in-process: it
exits at once anyway.

    python -m healthdns.supervisor.validate [the supervisor's flags]

Warnings go to stderr, which the check process shares with the supervisor.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys

import msgspec

from healthdns.shared import config, files, privilege
from healthdns.shared.config import Config
from healthdns.shared.errors import ConfigError
from healthdns.supervisor import cli, tomllines


class Outcome(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the check process writes to stdout: the configuration, or the problem."""

    config: bytes = b""
    problem: str = ""


def checked(args: argparse.Namespace) -> Config:
    """The configuration, checked as at start: everything except binding. A bad key is a
    configuration error here, never hidden behind a busy port or a signer that keeps dying.

    A problem is a ConfigError whose text is what the operator reads (in the flags' terms).
    """
    from healthdns.shared import keyfiles  # cryptography: never in the running supervisor

    try:
        cfg = cli.load(args)
        account = privilege.resolve(cfg.server.user, cfg.server.group)
        owner = privilege.resolve_signer(account, cfg.server.signer_user) or account
        keyfiles.check_config(cfg, owner.uid if owner is not None else None)
    except ConfigError as e:
        raise ConfigError("", located(str(cli.flag_terms(e, args)), args.config)) from None
    except keyfiles.KeyFileError as e:
        raise ConfigError("", located(str(e), args.config)) from None
    return cfg


def located(problem: str, path: str | None) -> str:
    """`problem` ("zones[0].ttl: ...") ending with the line of the file `path` it is about,
    when the file says where: "... (line 7 of healthdns.toml)"."""
    if path is None:
        return problem
    try:
        text = files.read(path, config.MAX_CONFIG_FILE).data.decode()
    except (files.FileProblem, UnicodeDecodeError):
        return problem
    line = tomllines.locate(text, problem)
    return problem if line is None else f"{problem} (line {line} of {path})"


def elsewhere(argv: list[str]) -> Config:
    """`checked`, in a process of its own, with the supervisor's command line `argv`."""
    # Run as the user, a reload reads root's key files as the signer does: with the
    # capabilities the supervisor kept for its children (see shared/privilege.py).
    privilege.hand_on()
    # Blocked, as in every child: a SIGHUP sent to the process group (the reload that runs
    # this check, say) must not kill the check. It exits with them still pending.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP, signal.SIGINT})
    try:
        done = subprocess.run([sys.executable, "-m", __name__, *argv],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, check=False)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    try:
        outcome = msgspec.msgpack.decode(done.stdout, type=Outcome)
    except msgspec.DecodeError:
        raise ConfigError("", f"the configuration check ({sys.executable} -m {__name__}) "
                          f"failed with exit code {done.returncode}") from None
    if outcome.problem:
        raise ConfigError("", outcome.problem)
    return config.decode(outcome.config)


def main(argv: list[str]) -> int:
    args = cli.parser().parse_args(argv)
    cli.log_before_start(args)  # its stderr is the supervisor's
    try:
        outcome = Outcome(config=config.encode(checked(args)))
    except ConfigError as e:
        outcome = Outcome(problem=str(e))
    sys.stdout.buffer.write(msgspec.msgpack.encode(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
