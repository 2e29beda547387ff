"""The wire protocol: frames round-trip, and anything malformed is refused, never half-read."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon import protocol as p

MESSAGES = [
    p.Hello(role=p.ROLE_SHIM, server_name="s", config_path=None, target=["a", "b"], cwd="/", pid=1),
    p.Welcome(session_id="S-1", token="t", policy_error=None),
    p.Decide(rid=1, params=b'{"name":"x"}'),
    p.Verdict(rid=1, action=p.APPROVE, reason="r", rule="k", action_id="A-1", expires_at=1.5, attempts=3),
    p.Confirm(rid=2, otp="123456"),
    p.Confirmed(rid=2, ok=True, message="approved", action_id="A-1", params=b"{}"),
    p.PendingList(rid=3, sessions=[{"session_id": "S-1"}], actions=[]),
    p.Error(rid=4, code=p.E_FORBIDDEN, message="no"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=p.tag_of)
def test_round_trip(message: p.Message) -> None:
    """Every message decodes to an equal message."""
    assert p.FrameDecoder().feed(p.encode(message)) == [message]


@settings(max_examples=200)
@given(st.lists(st.sampled_from(MESSAGES), max_size=10), st.integers(min_value=1, max_value=50))
def test_any_split_of_the_stream_decodes_the_same(messages: list[p.Message], step: int) -> None:
    """Frames split at arbitrary byte boundaries come out whole and in order."""
    data = b"".join(p.encode(m) for m in messages)
    decoder, out = p.FrameDecoder(), []
    for i in range(0, len(data), step):
        out += decoder.feed(data[i : i + step])
    assert out == messages


def frame(body: object) -> bytes:
    payload = msgpack.packb(body, use_bin_type=True)
    return struct.pack(">I", len(payload)) + payload


@pytest.mark.parametrize(
    "data",
    [
        frame([1, 2]),
        frame({"t": "nope"}),
        frame({"t": "confirm", "rid": 1, "otp": 123456}),
        frame({"t": "confirm", "rid": True, "otp": "1"}),
        frame({"t": "decide", "rid": 1, "params": b"{}", "extra": 1}),
        frame({"t": "decide", "params": b"{}"}),
        struct.pack(">I", 3) + b"\xc1\xc1\xc1",
    ],
)
def test_malformed_frames_are_refused(data: bytes) -> None:
    """Wrong types, unknown tags or fields, missing fields and garbage raise ProtocolError."""
    with pytest.raises(p.ProtocolError):
        p.FrameDecoder().feed(data)


def test_oversized_frame_is_refused_before_it_is_buffered() -> None:
    """A frame that announces more than the limit is refused from its header alone."""
    with pytest.raises(p.FrameTooLarge):
        p.FrameDecoder(max_frame=1024).feed(struct.pack(">I", 1025))


def test_socket_path_comes_from_home_alone() -> None:
    """The default socket depends on HOME only, and long homes fall back to a short per-home path."""
    short = p.default_socket_path({"HOME": "/home/ann"})
    assert short == "/home/ann/.local/state/mcp-action-firewall/firewalld.sock"
    long_a = p.default_socket_path({"HOME": "/h/" + "a" * 90})
    long_b = p.default_socket_path({"HOME": "/h/" + "b" * 90})
    assert long_a != long_b and len(long_a) <= 100 and long_a.startswith("/tmp/mcp-action-firewall-")
    assert p.default_socket_path({"HOME": "/x", "FIREWALL_SOCKET": "/s.sock"}) == "/s.sock"
