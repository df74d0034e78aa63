"""What one instance tells another: a report of its view, signed, and the checks a receiver
makes before it believes one.

A report is the msgpack of `Report` (who sends it, its wall-clock time, every target's state
as its own prober sees it or the states changed since the report the peer holds, whether that
prober is fenced), sent as the body of an HTTP POST to
`PATH`. Its `SIGNATURE` header is the hex HMAC-SHA256 of `DOMAIN` and the body under the secret
the two instances share, and the body holds the timestamp: body and time are signed together.

A receiver judges a report in this order, cheapest first, and counts each refusal by its reason
(`REASONS`): larger than `peers.max_report` (oversized); a sender it has no secret for
(sender, counted apart: no peer row to count it on); a signature that does not match
(signature); a body that does not decode (malformed); a timestamp outside the replay window,
or not newer than the latest accepted from that peer (replay); more reports a second than
`peers.max_rate` (rate). A report that names checks the receiver does not have is accepted for
those it has and counted as unknown: instances part-way through a rolling change of their
configuration still hear each other about what they share.
"""

from __future__ import annotations

import hashlib
import hmac

import msgspec

PATH = "/healthdns/v1/report"
SENDER = "X-Healthdns-Peer"
SIGNATURE = "X-Healthdns-Signature"
DOMAIN = b"healthdns peer report v1\n"  # signed first: this signature means nothing elsewhere
REASONS = ("oversized", "signature", "malformed", "replay", "rate", "unknown")


class Report(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One instance's view, as sent to a peer: whole, or the changes to the copy the peer
    holds (`peers.sync`; a heartbeat is a report of no changes)."""

    sender: str
    sent: float  # the sender's wall clock (time.time())
    states: dict[str, bool]  # prober target id -> up: every target, or the changed ones
    fenced: bool = False
    whole: bool = True  # `states` is the whole view (False: changes to the view `base`)
    base: bytes = b""  # changes: the digest of the view they apply to
    digest: bytes = b""  # the digest of the whole view after this report


class Refused(Exception):
    """A report not believed; `reason` is one of `REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


_decoder = msgspec.msgpack.Decoder(Report)
_encoder = msgspec.msgpack.Encoder()


def sign(body: bytes, secret: bytes) -> str:
    return hmac.new(secret, DOMAIN + body, hashlib.sha256).hexdigest()


def encode(report: Report, secret: bytes) -> tuple[bytes, str]:
    """The body of a report and its signature."""
    body = _encoder.encode(report)
    return body, sign(body, secret)


def judge(body: bytes, signature: str, sender: str, secret: bytes, now: float, window: float,
          latest: float) -> Report:
    """The report `body` holds if it is believed (see the module docstring); `Refused`
    otherwise. `now` is this host's wall clock, `latest` the time of the latest report
    accepted from `sender` (0 for none)."""
    if not hmac.compare_digest(sign(body, secret), signature.strip().lower()):
        raise Refused("signature", f"the report from {sender} is not signed with its secret")
    try:
        report = _decoder.decode(body)
    except msgspec.DecodeError as e:
        raise Refused("malformed", f"a report from {sender} does not decode: {e}") from None
    if report.sender != sender:
        raise Refused("malformed", f"a report from {sender} names {report.sender[:64]!r}")
    if abs(now - report.sent) > window:
        raise Refused("replay", f"a report from {sender} is {now - report.sent:+.1f} s off "
                      f"this host's clock (window {window:g} s)")
    if report.sent <= latest:
        raise Refused("replay", f"a report from {sender} is not newer than its latest")
    return report
