"""The audit frame of leased calls is built by hand (shim.leases.audit_frame): the daemon must read
it as exactly the LeaseAudit that the generic encoder would have sent."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon import protocol as p
from shim.leases import audit_frame

records = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=2**63 - 1),
        st.text(max_size=40),
        st.text(max_size=40),
        st.binary(max_size=1000),
    ).map(list),
    max_size=30,
)


@given(rid=st.integers(min_value=0, max_value=2**63 - 1), calls=records)
def test_the_hand_built_frame_decodes_as_the_generic_one(rid: int, calls: list[list[Any]]) -> None:
    frame = audit_frame(rid, calls)
    (message,) = p.FrameDecoder().feed(frame)
    assert message == p.LeaseAudit(rid, calls)
    assert p.decode(frame[4:]) == p.decode(p.encode(p.LeaseAudit(rid, calls))[4:])


def test_frames_back_to_back_stay_apart() -> None:
    first = audit_frame(1, [[1, "t\u00e9", "r", b'{"a":1}']])
    second = audit_frame(2, [])
    decoded = p.FrameDecoder().feed(first + second)
    assert decoded == [p.LeaseAudit(1, [[1, "t\u00e9", "r", b'{"a":1}']]), p.LeaseAudit(2, [])]


def test_an_oversized_frame_is_refused_as_the_encoder_would(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p, "MAX_FRAME", 100)
    with pytest.raises(p.FrameTooLarge):
        audit_frame(1, [[1, "t", "r", b"x" * 200]])
