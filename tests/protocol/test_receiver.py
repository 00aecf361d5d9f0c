"""The receiver assembles frames into messages and answers bad input with a close code."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app_server.protocol import CloseCode, Message, ProtocolViolation, Receiver, close_reason

HEADER = '{"msgid":"1","msgtype":"PATCH-DOC"}'
HEADER_2_BUFFERS = '{"msgid":"1","msgtype":"PATCH-DOC","num_buffers":2}'


def feed(receiver: Receiver, frames: list[str | bytes]) -> list[object]:
    return [receiver.receive_frame(frame) for frame in frames]


def test_three_text_frames_make_a_message() -> None:
    results = feed(Receiver(), [HEADER, "{}", '{"events":[]}'])
    assert results[:2] == [None, None]
    message = results[2]
    assert isinstance(message, Message)
    assert message.msgtype == "PATCH-DOC"
    assert message.msgid == "1"
    assert message.content == {"events": []}
    assert message.buffers == []


def test_buffers_are_collected_until_num_buffers_arrive() -> None:
    frames: list[str | bytes] = [
        HEADER_2_BUFFERS,
        "{}",
        "{}",
        '{"id":"a"}',
        b"AA",
        '{"id":"b"}',
        b"B",
    ]
    results = feed(Receiver(), frames)
    assert results[:-1] == [None] * 6
    message = results[-1]
    assert isinstance(message, Message)
    assert [(b.id, b.to_bytes()) for b in message.buffers] == [("a", b"AA"), ("b", b"B")]


def test_the_receiver_starts_over_after_each_message() -> None:
    receiver = Receiver()
    for n in range(3):
        results = feed(receiver, [f'{{"msgid":"{n}","msgtype":"OK"}}', "{}", "{}"])
        assert isinstance(results[-1], Message) and results[-1].msgid == str(n)


@pytest.mark.parametrize(
    ("frames", "code", "reason"),
    [
        pytest.param(
            ["not json"], CloseCode.INVALID_DATA, "header is not valid JSON", id="bad-json"
        ),
        pytest.param(["[1]"], CloseCode.PROTOCOL_ERROR, "JSON object", id="header-not-object"),
        pytest.param(['{"msgtype":"OK"}'], CloseCode.PROTOCOL_ERROR, "msgid", id="no-msgid"),
        pytest.param(['{"msgid":"1"}'], CloseCode.PROTOCOL_ERROR, "msgtype", id="no-msgtype"),
        pytest.param(
            ['{"msgid":"1","msgtype":"OK","num_buffers":-1}'],
            CloseCode.PROTOCOL_ERROR,
            "num_buffers",
            id="negative-buffers",
        ),
        pytest.param(
            ['{"msgid":"1","msgtype":"OK","num_buffers":"2"}'],
            CloseCode.PROTOCOL_ERROR,
            "num_buffers",
            id="buffers-not-int",
        ),
        pytest.param([b"\x00"], CloseCode.UNSUPPORTED_DATA, "text frame", id="binary-header"),
        pytest.param(
            [HEADER, "[]"], CloseCode.PROTOCOL_ERROR, "metadata", id="metadata-not-object"
        ),
        pytest.param([HEADER, b"{}"], CloseCode.UNSUPPORTED_DATA, "metadata", id="binary-metadata"),
        pytest.param(
            [HEADER_2_BUFFERS, "{}", "{}", '{"id":1}'],
            CloseCode.PROTOCOL_ERROR,
            "buffer header",
            id="buffer-id-not-str",
        ),
        pytest.param(
            [HEADER_2_BUFFERS, "{}", "{}", '{"id":"a"}', "text"],
            CloseCode.UNSUPPORTED_DATA,
            "binary frame",
            id="text-payload",
        ),
    ],
)
def test_malformed_input_is_a_violation_with_a_close_code(
    frames: list[str | bytes], code: CloseCode, reason: str
) -> None:
    results = feed(Receiver(), frames)
    violation = results[-1]
    assert isinstance(violation, ProtocolViolation)
    assert violation.code == code
    assert reason in violation.reason


def test_after_a_violation_every_frame_gets_the_same_violation() -> None:
    receiver = Receiver()
    first = receiver.receive_frame("oops")
    assert receiver.receive_frame(HEADER) is first
    assert receiver.violation is first


def test_a_message_larger_than_the_limit_is_too_big() -> None:
    receiver = Receiver(max_message_size=100)
    results = feed(receiver, [HEADER, "{}", json.dumps({"x": "y" * 200})])
    assert isinstance(results[-1], ProtocolViolation)
    assert results[-1].code == CloseCode.MESSAGE_TOO_BIG


def test_the_size_limit_counts_the_whole_message_not_one_frame() -> None:
    receiver = Receiver(max_message_size=60)
    results = feed(receiver, [HEADER_2_BUFFERS, "{}", "{}", '{"id":"a"}', b"x" * 20])
    assert isinstance(results[-1], ProtocolViolation)
    assert results[-1].code == CloseCode.MESSAGE_TOO_BIG


def test_the_size_limit_applies_per_message() -> None:
    receiver = Receiver(max_message_size=200)
    for _ in range(10):
        assert isinstance(feed(receiver, [HEADER, "{}", '{"events":[]}'])[-1], Message)


@given(st.lists(st.one_of(st.text(max_size=50), st.binary(max_size=50)), max_size=20))
def test_arbitrary_frames_never_raise(frames: list[str | bytes]) -> None:
    receiver = Receiver(max_message_size=1000)
    for frame in frames:
        result = receiver.receive_frame(frame)
        assert result is None or isinstance(result, Message | ProtocolViolation)


@given(
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=4),
    st.lists(st.binary(max_size=30), max_size=4),
)
def test_any_well_formed_message_is_assembled_exactly(content: dict, payloads: list[bytes]) -> None:
    header = {"msgid": "x", "msgtype": "PATCH-DOC", "num_buffers": len(payloads)}
    frames: list[str | bytes] = [json.dumps(header), "{}", json.dumps(content)]
    for n, payload in enumerate(payloads):
        frames += [json.dumps({"id": str(n)}), payload]
    results = feed(Receiver(), frames)
    message = results[-1]
    assert isinstance(message, Message)
    assert message.content == content
    assert [b.to_bytes() for b in message.buffers] == payloads


def test_json_nested_too_deeply_is_a_violation_not_a_crash() -> None:
    receiver = Receiver()
    violation = receiver.receive_frame("[" * 100_000)
    assert isinstance(violation, ProtocolViolation)
    assert violation.code == CloseCode.INVALID_DATA
    assert "nested too deeply" in violation.reason


def test_the_size_limit_counts_bytes_of_multibyte_text() -> None:
    receiver = Receiver(max_message_size=100)
    header = '{"msgid":"1","msgtype":"PATCH-DOC"}'
    results = feed(receiver, [header, "{}", json.dumps({"x": "é" * 30}, ensure_ascii=False)])
    assert isinstance(results[-1], ProtocolViolation), "30 characters, 60 bytes of é"
    assert results[-1].code == CloseCode.MESSAGE_TOO_BIG


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("short", "short", id="short"),
        pytest.param("x" * 123, "x" * 123, id="exactly-123-bytes"),
        pytest.param("x" * 124, "x" * 120 + "...", id="ascii-cut"),
        pytest.param("é" * 100, "é" * 60 + "...", id="multibyte-whole-characters"),
    ],
)
def test_a_close_reason_fits_a_close_frame(text: str, expected: str) -> None:
    reason = close_reason(text)
    assert reason == expected and len(reason.encode()) <= 123
