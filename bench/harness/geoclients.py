"""Clients in many places: a sample of client prefixes, queries that carry them in an EDNS
Client Subnet option (RFC 7871), and asking thousands of them over one socket.

A `Client` is a prefix sent as ECS (``source`` > 0), a source prefix of 0 (the option says
"do not use my address", so the query's source address decides), or no option at all (the
source address decides); the last two are asked from a loopback source address, so clients in
different places are addresses across 127.0.0.0/8. `ask_udp` keeps a window of queries in flight
on one socket and matches replies by ID; `ask_tcp` pipelines them on one connection. Replies are
read here (`parse`) with only what the comparison needs: rcode, addresses, ECS scope.

Stdlib only, as the rest of the library; the wire format is RFC 1035's and RFC 6891's.
"""

from __future__ import annotations

import ipaddress
import random
import select
import socket
import struct
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from harness import BenchError

NO_ECS = -1  # `Client.source` of a query without the option
A, AAAA, OPT = 1, 28, 41
ECS_CODE = 8
_HEADER = struct.Struct(">HHHHHH")
_FIXED = struct.Struct(">HHIH")  # type, class, TTL, RDLENGTH


class Client(NamedTuple):
    """A client: its prefix as sent in ECS; or, with `source` 0 or `NO_ECS`, the loopback
    source address the query comes from (`address`, always IPv4; `version` is then the FAMILY
    of a source-0 option: 4 or 6)."""

    version: int
    address: int
    source: int

    def text(self) -> str:
        if not self.ecs:
            source = ipaddress.IPv4Address(self.address)
            return f"from {source} " + ("without ECS" if self.source < 0 else
                                        f"with ECS {'0.0.0.0' if self.version == 4 else '::'}/0")
        ip = ipaddress.IPv4Address(self.address) if self.version == 4 \
            else ipaddress.IPv6Address(self.address)
        return f"{ip}/{self.source}"

    @property
    def ecs(self) -> bool:
        return self.source > 0


class Reply(NamedTuple):
    rcode: int
    addresses: tuple[str, ...]  # A and AAAA of the answer section, sorted
    scope: int | None  # None: no ECS option in the reply


def loopback(rng: random.Random) -> int:
    """A loopback address to send from, away from 127.0.0.0/24 (servers and backends)."""
    return int(ipaddress.IPv4Address("127.1.0.0")) + rng.randrange(0xFEFFFF)


def sample(rng: random.Random, networks: Sequence[str], count: int,
           no_ecs: float = 0.05, zero: float = 0.05) -> list[Client]:
    """`count` clients: mostly ECS prefixes inside `networks` (the database's) and around
    them, IPv4 and IPv6, some IPv4 ones written in IPv6's IPv4-like spaces; a share `zero`
    with source prefix 0 and a share `no_ecs` without the option, both from loopback sources."""
    parsed = [ipaddress.ip_network(n) for n in networks]
    v4 = [n for n in parsed if n.version == 4]
    out: list[Client] = []
    for _ in range(count):
        draw = rng.random()
        if draw < no_ecs:
            out.append(Client(4, loopback(rng), NO_ECS))
        elif draw < no_ecs + zero:
            out.append(Client(rng.choice([4, 6]), loopback(rng), 0))
        else:
            out.append(_ecs_client(rng, parsed, v4))
    return out


def _ecs_client(rng: random.Random, parsed: Sequence[ipaddress.IPv4Network |
                ipaddress.IPv6Network], v4: Sequence[ipaddress.IPv4Network]) -> Client:
    kind = rng.random()
    if kind < 0.7:
        network = rng.choice(parsed)
        address = int(network.network_address) + rng.randrange(network.num_addresses)
        version = network.version
    elif kind < 0.85 or not v4:
        version = rng.choice([4, 6])
        address = rng.getrandbits(32 if version == 4 else 128)
    else:
        inner = int(rng.choice(v4).network_address) + rng.randrange(256)
        version, address = 6, rng.choice([0xFFFF << 32 | inner, 0x2002 << 112 | inner << 80,
                                           0x0064FF9B << 96 | inner])
    bits = 32 if version == 4 else 128
    source = rng.choice([8, 16, 20, 24, 24, 24, 32]) if version == 4 else \
        rng.choice([32, 48, 56, 56, 64, 112, 128])
    return Client(version, address >> (bits - source) << (bits - source), source)


def ecs_option(client: Client) -> bytes:
    """The option (code, length, data) carrying `client`; b"" for a query without one."""
    if client.source < 0:
        return b""
    family = 1 if client.version == 4 else 2
    bits = 32 if family == 1 else 128
    octets = (client.source + 7) // 8
    address = (client.address >> (bits - 8 * octets)).to_bytes(octets, "big") if octets else b""
    data = struct.pack(">HBB", family, client.source, 0) + address
    return struct.pack(">HH", ECS_CODE, len(data)) + data


def query(qid: int, name: str, qtype: int = A, client: Client | None = None,
          edns: bool = True, recursion: bool = False) -> bytes:
    """A query with EDNS (4096) and `client`'s ECS option when it has one; RD only with
    `recursion` (for a resolver: the servers here are authoritative)."""
    labels = b"".join(bytes((len(p),)) + p.encode() for p in name.rstrip(".").split("."))
    options = ecs_option(client) if client is not None else b""
    opt = b"\0" + struct.pack(">HHIH", OPT, 4096, 0, len(options)) + options if edns else b""
    return _HEADER.pack(qid & 0xFFFF, 0x0100 if recursion else 0, 1, 0, 0, 1 if edns else 0) \
        + labels + b"\0" \
        + struct.pack(">HH", qtype, 1) + opt


def _skip_name(wire: bytes, at: int) -> int:
    while True:
        length = wire[at]
        if length >= 0xC0:
            return at + 2
        if length == 0:
            return at + 1
        at += length + 1


def parse(wire: bytes) -> tuple[int, Reply]:
    """(ID, reply) of a response: its rcode, the answer's addresses, the ECS scope."""
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(wire)
    at = 12
    for _ in range(qdcount):
        at = _skip_name(wire, at) + 4
    addresses: list[str] = []
    scope: int | None = None
    for index in range(ancount + nscount + arcount):
        at = _skip_name(wire, at)
        rtype, _, _, length = _FIXED.unpack_from(wire, at)
        at += _FIXED.size
        data = wire[at:at + length]
        at += length
        if index < ancount and rtype in (A, AAAA):
            addresses.append(str(ipaddress.ip_address(data)))
        elif rtype == OPT:
            scope = _scope(data)
    return qid, Reply(flags & 0xF, tuple(sorted(addresses)), scope)


def _scope(options: bytes) -> int | None:
    at = 0
    while at + 4 <= len(options):
        code, length = struct.unpack_from(">HH", options, at)
        if code == ECS_CODE and length >= 4:
            return options[at + 7]
        at += 4 + length
    return None


def ask_udp(port: int, queries: Sequence[bytes], source: str = "127.0.0.1",
            host: str = "127.0.0.1", window: int = 64, timeout: float = 2.0,
            tries: int = 4) -> list[Reply]:
    """Replies to `queries` (IDs unique among any `window` in a row), sent from `source` over
    one UDP socket with at most `window` in flight; lost ones are asked again."""
    replies: list[Reply | None] = [None] * len(queries)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.connect((host, port))
        for _ in range(tries):
            missing = [i for i, r in enumerate(replies) if r is None]
            if not missing:
                break
            for start in range(0, len(missing), window):
                _udp_window(sock, queries, missing[start:start + window], replies, timeout)
    lost = [i for i, r in enumerate(replies) if r is None]
    if lost:
        raise BenchError(f"{len(lost)} of {len(queries)} queries to port {port} from {source} "
                         f"got no reply in {tries} tries")
    return replies  # type: ignore[return-value]


def _udp_window(sock: socket.socket, queries: Sequence[bytes], indices: Sequence[int],
                replies: list[Reply | None], timeout: float) -> None:
    waiting = {int.from_bytes(queries[i][:2], "big"): i for i in indices}
    for i in indices:
        sock.send(queries[i])
    deadline = time.monotonic() + timeout
    while waiting and (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        qid, reply = parse(sock.recv(65535))
        index = waiting.pop(qid, None)
        if index is not None:
            replies[index] = reply


def ask_tcp(port: int, queries: Sequence[bytes], source: str = "127.0.0.1",
            host: str = "127.0.0.1", window: int = 64, timeout: float = 5.0) -> list[Reply]:
    """Replies to `queries` pipelined on one TCP connection from `source`, `window` written at
    a time and matched by ID (answers may come in any order, RFC 7766 section 7)."""
    replies: list[Reply | None] = [None] * len(queries)
    with socket.create_connection((host, port), timeout, (source, 0)) as sock:
        for start in range(0, len(queries), window):
            chunk = range(start, min(start + window, len(queries)))
            waiting = {int.from_bytes(queries[i][:2], "big"): i for i in chunk}
            sock.sendall(b"".join(len(queries[i]).to_bytes(2, "big") + queries[i]
                                  for i in chunk))
            while waiting:
                qid, reply = parse(_read_message(sock))
                index = waiting.pop(qid, None)
                if index is not None:
                    replies[index] = reply
    return replies  # type: ignore[return-value]


def _read_message(sock: socket.socket) -> bytes:
    length = int.from_bytes(_read_exactly(sock, 2), "big")
    return _read_exactly(sock, length)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise BenchError("the server closed the TCP connection mid-stream")
        data += chunk
    return data


def ask(port: int, name: str, clients: Iterable[Client], qtype: int = A, tcp: bool = False,
        host: str = "127.0.0.1") -> list[Reply]:
    """One reply per client, in order: ECS clients over one socket; clients that send no
    address of their own from their loopback source address, one socket each."""
    clients = list(clients)
    replies: list[Reply | None] = [None] * len(clients)
    by_source: dict[str, list[int]] = {}
    for i, client in enumerate(clients):
        key = "127.0.0.1" if client.ecs else str(ipaddress.IPv4Address(client.address))
        by_source.setdefault(key, []).append(i)
    for source, indices in by_source.items():
        wires = [query(n, name, qtype, clients[i]) for n, i in enumerate(indices)]
        got = ask_tcp(port, wires, source, host) if tcp else ask_udp(port, wires, source, host)
        for i, reply in zip(indices, got, strict=True):
            replies[i] = reply
    return replies  # type: ignore[return-value]
