"""What a responder's query counters are keyed by, as `Stats` carries them and /metrics labels
them: the answering path, the transport, and the query type folded to a bounded set."""

from __future__ import annotations

# The query types a responder counts by their own number (RFC 1035, 3596, 2782, 8659, 4034,
# 5155, 9460, 1995); every other type is counted as OTHER_QTYPE, where it is counted, so that
# what clients ask cannot grow a responder's counters (65,536 types x zones x rcodes).
OTHER_QTYPE = 0
COUNTED_QTYPES = (OTHER_QTYPE, 1, 28, 5, 15, 2, 12, 6, 33, 16, 257, 43, 48, 47, 50, 46, 65, 64,
                  255, 252, 251)
PATHS = ("fast", "cache", "slow")
PROTOS = ("udp", "tcp")
