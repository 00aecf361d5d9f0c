"""Messages encode to the frames BokehJS expects: header, metadata, content, then buffers."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from bokeh import __version__ as bokeh_version
from bokeh.core.serialization import Buffer
from bokeh.document import Document
from bokeh.models import ColumnDataSource, Div

from app_server import protocol
from app_server.protocol.message import Message, dumps, encode

bokeh_version_info = tuple(int(part) for part in bokeh_version.split(".")[:2])


def test_a_message_is_three_compact_json_text_frames() -> None:
    message = protocol.make_message(protocol.ACK)
    frames = protocol.encode(message)
    assert len(frames) == 3
    assert all(isinstance(frame, str) for frame in frames)
    header = json.loads(frames[0])
    assert header == {"msgid": message.msgid, "msgtype": "ACK"}
    assert frames[1:] == ["{}", "{}"]
    assert " " not in frames[0]


def test_replies_carry_the_request_id() -> None:
    reply = protocol.ok("req-7")
    assert json.loads(protocol.encode(reply)[0])["reqid"] == "req-7"


def test_every_message_gets_a_fresh_id() -> None:
    ids = {protocol.make_message(protocol.ACK).msgid for _ in range(100)}
    assert len(ids) == 100


def test_buffers_follow_as_header_and_binary_payload_pairs() -> None:
    buffers = [Buffer("b1", b"\x00\x01"), Buffer("b2", b"\x02")]
    content = {"data": buffers[0], "more": buffers[1]}
    frames = protocol.encode(protocol.make_message(protocol.PATCH_DOC, content, buffers=buffers))
    assert json.loads(frames[0])["num_buffers"] == 2
    assert json.loads(frames[2]) == {"data": {"id": "b1"}, "more": {"id": "b2"}}
    assert frames[3:] == ['{"id":"b1"}', b"\x00\x01", '{"id":"b2"}', b"\x02"]


def test_error_replies_never_carry_a_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        reply = protocol.error("r1", "it failed")
    assert reply.content == {"text": "it failed", "traceback": None}


def test_server_info_names_the_bokeh_version() -> None:
    import bokeh

    content = protocol.server_info_reply("r").content
    assert content["version_info"]["bokeh"] == bokeh.__version__


def test_nan_cannot_sneak_into_json() -> None:
    with pytest.raises(ValueError):
        protocol.encode(protocol.make_message(protocol.OK, {"x": float("nan")}))


def _document_with_data() -> Document:
    document = Document()
    source = ColumnDataSource(data={"x": np.arange(1000, dtype="float64")}, name="source")
    document.add_root(source)
    document.add_root(Div(text="hello", name="div"))
    return document


def test_a_pulled_document_round_trips_through_frames_with_binary_buffers() -> None:
    original = _document_with_data()
    frames = protocol.encode(protocol.pull_doc_reply("r1", original))
    binary = any(isinstance(frame, bytes) for frame in frames)
    # BokehJS 3.9 drops the binary buffers of a document it pulls again after a reconnect: on
    # bokeh 3.9 a pulled document carries its arrays in the JSON (base64)
    assert binary == (bokeh_version_info >= (3, 10)), "numpy columns travel as binary on 3.10"

    receiver = protocol.Receiver()
    results = [receiver.receive_frame(frame) for frame in frames]
    message = results[-1]
    assert isinstance(message, protocol.Message)
    assert all(result is None for result in results[:-1])

    copy = Document.from_json(protocol.document_of(message))
    assert copy.select_one({"name": "div"}).text == "hello"
    assert list(copy.select_one({"name": "source"}).data["x"]) == list(range(1000))


def test_a_patch_applies_to_a_copy_of_the_document() -> None:
    original = _document_with_data()
    copy = Document.from_json(protocol.document_of(protocol.push_doc(original)))
    events: list = []
    original.callbacks.on_change(events.append)
    original.select_one({"name": "div"}).text = "changed"
    original.select_one({"name": "source"}).data = {"x": np.ones(10)}

    for event in events:
        frames = protocol.encode(protocol.patch_doc([event], original))
        receiver = protocol.Receiver()
        message = [receiver.receive_frame(f) for f in frames][-1]
        assert isinstance(message, protocol.Message)
        copy.apply_json_patch(protocol.patch_of(message))

    assert copy.select_one({"name": "div"}).text == "changed"
    assert list(copy.select_one({"name": "source"}).data["x"]) == [1.0] * 10


@pytest.mark.parametrize(
    "content",
    [
        pytest.param([], id="not-an-object"),
        pytest.param({}, id="no-doc"),
        pytest.param({"doc": "x"}, id="doc-not-an-object"),
    ],
)
def test_a_document_message_without_a_document_is_refused(content: object) -> None:
    message = protocol.make_message(protocol.PUSH_DOC, content)
    with pytest.raises(ValueError, match="'doc'"):
        protocol.document_of(message)


def test_a_patch_without_events_is_refused() -> None:
    with pytest.raises(ValueError, match="events"):
        protocol.patch_of(protocol.make_message(protocol.PATCH_DOC, {"events": "no"}))


@pytest.mark.parametrize(
    "header",
    [
        {"msgid": "1f", "msgtype": "ACK"},
        {"msgid": "1f", "msgtype": "OK", "reqid": 'a "quoted"\\ id\u00e9'},
        {"msgid": "1f", "msgtype": "PATCH-DOC", "num_buffers": 2},
        {"msgid": "1f", "msgtype": "OK", "reqid": 7},
        {"msgid": "1f", "msgtype": "OK", "extra": [1, None]},
    ],
)
def test_a_header_encodes_as_the_general_json_encoder_writes_it(header: dict[str, Any]) -> None:
    frames = encode(Message(header=header))
    assert frames[0] == dumps(header)
    assert json.loads(frames[0]) == header


def test_empty_metadata_is_an_empty_object_and_other_metadata_is_json() -> None:
    assert encode(Message(header={"msgid": "1", "msgtype": "ACK"}))[1] == "{}"
    with_metadata = Message(header={"msgid": "1", "msgtype": "ACK"}, metadata={"k": [1]})
    assert json.loads(encode(with_metadata)[1]) == {"k": [1]}


@pytest.mark.parametrize(
    "content",
    [
        {"events": [{"kind": "ColumnsStreamed", "data": {"x": [1, 2.5, -3e300]}, "rollover": 9}]},
        {"text": 'a "quoted"\\ \u00e9\U0001f600 \n', "empty": {}, "none": None, "flags": [True]},
        [],
        "just text",
        12,
    ],
)
def test_content_encodes_as_compact_ascii_json(content: Any) -> None:
    frames = encode(Message(header={"msgid": "1", "msgtype": "OK"}, content=content))
    assert frames[2] == json.dumps(content, separators=(",", ":"), allow_nan=False)
