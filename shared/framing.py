"""DNS over TCP framing (RFC 1035 4.2.2, RFC 7766 8): every message follows its length in two
octets, network order. The responders (responder/tcp.py) and the transfer process
(transfer/server.py) read and write frames by these bounds."""

from __future__ import annotations

HEADER = 12  # a DNS message shorter than its header cannot be a query: the framing is wrong
FRAME_MAX = 0xFFFF  # the 2-octet length prefix (RFC 1035 4.2.2)
