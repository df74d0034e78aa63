"""NOTIFY (RFC 1996) from the transfer process, to a fake secondary socket on loopback."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time

import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import pytest
from zonedata import zone_records, zone_text

from healthdns.shared import config
from healthdns.transfer.notify import Notifier
from healthdns.transfer.server import _notify_signing

pytestmark = pytest.mark.timeout(30)


class FakeSecondary:
    """A UDP socket that records each NOTIFY (time, source, message) and answers on demand."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.got: list[tuple[float, tuple[str, int], dns.message.Message]] = []

    async def receive(self, count: int, timeout: float = 10) -> None:
        loop = asyncio.get_running_loop()
        while len(self.got) < count:
            wire, peer = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65535), timeout)
            self.got.append((time.monotonic(), peer, dns.message.from_wire(wire)))

    def answer(self, index: int, rcode: int = dns.rcode.NOERROR, qid: int | None = None,
               opcode: int | None = None) -> None:
        _, peer, query = self.got[index]
        reply = dns.message.make_response(query)
        reply.set_rcode(rcode)
        if qid is not None:
            reply.id = qid
        if opcode is not None:
            reply.set_opcode(opcode)
        self.sock.sendto(reply.to_wire(), peer)


def notifier(secondary: FakeSecondary, retries: int, timeout: float,
             source: str = "") -> Notifier:
    cfg = config.from_mapping({
        "server": {"listen": ["127.0.0.1:0"]},
        "transfer": {"listen": ["127.0.0.1:0"], "require_tsig": False,
                     "notify_retries": retries, "notify_timeout": timeout,
                     "notify_source": source,
                     "secondaries": [{"address": f"127.0.0.1:{secondary.port}"},
                                     {"address": "127.0.0.1:9", "notify": False}]},
        "zones": [{"origin": "example.org", "nameservers": ["ns1.example.org"]}]})
    return Notifier(cfg.transfer)


def soa(serial: int) -> tuple[bytes, int, bytes]:
    zone = zone_records(zone_text(serial), "example.")
    return zone.origin, zone.serial, zone.soa


def test_an_unanswered_notify_is_resent_with_doubling_waits_then_given_up() -> None:
    async def test() -> None:
        secondary = FakeSecondary()
        sender = notifier(secondary, retries=3, timeout=0.05, source="127.0.0.2")
        sender.start()
        sender.changed(*soa(7))
        await secondary.receive(4)
        while sender.pending:  # the last wait runs out: given up
            await asyncio.sleep(0.01)
        times = [t for t, _, _ in secondary.got]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # Timers never fire early; each wait is twice the one before (RFC 1996 3.6).
        for gap, wait in zip(gaps, (0.05, 0.1, 0.2), strict=True):
            assert gap >= wait * 0.95, gaps
        assert gaps[2] > gaps[0] * 2, gaps
        for _, peer, message in secondary.got:
            assert peer[0] == "127.0.0.2"  # from notify_source
            assert message.opcode() == dns.opcode.NOTIFY and message.flags & 0x0400
            assert message.question[0].rdtype == dns.rdatatype.SOA
            assert str(message.question[0].name) == "example."
            assert [rd.serial for rd in message.answer[0]] == [7]  # type: ignore[attr-defined]
        assert len({m.id for _, _, m in secondary.got}) == 1  # a resend is the same NOTIFY
        assert (sender.counts.sent, sender.counts.answered, sender.counts.failed) == (4, 0, 1)
        sender.close()
        secondary.sock.close()
    asyncio.run(test())


def test_an_answer_stops_the_resends() -> None:
    async def test() -> None:
        secondary = FakeSecondary()
        sender = notifier(secondary, retries=5, timeout=0.05)
        sender.start()
        sender.changed(*soa(7))
        await secondary.receive(2)
        secondary.answer(1, qid=(secondary.got[1][2].id + 1) % 65536)  # another id: not it
        secondary.answer(1, opcode=dns.opcode.QUERY)  # another opcode: not it
        await secondary.receive(3)
        secondary.answer(2)
        while sender.pending:
            await asyncio.sleep(0.01)
        assert (sender.counts.sent, sender.counts.answered, sender.counts.failed) == (3, 1, 0)
        sender.close()
        secondary.sock.close()
    asyncio.run(test())


def test_a_newer_serial_replaces_the_pending_notify() -> None:
    async def test() -> None:
        secondary = FakeSecondary()
        sender = notifier(secondary, retries=5, timeout=0.2)
        sender.start()
        sender.changed(*soa(7))
        sender.changed(*soa(8))
        await secondary.receive(2)
        serials = [rd.serial for _, _, m in secondary.got for rd in m.answer[0]]
        assert serials == [7, 8]
        assert len(sender.pending) == 1
        secondary.answer(0)  # the answer to the replaced one is not the answer to the new
        await asyncio.sleep(0)
        assert len(sender.pending) == 1
        secondary.answer(1)
        while sender.pending:
            await asyncio.sleep(0.01)
        assert sender.counts.answered == 1
        sender.close()
        secondary.sock.close()
    asyncio.run(test())


def test_an_error_answer_gives_up_at_once() -> None:
    async def test() -> None:
        secondary = FakeSecondary()
        sender = notifier(secondary, retries=5, timeout=0.05)
        sender.start()
        sender.changed(*soa(7))
        await secondary.receive(1)
        secondary.answer(0, rcode=dns.rcode.NOTAUTH)
        while sender.pending:
            await asyncio.sleep(0.01)
        assert (sender.counts.answered, sender.counts.failed) == (0, 1)
        sender.close()
        secondary.sock.close()
    asyncio.run(test())


def test_a_notify_is_signed_with_the_secondarys_key_and_its_answer_checked() -> None:
    async def test() -> None:
        secret = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
        secondary = FakeSecondary()
        cfg = config.from_mapping({
            "server": {"listen": ["127.0.0.1:0"]},
            "tsig": [{"name": "notify-key", "secret": secret}],
            "transfer": {"listen": ["127.0.0.1:0"], "notify_timeout": 0.05,
                         "secondaries": [{"address": f"127.0.0.1:{secondary.port}",
                                          "key": "notify-key"}]},
            "zones": [{"origin": "example.org", "nameservers": ["ns1.example.org"]}]})
        sender = Notifier(cfg.transfer, *_notify_signing(cfg.tsig_keys()))
        sender.start()
        sender.changed(*soa(7))
        loop = asyncio.get_running_loop()
        ring = dns.tsigkeyring.from_text({"notify-key.": secret})
        wire, peer = await asyncio.wait_for(loop.sock_recvfrom(secondary.sock, 65535), 5)
        query = dns.message.from_wire(wire, keyring=ring)  # raises unless signed with it
        assert query.had_tsig
        unsigned = dns.message.make_response(query)
        unsigned.use_tsig(dns.tsigkeyring.from_text({"notify-key.": "b3RoZXJvdGhlcm90aGVy"}),
                          keyname="notify-key.")
        secondary.sock.sendto(unsigned.to_wire(), peer)  # signed with another secret
        again, _ = await asyncio.wait_for(loop.sock_recvfrom(secondary.sock, 65535), 5)
        assert again == wire  # it was not taken for the answer: the same NOTIFY, resent
        answer = dns.message.make_response(query)  # signed over the NOTIFY's MAC
        secondary.sock.sendto(answer.to_wire(), peer)
        while sender.pending:
            await asyncio.sleep(0.01)
        assert (sender.counts.answered, sender.counts.failed) == (1, 0)
        sender.close()
        secondary.sock.close()
    asyncio.run(test())
