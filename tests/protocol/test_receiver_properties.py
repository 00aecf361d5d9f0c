"""Properties of the sans-I/O protocol layer, checked by hypothesis on generated frames.

The receiver's contract: it never raises; a well-formed message comes out exactly as it went in,
however many messages share the connection; a prefix of a message asks for more; any bad input
is a sticky ``ProtocolViolation`` whose close code is one RFC 6455 allows on the wire; the size
limit counts whole messages, exactly at the boundary. The encoder's: it writes strict JSON only.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from bokeh.core.serialization import Buffer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app_server import protocol
from app_server.protocol import CloseCode, Message, ProtocolViolation, Receiver
from app_server.protocol.receiver import MAX_BUFFERS

SENDABLE_CODES = {1002, 1003, 1007, 1008, 1009, 1011}  # what the receiver may ask to close with

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=25,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
msgtypes = st.sampled_from(sorted(protocol.MESSAGE_TYPES)) | st.text(min_size=1, max_size=12)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    header: dict[str, Any] = {"msgid": draw(st.text(max_size=10)), "msgtype": draw(msgtypes)}
    if draw(st.booleans()):
        header["reqid"] = draw(st.text(max_size=10))
    payloads = draw(st.lists(st.binary(max_size=64), max_size=4))
    if payloads:
        header["num_buffers"] = len(payloads)
    ids = draw(st.lists(st.text(max_size=6), min_size=len(payloads), max_size=len(payloads)))
    return Message(
        header=header,
        metadata=draw(json_objects),
        content=draw(json_values),
        buffers=[Buffer(id, payload) for id, payload in zip(ids, payloads, strict=True)],
    )


def same(a: Message, b: Message) -> bool:
    return (
        a.header == b.header
        and a.metadata == b.metadata
        and a.content == b.content
        and [(x.id, x.to_bytes()) for x in a.buffers] == [(x.id, x.to_bytes()) for x in b.buffers]
    )


def feed(receiver: Receiver, frames: list[str | bytes]) -> list[object]:
    return [receiver.receive_frame(frame) for frame in frames]


@settings(max_examples=40)
@given(st.lists(messages(), min_size=1, max_size=5))
def test_a_stream_of_messages_comes_out_exactly_as_it_went_in(sent: list[Message]) -> None:
    receiver = Receiver()
    received = [r for m in sent for r in feed(receiver, protocol.encode(m)) if r is not None]
    assert len(received) == len(sent)
    assert all(isinstance(r, Message) and same(r, m) for r, m in zip(received, sent, strict=True))


@settings(max_examples=60)
@given(messages(), st.data())
def test_a_prefix_of_a_message_only_asks_for_more(message: Message, data: st.DataObject) -> None:
    frames = protocol.encode(message)
    cut = data.draw(st.integers(min_value=0, max_value=len(frames) - 1))
    assert feed(Receiver(), frames[:cut]) == [None] * cut


frames_strategy = st.lists(
    st.one_of(
        st.text(max_size=40),
        st.binary(max_size=40),
        json_values.map(json.dumps),
        st.sampled_from(
            [
                '{"msgid":"1","msgtype":"PATCH-DOC"}',
                '{"msgid":"1","msgtype":"OK","num_buffers":2}',
                '{"id":"b"}',
                "{}",
                "NaN",
                "-Infinity",
                '"\\ud800"',
            ]
        ),
    ),
    max_size=30,
)


@settings(max_examples=60)
@given(frames_strategy, st.integers(min_value=1, max_value=400))
def test_any_frames_give_messages_or_a_sticky_violation_with_a_sendable_code(
    frames: list[str | bytes], limit: int
) -> None:
    receiver = Receiver(max_message_size=limit)
    violation: ProtocolViolation | None = None
    for frame in frames:
        result = receiver.receive_frame(frame)
        if violation is not None:
            assert result is violation, "after a violation, every frame gets the same one"
        elif isinstance(result, ProtocolViolation):
            violation = result
            assert int(result.code) in SENDABLE_CODES
            assert len(result.reason.encode()) <= 123, "a close reason fits in a close frame"
        else:
            assert result is None or isinstance(result, Message)


@settings(max_examples=60)
@given(messages(), st.integers(min_value=1, max_value=2000))
def test_the_size_limit_holds_exactly_at_the_boundary(message: Message, limit: int) -> None:
    frames = protocol.encode(message)
    size = sum(len(frame) for frame in frames)
    results = feed(Receiver(max_message_size=limit), frames)
    if size <= limit:
        assert isinstance(results[-1], Message)
    else:
        violations = [r for r in results if isinstance(r, ProtocolViolation)]
        assert violations and violations[0].code == CloseCode.MESSAGE_TOO_BIG
        assert not any(isinstance(r, Message) for r in results)


@settings(max_examples=60)
@given(messages(), st.data())
def test_a_binary_frame_where_text_belongs_is_unsupported_data(
    message: Message, data: st.DataObject
) -> None:
    frames = protocol.encode(message)
    text_positions = [n for n, frame in enumerate(frames) if isinstance(frame, str)]
    n = data.draw(st.sampled_from(text_positions))
    frames[n] = frames[n].encode()  # type: ignore[union-attr]
    results = feed(Receiver(), frames[: n + 1])
    assert isinstance(results[n], ProtocolViolation)
    assert results[n].code == CloseCode.UNSUPPORTED_DATA


@settings(max_examples=60)
@given(messages(), st.integers(min_value=1, max_value=3))
def test_a_header_announcing_more_buffers_than_come_fails_at_the_next_message(
    message: Message, extra: int
) -> None:
    message.header["num_buffers"] = len(message.buffers) + extra
    frames = protocol.encode(message) + protocol.encode(protocol.make_message(protocol.OK))
    results = feed(Receiver(), frames)
    assert not any(isinstance(r, Message) for r in results)
    assert isinstance(results[-1], ProtocolViolation)
    assert results[-1].code in (CloseCode.PROTOCOL_ERROR, CloseCode.UNSUPPORTED_DATA)


@given(
    st.one_of(
        st.integers(max_value=-1),
        st.integers(min_value=MAX_BUFFERS + 1),
        st.floats(),
        st.booleans(),
        st.text(max_size=3),
        st.none(),
        st.lists(st.integers(), max_size=2),
    )
)
def test_num_buffers_must_be_a_small_non_negative_integer(num_buffers: Any) -> None:
    header = {"msgid": "1", "msgtype": "PATCH-DOC", "num_buffers": num_buffers}
    result = Receiver().receive_frame(json.dumps(header))
    assert isinstance(result, ProtocolViolation) and result.code == CloseCode.PROTOCOL_ERROR


@given(json_values.filter(lambda v: not isinstance(v, dict)))
def test_a_header_or_metadata_that_is_not_an_object_is_a_protocol_error(value: Any) -> None:
    assert Receiver().receive_frame(json.dumps(value)) == ProtocolViolation(
        CloseCode.PROTOCOL_ERROR, "the header must be a JSON object"
    )
    receiver = Receiver()
    receiver.receive_frame('{"msgid":"1","msgtype":"OK"}')
    result = receiver.receive_frame(json.dumps(value))
    assert isinstance(result, ProtocolViolation) and result.code == CloseCode.PROTOCOL_ERROR


def _no_constants(name: str) -> Any:
    raise AssertionError(f"the encoder wrote {name}, which JSON.parse in a browser rejects")


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_the_encoder_writes_strict_json_that_browsers_parse(message: Message) -> None:
    for frame in protocol.encode(message):
        if isinstance(frame, str):
            json.loads(frame, parse_constant=_no_constants)


@given(st.sampled_from([math.nan, math.inf, -math.inf]))
def test_the_encoder_refuses_nan_rather_than_writing_it(value: float) -> None:
    with pytest.raises(ValueError):
        protocol.encode(protocol.make_message(protocol.PATCH_DOC, {"new": value}))


@pytest.mark.parametrize("opener", ["[", '{"a":'])
@pytest.mark.parametrize("part", ["header", "metadata", "content"])
def test_deeply_nested_json_is_a_violation_not_an_exception(opener: str, part: str) -> None:
    """Found by the live fuzzer: json.loads raised RecursionError through the receiver."""
    receiver = Receiver(max_message_size=1 << 20)
    prefix = {"header": [], "metadata": ['{"msgid":"1","msgtype":"OK"}']}.get(
        part, ['{"msgid":"1","msgtype":"OK"}', "{}"]
    )
    feed(receiver, list(prefix))
    result = receiver.receive_frame(opener * 100_000)
    assert isinstance(result, ProtocolViolation)
    assert int(result.code) in SENDABLE_CODES
