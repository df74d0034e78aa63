"""`healthdns-key`: make a DNSSEC key, and print the DS records a parent zone needs.

    healthdns-key generate --zone example.com --out example.com.pem [--algorithm ALG] [--role csk]
    healthdns-key ds --config healthdns.toml
    healthdns-key ds --zone example.com --key example.com.pem [--algorithm ALG]

It lives in the signer's package because it is the only other code that reads private keys.
"""

from __future__ import annotations

import argparse
import sys

import dns.dnssec
import dns.name

from healthdns.shared import config
from healthdns.shared.errors import ConfigError
from healthdns.signer import keys


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="healthdns-key", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write a new private key, print its DNSKEY and DS")
    gen.add_argument("--zone", required=True, help="the zone the key signs")
    gen.add_argument("--out", required=True, help="PEM file to create (mode 600)")
    gen.add_argument("--algorithm", default="ECDSAP256SHA256", choices=config.ALGORITHMS)
    gen.add_argument("--role", default="csk", choices=("csk", "ksk", "zsk"))
    gen.add_argument("--ttl", type=int, default=3600, help="TTL shown on the records")
    ds = sub.add_parser("ds", help="print the DS records of configured or given keys")
    ds.add_argument("--config", help="healthdns TOML configuration")
    ds.add_argument("--zone", help="with --key: the zone")
    ds.add_argument("--key", help="with --zone: a PEM key file")
    ds.add_argument("--algorithm", default="ECDSAP256SHA256", choices=config.ALGORITHMS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "generate":
            generate(args)
        elif args.config is not None:
            print_configured(args.config)
        elif args.zone and args.key:
            zone = config.absolute_name(args.zone, "--zone")
            key = keys.load(args.key, "ksk", keys.Algorithm[args.algorithm], "--key")
            print_records(zone, key, 3600, dnskey=False)
        else:
            print("healthdns-key ds: give --config, or --zone and --key", file=sys.stderr)
            return 2
    except (ConfigError, keys.KeyFileError) as e:
        print(f"healthdns-key: {e}", file=sys.stderr)
        return 1
    return 0


def generate(args: argparse.Namespace) -> None:
    zone = config.absolute_name(args.zone, "--zone")
    algorithm = keys.Algorithm[args.algorithm]
    private = keys.generate(algorithm)
    try:
        keys.write(private, args.out)
    except FileExistsError:
        raise keys.KeyFileError(f"--out: {args.out} exists; not overwriting a key") from None
    except OSError as e:
        raise keys.KeyFileError(f"--out: {args.out}: {e.strerror}") from e
    key = keys.load(args.out, args.role, algorithm, "--out")
    print(f"; wrote {args.out} ({args.role}, {algorithm.name}, key tag "
          f"{dns.dnssec.key_id(key.dnskey)})")
    print_records(zone, key, args.ttl, dnskey=True)


def print_configured(path: str) -> None:
    cfg = config.load(path)
    for index, spec in enumerate(cfg.zones):
        if spec.dnssec is None:
            continue
        for key in keys.load_all(spec.dnssec, f"zones[{index}].dnssec"):
            if not key.signs_keys:
                continue
            for origin in (spec.origin, *spec.aliases):
                print_records(dns.name.from_text(origin), key, spec.dnssec.dnskey_ttl,
                              dnskey=False)


def print_records(zone: dns.name.Name, key: keys.Key, ttl: int, dnskey: bool) -> None:
    if dnskey:
        print("; the DNSKEY record (healthdns publishes it itself)")
        print(f"{zone.to_text()} {ttl} IN DNSKEY {key.dnskey.to_text()}")
    if key.signs_keys:
        print(f"; the DS record for the parent of {zone.to_text()} (give it to your registrar)")
        print(f"{zone.to_text()} {ttl} IN DS {keys.ds(zone, key.dnskey).to_text()}")


if __name__ == "__main__":
    sys.exit(main())
