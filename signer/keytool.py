"""`healthdns-key`: make a DNSSEC key, and print the DS records a parent zone needs.

    healthdns-key generate --zone example.com --out example.com.pem [--algorithm ALG] [--role csk]
        [--ttl SECONDS]
    healthdns-key ds --config healthdns.toml
    healthdns-key ds --zone example.com --key example.com.pem [--algorithm ALG]

It lives in the signer's package because it signs nothing but makes keys as the signer uses them;
reading and checking a key file is `shared.keyfiles`, as for the signer and the supervisor.
"""

from __future__ import annotations

import argparse
import sys

import dns.name
from dns.dnssectypes import Algorithm

from healthdns.shared import command, config, keyfiles, logs
from healthdns.shared.errors import ConfigError
from healthdns.signer import keys


def parser() -> argparse.ArgumentParser:
    p = command.standard(argparse.ArgumentParser(
        prog="healthdns-key", description=__doc__.split("\n")[0]),
        'README.md, "DNSSEC"; docs/configuration.md, "Key files"; docs/operations.md, '
        '"Rolling a DNSSEC key"')
    sub = p.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write a new private key, print its DNSKEY and DS")
    gen.add_argument("--zone", required=True, help="the zone the key signs")
    command.path(gen.add_argument("--out", required=True, help="PEM file to create (mode 600)"))
    gen.add_argument("--algorithm", default="ECDSAP256SHA256", choices=config.ALGORITHMS,
                     help="DNSSEC algorithm of the key (default: %(default)s); it must match "
                     "[zones.dnssec] algorithm")
    gen.add_argument("--role", default="csk", choices=keyfiles.ROLES,
                     help="csk: one key signs everything (default); ksk: signs the DNSKEY set, "
                     "has a DS at the parent; zsk: signs the rest, has no DS. Noted in the file")
    gen.add_argument("--ttl", type=_ttl, default=3600, metavar="SECONDS",
                     help="TTL shown on the printed DNSKEY and DS records (default: "
                     "%(default)s; use [zones.dnssec] dnskey_ttl)")
    ds = sub.add_parser("ds", help="print the DS records of configured or given keys")
    command.path(ds.add_argument("--config", help="healthdns TOML configuration: the DS of "
                                 "every KSK and CSK"))
    ds.add_argument("--zone", help="with --key: the zone")
    command.path(ds.add_argument("--key", help="with --zone: a PEM key file (a KSK or CSK)"))
    ds.add_argument("--algorithm", choices=config.ALGORITHMS,
                    help="with --key: the algorithm the key must be (default: the one its type "
                    "implies)")
    return p


def main(argv: list[str] | None = None) -> int:
    logs.capture_warnings()
    logs.setup_command("key", "healthdns-key")
    args = parser().parse_args(argv)
    try:
        if args.command == "generate":
            generate(args)
        elif args.config is not None:
            print_configured(args.config)
        elif args.zone and args.key:
            print_given(args.zone, args.key, args.algorithm)
        else:
            print("healthdns-key ds: give --config, or --zone and --key", file=sys.stderr)
            return 2
    except (ConfigError, keys.KeyFileError) as e:
        print(f"healthdns-key: {e}", file=sys.stderr)
        return 1
    return 0


def _ttl(text: str) -> int:
    try:
        ttl = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if not 0 <= ttl <= config.MAX_TTL:
        raise argparse.ArgumentTypeError(f"{ttl} is not a TTL (0 to {config.MAX_TTL} seconds, "
                                         "RFC 2181 8)")
    return ttl


def generate(args: argparse.Namespace) -> None:
    zone = config.absolute_name(args.zone, "--zone")
    algorithm = Algorithm[args.algorithm]
    private = keys.generate(algorithm)
    try:
        keys.write(private, args.out, args.role)
    except FileExistsError:
        raise keys.KeyFileError(f"--out: {args.out} exists; not overwriting a key") from None
    except OSError as e:
        raise keys.KeyFileError(f"--out: {args.out}: {e.strerror}") from e
    key = keys.load(args.out, args.role, algorithm, "--out")
    print(f"; wrote {args.out} ({args.role}, {algorithm.name}, key tag "
          f"{key.tag})")
    print_records(zone, key, args.ttl, dnskey=True)


def print_given(zone_text: str, file: str, algorithm_name: str | None) -> None:
    """The DS of one key file; its algorithm is the one its type implies unless given."""
    zone = config.absolute_name(zone_text, "--zone")
    wanted = None if algorithm_name is None else Algorithm[algorithm_name]
    found = keyfiles.load(file, wanted, "--key", allow_group_read=True)
    if found.role == "zsk":
        # The zone publishes a ZSK with flags 256; a DS made as for a KSK (257) would name a
        # key tag that matches no DNSKEY, and the parent must point at the KSK anyway.
        raise keys.KeyFileError(f"--key: {file} is a ZSK (DNSKEY flags 256); a DS is for the "
                                "KSK or CSK (flags 257): give the KSK's file")
    algorithm = keyfiles.algorithm_of(found.private)
    assert algorithm is not None  # keyfiles.load accepts only keys healthdns signs with
    if found.role is None:
        print(f"; {file} does not say its role (not made by healthdns-key): taken for a KSK or "
              "CSK (flags 257)")
    print_records(zone, keys.made(found.private, found.role or "ksk", algorithm), 3600,
                  dnskey=False)


def print_configured(path: str) -> None:
    cfg = config.load(path)
    printed = False
    for index, spec in enumerate(cfg.zones):
        if spec.dnssec is None:
            continue
        for key in keys.load_all(spec.dnssec, f"zones[{index}].dnssec"):
            if key.role not in ("csk", "ksk"):
                continue
            if key.published_only:  # a rollover's new (or old) key: its DS, said so
                print(f"; published only, not signing yet (or any more): {spec.origin}")
            for origin in (spec.origin, *spec.aliases):
                print_records(dns.name.from_text(origin), key, spec.dnssec.dnskey_ttl,
                              dnskey=False)
                printed = True
    if not printed:
        raise ConfigError("--config", f"{path}: no zone is signed (none has [zones.dnssec]), "
                          "so there is no DS to print")


def print_records(zone: dns.name.Name, key: keys.Key, ttl: int, dnskey: bool) -> None:
    if dnskey:
        print("; the DNSKEY record (healthdns publishes it itself)")
        print(f"{zone.to_text()} {ttl} IN DNSKEY {key.dnskey.to_text()}")
    if key.role in ("csk", "ksk"):
        print(f"; the DS record for the parent of {zone.to_text()} (give it to your registrar)")
        print(f"{zone.to_text()} {ttl} IN DS {keys.ds(zone, key.dnskey).to_text()}")


if __name__ == "__main__":
    sys.exit(main())
