"""The supervisor's end of a child's pipe, on its own."""

from __future__ import annotations

import pytest

from healthdns.supervisor.channel import Channel


def test_a_child_killed_with_bytes_unread_is_an_end_of_file() -> None:
    # A child killed (hung, or broke the protocol) before it read what was sent to it: the
    # kernel resets the pipe instead of ending it, and that must read as the child gone,
    # never as an error that stops the supervisor.
    channel = Channel(1024)
    channel.send(b"a snapshot the child never read")
    channel.child_end.close()
    with pytest.raises(EOFError):
        channel.receive()
    channel.close()
