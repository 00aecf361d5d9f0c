"""Properties of the sans-I/O protocol layer, checked by hypothesis on generated frames.

The receiver's contract: it never raises; a well-formed message comes out exactly as it went in,
however many messages share the connection; a prefix of a message asks for more; any bad input
is a sticky ``ProtocolViolation`` whose close code is one RFC 6455 allows on the wire; the size
limit counts whole messages, exactly at the boundary. The encoder's: it writes strict JSON only.

The expected results come from outside app_server: messages generated as Python values and
framed by hand here (any JSON formatting a client may use), Bokeh's own ``bokeh.protocol``
receiver, and the framing model of the fuzzer (:mod:`fuzz.framing`, written from the protocol's
rules), which app_server's receiver must match frame by frame, close code for close code.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from bokeh.core.serialization import Buffer
from bokeh.core.types import ID
from bokeh.protocol import Protocol as BokehProtocol
from bokeh.protocol.receiver import Receiver as BokehReceiver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app_server import protocol
from app_server.protocol import CloseCode, Message, ProtocolViolation, Receiver
from app_server.protocol.receiver import MAX_BUFFERS
from fuzz.framing import BokehMessage, Framing, Violation

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
        buffers=[Buffer(ID(id), payload) for id, payload in zip(ids, payloads, strict=True)],
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


# -- an oracle of Python values: messages framed by hand, as any client may format its JSON -----

json_formats = st.fixed_dictionaries(
    {
        "indent": st.sampled_from([None, 0, 2]),
        "separators": st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]),
        "ensure_ascii": st.booleans(),
    }
)


def frame_by_hand(message: Message, formats: dict[str, Any]) -> list[str | bytes]:
    """The frames of ``message``, written with ``json.dumps`` in the given format, not with
    app_server's encoder: three JSON texts, then a buffer header and a payload per buffer."""
    frames: list[str | bytes] = [
        json.dumps(part, **formats) for part in (message.header, message.metadata, message.content)
    ]
    for buffer in message.buffers:
        frames += [json.dumps({"id": buffer.id}, **formats), buffer.to_bytes()]
    return frames


@settings(max_examples=40)
@given(st.lists(st.tuples(messages(), json_formats), min_size=1, max_size=5))
def test_a_stream_of_messages_comes_out_exactly_as_it_went_in(
    sent: list[tuple[Message, dict[str, Any]]],
) -> None:
    receiver = Receiver()
    frames = [frame for message, formats in sent for frame in frame_by_hand(message, formats)]
    received = [r for r in feed(receiver, frames) if r is not None]
    assert len(received) == len(sent)
    for got, (message, _) in zip(received, sent, strict=True):
        assert isinstance(got, Message) and same(got, message)


# -- Bokeh's own receiver as the oracle ----------------------------------------------------------


@st.composite
def bokeh_messages(draw: st.DrawFn) -> Message:
    """Messages Bokeh's receiver reads: a known type, and content that is an object (Bokeh
    takes a ``null`` content for a missing one)."""
    message = draw(messages())
    message.header["msgtype"] = draw(st.sampled_from(sorted(protocol.MESSAGE_TYPES)))
    message.content = draw(json_objects)
    return message


def read_with_bokeh(frames: list[str | bytes]) -> list[tuple[Any, ...]]:
    """The messages ``bokeh.protocol.receiver.Receiver`` assembles from the frames."""

    async def consume() -> list[tuple[Any, ...]]:
        receiver = BokehReceiver(BokehProtocol())
        out = []
        for frame in frames:
            message = await receiver.consume(frame)
            if message is not None:
                buffers = [(b.id, b.to_bytes()) for b in message.buffers]
                out.append((message.header, message.metadata, message.content, buffers))
        return out

    return asyncio.run(consume())


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(bokeh_messages(), json_formats), min_size=1, max_size=4))
def test_the_receiver_reads_what_bokehs_own_receiver_reads(
    sent: list[tuple[Message, dict[str, Any]]],
) -> None:
    frames = [frame for message, formats in sent for frame in frame_by_hand(message, formats)]
    expected = read_with_bokeh(frames)
    received = [r for r in feed(Receiver(), frames) if r is not None]
    got = [
        (m.header, m.metadata, m.content, [(b.id, b.to_bytes()) for b in m.buffers])
        for m in received
        if isinstance(m, Message)
    ]
    assert len(expected) == len(sent)
    assert got == expected


@settings(max_examples=30)
@given(st.lists(messages(), min_size=1, max_size=4))
def test_bokehs_own_receiver_reads_what_the_encoder_writes(sent: list[Message]) -> None:
    for message in sent:
        message.header["msgtype"] = "PATCH-DOC"
        message.content = {"events": [], "value": message.content}
    frames = [frame for message in sent for frame in protocol.encode(message)]
    expected = [
        (m.header, m.metadata, m.content, [(b.id, b.to_bytes()) for b in m.buffers]) for m in sent
    ]
    assert read_with_bokeh(frames) == expected


# -- the framing model of the fuzzer as the oracle, on any frames --------------------------------

ABSENT = object()
ODD_FRAMES = [
    '{"id":1}',
    '{"id":"a","extra":1}',
    '{"ID":"a"}',
    '{"msgid":"1","msgtype":"OK","num_buffers":2}',
    '{"msgid":1,"msgtype":"OK"}',
    '{"msgtype":"OK"}',
    "{}",
    "[]",
    "null",
    "NaN",
    "-Infinity",
    "1e999",
    '"\\ud800"',
    "[" * 5000,
    '{"a":' * 3000,
    "not json",
    "",
]


@st.composite
def framed_messages(draw: st.DrawFn, ascii_only: bool) -> list[str | bytes]:
    """The frames of a message, sometimes with a ``num_buffers`` that lies or is not a count."""
    chars = st.characters(max_codepoint=127 if ascii_only else 0x10FFFF, exclude_categories=["Cs"])
    strings = st.text(alphabet=chars, max_size=12)
    ensure_ascii = ascii_only or draw(st.booleans())

    def dumps(value: Any) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii)

    count = draw(st.integers(min_value=0, max_value=3))
    header: dict[str, Any] = {"msgid": draw(strings), "msgtype": draw(msgtypes)}
    declared = draw(
        st.just(count)
        | st.just(ABSENT if count == 0 else count)
        | st.integers(min_value=0, max_value=4)
        | st.sampled_from([-1, MAX_BUFFERS, MAX_BUFFERS + 1, True, 1.0, "1", None])
    )
    if declared is not ABSENT:
        header["num_buffers"] = declared
    frames: list[str | bytes] = [dumps(header), dumps(draw(json_objects)), dumps(draw(json_values))]
    for _ in range(count):
        frames += [dumps({"id": draw(strings)}), draw(st.binary(max_size=24))]
    return frames


@st.composite
def frame_streams(draw: st.DrawFn) -> tuple[list[str | bytes], int | None]:
    """Frames of several messages, some replaced, inserted or dropped; and a size limit."""
    limit = draw(st.none() | st.integers(min_value=20, max_value=1500))
    ascii_only = draw(st.booleans())
    parts = draw(st.lists(framed_messages(ascii_only), max_size=4))
    frames: list[str | bytes] = [frame for part in parts for frame in part]
    # all ASCII: ODD_FRAMES, and json.dumps escapes the rest
    odd = st.sampled_from(ODD_FRAMES) | st.binary(max_size=16) | json_values.map(json.dumps)
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        position = draw(st.integers(min_value=0, max_value=len(frames)))
        edit = draw(st.sampled_from(["replace", "insert", "drop", "to-binary", "to-text"]))
        if edit == "insert" or position == len(frames):
            frames.insert(position, draw(odd))
        elif edit == "replace":
            frames[position] = draw(odd)
        elif edit == "drop":
            del frames[position]
        elif edit == "to-binary":
            frame = frames[position]
            frames[position] = frame.encode() if isinstance(frame, str) else frame
        elif edit == "to-text":
            frame = frames[position]
            if isinstance(frame, bytes):
                frame = bytes(byte & 0x7F for byte in frame) if ascii_only else frame
                frames[position] = frame.decode("latin-1")
    return frames, limit


def outcome(result: object) -> object:
    """A comparable form of one frame's result: None, a message, or a close code."""
    if isinstance(result, ProtocolViolation | Violation):
        return ("close", int(result.code))
    if isinstance(result, Message | BokehMessage):
        buffers = [(str(b.id), b.to_bytes()) for b in result.buffers]
        parts = json.dumps([result.header, result.metadata, result.content])  # NaN == NaN here
        return ("message", parts, buffers)
    assert result is None, result
    return None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(frame_streams())
def test_the_receiver_agrees_with_the_framing_model_frame_by_frame(
    stream: tuple[list[str | bytes], int | None],
) -> None:
    frames, limit = stream
    model, receiver = Framing(limit), Receiver(max_message_size=limit)
    for n, frame in enumerate(frames):
        expected = outcome(model.feed(frame))
        assert outcome(receiver.receive_frame(frame)) == expected, f"frame {n}: {frame!r:.200}"


def test_the_size_limit_counts_utf8_bytes() -> None:
    limit = 1000
    frames: list[str | bytes] = [
        '{"msgid":"1","msgtype":"OK"}',
        json.dumps({"k": "\u00e9" * 100}, ensure_ascii=False),  # 110 characters, 210 bytes
        json.dumps("x" * 848),
    ]
    assert sum(len(f.encode()) for f in frames if isinstance(f, str)) > limit
    model = Framing(limit)  # the model counts bytes
    assert [outcome(model.feed(f)) for f in frames][-1] == ("close", 1009)
    results = feed(Receiver(max_message_size=limit), frames)
    assert isinstance(results[-1], ProtocolViolation), results[-1]
    assert results[-1].code == CloseCode.MESSAGE_TOO_BIG


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
    result = feed(Receiver(), frames[: n + 1])[n]
    assert isinstance(result, ProtocolViolation)
    assert result.code == CloseCode.UNSUPPORTED_DATA


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
