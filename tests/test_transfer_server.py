"""The transfer server on loopback (RFC 5936 AXFR, RFC 1995 IXFR), fed through its pipe.

The server runs in the test's event loop; dnspython's own transfer client (`inbound_xfr`)
applies what it sends to a zone, the way a secondary does.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import dns.asyncquery
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.zone
import pytest
from harness import read_tcp_message
from zonedata import zone_records, zone_text

from healthdns.shared import config, messages, tables
from healthdns.transfer.packing import MESSAGE_MAX
from healthdns.transfer.server import Server

ORIGIN = "example."
# A hang is caught; a busy machine parsing zones of 3,000 names with dnspython is not (a test
# took 25 s under a CPU hog on both cores).
pytestmark = pytest.mark.timeout(60)


def cfg(**transfer: Any) -> config.Config:
    spec: dict[str, Any] = {"listen": ["127.0.0.1:0"], "require_tsig": False,
                            "allow": [{"networks": ["127.0.0.1/32"]}]}
    spec.update(transfer)
    return config.from_mapping({"server": {"listen": ["127.0.0.1:0"]}, "transfer": spec,
                                "zones": [{"origin": "example.org",
                                           "nameservers": ["ns1.example.org"]}]})


@functools.cache  # frozen: the server is sent a copy (a 3,000-name zone takes seconds to make)
def records(generation: int, serial: int, **kwargs: Any) -> messages.Records:
    return messages.Records(generation, [zone_records(zone_text(serial, **kwargs), ORIGIN)])


def delta(generation: int, old: tables.ZoneRecords,
          new: tables.ZoneRecords) -> messages.RecordsDelta:
    return messages.RecordsDelta(generation, generation - 1, [tables.ZoneRecordsDelta(
        new.origin, new.serial, new.soa,
        {o: r for o, r in new.owners.items() if old.owners.get(o) != r},
        [o for o in old.owners if o not in new.owners])])


class Running:
    def __init__(self, server: Server, pipe: Any) -> None:
        self.server = server
        self.pipe = pipe
        self.port = server.listeners[0].getsockname()[1]

    async def send(self, message: messages.Records | messages.RecordsDelta) -> None:
        """Send through the pipe, and wait until the server holds that generation."""
        # From a thread: a message larger than the pipe's buffer would block this loop, the
        # server's own, before the server could read it.
        await asyncio.to_thread(self.pipe.send_bytes, messages.encode(message))
        while self.server.transfers.store.generation != message.generation:
            await asyncio.sleep(0.005)  # a turn of the loop for the server's pipe reader

    async def query(self, name: str, rdtype: str, source: str = "127.0.0.1",
                    **kwargs: Any) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, **kwargs)
        return await dns.asyncquery.tcp(q, "127.0.0.1", port=self.port, timeout=2,
                                        source=source)

    async def transfer(self, zone: dns.zone.Zone, rdtype: str, serial: int = 0) -> None:
        query, _ = dns.xfr.make_query(zone, serial=serial) if rdtype == "IXFR" else (
            dns.message.make_query(zone.origin, "AXFR"), None)  # type: ignore[arg-type]
        await dns.asyncquery.inbound_xfr("127.0.0.1", zone, query, port=self.port, timeout=5)


@asynccontextmanager
async def serving(spec: config.Config, send_buffer: int = 0) -> AsyncIterator[Running]:
    """The server on a listener of its own; `send_buffer`: the SO_SNDBUF its connections
    inherit, small to make a transfer wait for its reader instead of the kernel holding it."""
    ours, theirs = multiprocessing.Pipe()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if send_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server = Server(0, spec, [sock], theirs)
    task = asyncio.create_task(server.serve())
    try:
        yield Running(server, ours)
    finally:
        server.stop()
        await task
        sock.close()
        ours.close()
        theirs.close()


def run(test: Callable[[], Any]) -> Any:
    return asyncio.run(test())


def zone_at(serial: int, **kwargs: Any) -> dns.zone.Zone:
    return dns.zone.from_text(zone_text(serial, **kwargs), ORIGIN, relativize=False)


def test_axfr_sends_the_whole_zone_in_messages_of_at_most_64k() -> None:
    async def test() -> None:
        async with serving(cfg()) as running:
            await running.send(records(1, 5, names=400))
            secondary = dns.zone.Zone(ORIGIN, relativize=False)
            await running.transfer(secondary, "AXFR")
            assert secondary == zone_at(5, names=400)
            sizes = await asyncio.get_running_loop().run_in_executor(None, lambda: [
                len(m.to_wire()) for m in dns.query.xfr("127.0.0.1", ORIGIN, port=running.port,
                                                        relativize=False)])
            assert len(sizes) > 1 and max(sizes) <= MESSAGE_MAX, sizes
            assert running.server.transfers.counts.axfr == 2
    run(test)


def test_ixfr_brings_a_secondary_from_any_journalled_serial_to_the_current_one() -> None:
    async def test() -> None:
        async with serving(cfg()) as running:
            first = records(1, 10, names=20)
            await running.send(first)
            previous = first.zones[0]
            for generation, (serial, down) in enumerate(
                    [(11, {3}), (12, {3, 7}), (14, {7})], start=2):
                now = records(generation, serial, names=20, down=frozenset(down))
                await running.send(delta(generation, previous, now.zones[0]))
                previous = now.zones[0]
            for start, down in ((10, set()), (11, {3}), (12, {3, 7})):
                secondary = zone_at(start, names=20, down=frozenset(down))
                await running.transfer(secondary, "IXFR", start)
                assert secondary == zone_at(14, names=20, down=frozenset({7}))
            counts = running.server.transfers.counts
            assert (counts.ixfr, counts.fallback) == (3, 0)
    run(test)


def test_ixfr_from_a_serial_older_than_the_journal_gets_the_whole_zone() -> None:
    async def test() -> None:
        async with serving(cfg(journal=1)) as running:
            await running.send(records(1, 1))
            await running.send(delta(2, records(1, 1).zones[0],
                                     records(2, 2, down=frozenset({0})).zones[0]))
            await running.send(delta(3, records(2, 2, down=frozenset({0})).zones[0],
                                     records(3, 3, down=frozenset({0, 1})).zones[0]))
            q = dns.message.make_query(ORIGIN, "IXFR")
            q.authority.append(zone_at(1).find_rrset(dns.name.from_text(ORIGIN), "SOA"))
            messages_ = [m async for m in _xfr(running, q)]
            answer = [rr for m in messages_ for rr in m.answer]
            # AXFR style (RFC 1995 4): the current SOA, every other RR, the SOA again
            assert answer[0].rdtype == answer[-1].rdtype == dns.rdatatype.SOA
            assert not any(r.rdtype == dns.rdatatype.SOA for r in answer[1:-1])
            assert running.server.transfers.counts.fallback == 1
            secondary = zone_at(1)
            await running.transfer(secondary, "IXFR", 1)
            assert secondary == zone_at(3, down=frozenset({0, 1}))
    run(test)


async def _xfr(running: Running, q: dns.message.Message) -> AsyncIterator[dns.message.Message]:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    wire = q.to_wire()
    writer.write(len(wire).to_bytes(2, "big") + wire)
    soas = 0
    while soas < 2:
        length = int.from_bytes(await reader.readexactly(2), "big")
        message = dns.message.from_wire(await reader.readexactly(length), xfr=True,
                                        one_rr_per_rrset=True)
        soas += sum(1 for r in message.answer if r.rdtype == dns.rdatatype.SOA)
        yield message
    writer.close()


def test_a_current_serial_gets_the_soa_alone_and_soa_queries_are_answered() -> None:
    async def test() -> None:
        async with serving(cfg()) as running:
            await running.send(records(1, 9))
            q = dns.message.make_query(ORIGIN, "IXFR")
            q.authority.append(zone_at(9).find_rrset(dns.name.from_text(ORIGIN), "SOA"))
            replies = [m async for m in _xfr_single(running, q)]
            assert [r.rdtype for r in replies[0].answer] == [dns.rdatatype.SOA]
            soa = await running.query(ORIGIN, "SOA")
            assert soa.rcode() == dns.rcode.NOERROR and soa.flags & 0x0400
            assert [rd.serial for rd in soa.answer[0]] == [9]  # type: ignore[attr-defined]
    run(test)


async def _xfr_single(running: Running,
                      q: dns.message.Message) -> AsyncIterator[dns.message.Message]:
    yield await dns.asyncquery.tcp(q, "127.0.0.1", port=running.port, timeout=2)


@pytest.mark.parametrize(("name", "rdtype", "rcode"), [
    ("host1.example.", "A", dns.rcode.REFUSED),  # only transfers and SOA on this port
    ("example.", "TXT", dns.rcode.REFUSED),
    ("other.", "AXFR", dns.rcode.NOTAUTH),  # not a zone of ours
])
def test_other_queries_are_refused(name: str, rdtype: str, rcode: dns.rcode.Rcode) -> None:
    async def test() -> None:
        async with serving(cfg()) as running:
            await running.send(records(1, 1))
            reply = await running.query(name, rdtype)
            assert reply.rcode() == rcode
            assert reply.question[0].name == dns.name.from_text(name)
    run(test)


def test_a_client_no_rule_admits_is_refused() -> None:
    async def test() -> None:
        spec = cfg(allow=[{"networks": ["127.0.0.2/32"]}],
                   secondaries=[{"address": "127.0.0.3:5300", "notify": False}])
        async with serving(spec) as running:
            await running.send(records(1, 1))
            for source in ("127.0.0.2", "127.0.0.3"):
                assert (await running.query(ORIGIN, "SOA", source)).rcode() == 0
            reply = await running.query(ORIGIN, "AXFR", "127.0.0.1")
            assert reply.rcode() == dns.rcode.REFUSED and not reply.answer
            assert running.server.transfers.counts.refused == 1
    run(test)


SECRET = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"  # 24 octets
OTHER = "b3RoZXJvdGhlcm90aGVyb3RoZXJvdGhlcg=="


def signed_cfg() -> config.Config:
    """TSIG required: the secondary at 127.0.0.1 signs with xfr-key; other-key is known to
    the server but belongs to no entry of that address."""
    return config.from_mapping({
        "server": {"listen": ["127.0.0.1:0"]},
        "tsig": [{"name": "xfr-key", "secret": SECRET}, {"name": "other-key", "secret": OTHER}],
        "transfer": {"listen": ["127.0.0.1:0"],
                     "secondaries": [{"address": "127.0.0.1:5300", "key": "xfr-key",
                                      "notify": False}],
                     "allow": [{"networks": ["127.0.0.2/32"], "key": "other-key"}]},
        "zones": [{"origin": "example.org", "nameservers": ["ns1.example.org"]}]})


def signed_query(rdtype: str, name: str, secret: str) -> dns.message.Message:
    q = dns.message.make_query(ORIGIN, rdtype)
    q.use_tsig(dns.tsigkeyring.from_text({name: secret}), keyname=name)
    return q


async def exchange(running: Running, q: dns.message.Message) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    wire = q.to_wire()
    writer.write(len(wire).to_bytes(2, "big") + wire)
    length = int.from_bytes(await reader.readexactly(2), "big")
    reply = await reader.readexactly(length)
    writer.close()
    return reply


def tsig_error(reply: bytes) -> int:
    """The TSIG error of a reply (its TSIG record unverified: BADKEY/BADSIG ones are not)."""
    message = dns.message.from_wire(reply, keyring=False)
    assert message.tsig is not None
    return int(message.tsig[0].error)  # type: ignore[attr-defined]


def test_a_signed_secondary_transfers_and_every_message_is_signed() -> None:
    async def test() -> None:
        async with serving(signed_cfg()) as running:
            await running.send(records(1, 4, names=400))
            secondary = dns.zone.Zone(ORIGIN, relativize=False)
            q = signed_query("AXFR", "xfr-key.", SECRET)
            # dnspython checks the TSIG of every message of the stream against the key
            await dns.asyncquery.inbound_xfr("127.0.0.1", secondary, q, port=running.port,
                                             timeout=5)
            assert secondary == zone_at(4, names=400)
    run(test)


@pytest.mark.parametrize(("name", "secret", "rcode", "error"), [
    ("", "", dns.rcode.REFUSED, None),  # unsigned where a key is required
    ("stranger.", SECRET, dns.rcode.NOTAUTH, 17),  # an unknown key: BADKEY (RFC 8945 5.2.1)
    ("xfr-key.", OTHER, dns.rcode.NOTAUTH, 16),  # the wrong secret: BADSIG (5.2.2)
    ("other-key.", OTHER, dns.rcode.REFUSED, 0),  # known, but not this address's key
])
def test_transfers_without_the_right_key_are_refused(name: str, secret: str, rcode: int,
                                                      error: int | None) -> None:
    async def test() -> None:
        async with serving(signed_cfg()) as running:
            await running.send(records(1, 1))
            q = signed_query("AXFR", name, secret) if name else \
                dns.message.make_query(ORIGIN, "AXFR")
            reply = await exchange(running, q)
            assert reply[3] & 0xF == rcode
            assert int.from_bytes(reply[6:8], "big") == 0  # no record of the zone
            if error is not None:
                assert tsig_error(reply) == error
            assert running.server.transfers.counts.refused == 1
    run(test)


def test_a_reader_that_does_not_read_never_holds_up_a_new_generation() -> None:
    async def test() -> None:
        async with serving(cfg()) as running:
            await running.send(records(1, 1, names=3000))  # megabytes: more than buffers hold
            stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once
            stalled.connect(("127.0.0.1", running.port))
            wire = dns.message.make_query(ORIGIN, "AXFR").to_wire()
            stalled.sendall(len(wire).to_bytes(2, "big") + wire)
            # Under way once its first octets arrive (open alone, it may not have read the
            # query yet: a busy machine would then send the new generation's zone).
            stalled.setblocking(False)
            while not _arrived(stalled):
                await asyncio.sleep(0.005)
            stalled.setblocking(True)
            new = records(2, 2, names=3000, down=frozenset({5}))
            await running.send(delta(2, records(1, 1, names=3000).zones[0], new.zones[0]))
            soa = await running.query(ORIGIN, "SOA")
            assert [rd.serial for rd in soa.answer[0]] == [2]  # type: ignore[attr-defined]
            # The stalled transfer carries on with the serial it started with, complete.
            loop = asyncio.get_running_loop()
            got = await loop.run_in_executor(None, _read_axfr, stalled)
            assert got == zone_at(1, names=3000)
    run(test)


def test_a_reader_that_stops_reading_mid_transfer_loses_it_after_the_idle_timeout() -> None:
    """The idle timeout counts from the last message the client took, not from the query: a
    transfer that is being read goes on, one that stalls is closed."""
    async def test() -> None:
        async with serving(cfg(idle_timeout=1.0), send_buffer=4096) as running:
            await running.send(records(1, 1, names=3000))  # ~10 messages: more than buffers hold
            stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            # Before the query: the server's last write, from which it counts, comes after.
            # (Taken once the connection showed up, a busy machine could see that late.)
            began = asyncio.get_running_loop().time()
            stalled.connect(("127.0.0.1", running.port))
            wire = dns.message.make_query(ORIGIN, "AXFR").to_wire()
            stalled.sendall(len(wire).to_bytes(2, "big") + wire)
            while not running.server.open:
                await asyncio.sleep(0.005)
            while running.server.open:
                await asyncio.sleep(0.01)  # polling for the server to give the client up
            assert 1.0 <= asyncio.get_running_loop().time() - began < 3
            stalled.close()
            # A client that reads slowly, longer than the timeout in all but not between two
            # messages, gets the whole zone.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", running.port))
            sock.sendall(len(wire).to_bytes(2, "big") + wire)
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, _read_axfr, sock, 5) == zone_at(1, names=3000)
    run(test)


def _read_axfr(sock: socket.socket, pauses: int = 0) -> dns.zone.Zone:
    """The zone an AXFR on `sock` sends; `pauses`: wait 0.3 s before each of that many first
    messages (a slow reader: the pace is the point, not a readiness wait).

    The messages are read first and parsed once all are in: parsed as they come, a busy
    machine's dnspython could take longer between two reads than the server's idle timeout."""
    sock.settimeout(5)
    messages_in: list[bytes] = []
    soas = 0
    with sock:
        while soas < 2:
            if pauses > 0:
                pauses -= 1
                time.sleep(0.3)
            wire = read_tcp_message(sock)
            assert wire is not None
            messages_in.append(wire)
            soas += _soas_in(wire)
    zone = dns.zone.Zone(ORIGIN, relativize=False)
    soas = 0
    with zone.writer() as txn:
        for wire in messages_in:
            for rrset in dns.message.from_wire(wire, xfr=True, one_rr_per_rrset=True).answer:
                if rrset.rdtype == dns.rdatatype.SOA:
                    soas += 1
                    if soas == 2:
                        break
                txn.add(rrset)
    return zone


def _arrived(sock: socket.socket) -> bool:
    """Whether the (non-blocking) socket holds something to read, left there to read."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False


def _soas_in(wire: bytes) -> int:
    """How many SOA records the answer section of a response holds, read by their headers."""
    at = 12
    for _ in range(int.from_bytes(wire[4:6], "big")):  # the question
        at = _past_name(wire, at) + 4
    soas = 0
    for _ in range(int.from_bytes(wire[6:8], "big")):
        at = _past_name(wire, at)
        soas += wire[at:at + 2] == b"\x00\x06"
        at += 10 + int.from_bytes(wire[at + 8:at + 10], "big")
    return soas


def _past_name(wire: bytes, at: int) -> int:
    while wire[at] and wire[at] < 0xC0:
        at += wire[at] + 1
    return at + (2 if wire[at] >= 0xC0 else 1)


def test_connections_beyond_the_limit_and_idle_ones_are_closed() -> None:
    async def test() -> None:
        async with serving(cfg(max_connections=2, idle_timeout=0.2)) as running:
            await running.send(records(1, 1))
            held = [await asyncio.open_connection("127.0.0.1", running.port) for _ in range(2)]
            while len(running.server.open) < 2:
                await asyncio.sleep(0.005)
            reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
            assert await asyncio.wait_for(reader.read(), 1) == b""  # closed at once
            writer.close()
            for reader, writer in held:  # idle past the timeout: closed by the server
                assert await asyncio.wait_for(reader.read(), 2) == b""
                writer.close()
    run(test)
