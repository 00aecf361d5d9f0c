"""The websocket endpoint against a real uvicorn: handshake, documents, patches, bad input."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app_server import protocol
from app_server.protocol.builders import INLINE_PULLED_BUFFERS
from tests.servers import RunningServer
from tests.wsclient import BokehSocket, fetch_token


def ws_url(server: RunningServer) -> str:
    return server.url.replace("http://", "ws://") + "/demo/ws"


def model_id(doc_json: dict, name: str) -> str:
    text = json.dumps(doc_json)
    marker = f'"name": "{name}"'
    # the model's id is in the object that holds this name: find its enclosing "id"
    head = text[: text.index(marker)]
    return head[head.rindex('"id": "') + 7 :].split('"', 1)[0]


async def open_session(server: RunningServer, token: str | None = None) -> tuple[BokehSocket, str]:
    token = token or fetch_token(server.url + "/demo")
    socket = await BokehSocket.open(ws_url(server), token)
    assert (await socket.receive()).msgtype == protocol.ACK
    return socket, token


async def test_the_server_acknowledges_then_sends_the_document(demo_server: RunningServer) -> None:
    socket, _ = await open_session(demo_server)
    async with socket:
        reply = await socket.request(protocol.PULL_DOC_REQ)
        assert reply.msgtype == protocol.PULL_DOC_REPLY
        doc = reply.content["doc"]
        assert doc["title"] == "app_server demo"
        if INLINE_PULLED_BUFFERS:  # BokehJS 3.9 drops a re-pulled document's binary buffers
            assert "num_buffers" not in reply.header and '"type":"ndarray"' in json.dumps(
                doc, separators=(",", ":")
            )
        else:
            assert len(reply.buffers) == reply.header["num_buffers"] > 0, "numpy columns as buffers"


async def test_server_info(demo_server: RunningServer) -> None:
    socket, _ = await open_session(demo_server)
    async with socket:
        reply = await socket.request(protocol.SERVER_INFO_REQ)
        assert reply.msgtype == protocol.SERVER_INFO_REPLY
        assert "bokeh" in reply.content["version_info"]


async def test_a_patch_runs_the_callback_and_reaches_the_other_connections(
    demo_server: RunningServer,
) -> None:
    first, token = await open_session(demo_server)
    second, _ = await open_session(demo_server, token)
    async with first, second:
        doc = (await first.request(protocol.PULL_DOC_REQ)).content["doc"]
        await second.request(protocol.PULL_DOC_REQ)
        slider, status = model_id(doc, "frequency"), model_id(doc, "status")
        event = {"kind": "ModelChanged", "model": {"id": slider}, "attr": "value", "new": 2.5}
        reply = await first.request(protocol.PATCH_DOC, {"events": [event]})
        assert reply.msgtype == protocol.OK

        _, seen_by_second = await second.request_collecting(protocol.SERVER_INFO_REQ)
        assert [m.msgtype for m in seen_by_second] == [protocol.PATCH_DOC], "one message"
        changes = {
            (e["model"]["id"], e.get("attr")): e.get("new")
            for e in seen_by_second[0].content["events"]
        }
        assert changes[(slider, "value")] == 2.5, "the other connection sees the slider move"
        assert changes[(status, "text")] == "frequency = 2.5, resets: 0"
        assert len(seen_by_second[0].buffers) == 2, "the new data's columns travel as buffers"


async def test_the_sender_gets_the_callback_result_but_not_its_own_change(
    demo_server: RunningServer,
) -> None:
    socket, _ = await open_session(demo_server)
    async with socket:
        doc = (await socket.request(protocol.PULL_DOC_REQ)).content["doc"]
        slider = model_id(doc, "frequency")
        event = {"kind": "ModelChanged", "model": {"id": slider}, "attr": "value", "new": 3.0}
        patch = protocol.make_message(protocol.PATCH_DOC, {"events": [event]})
        await socket.send(patch)
        received = []
        while True:
            message = await socket.receive()
            if message.reqid == patch.msgid:
                break
            received.append(message)
        events = [e for m in received for e in m.content["events"]]
        assert any(e.get("attr") == "text" for e in events), "the callback's change comes back"
        assert not any(e["model"]["id"] == slider for e in events), "no echo of the sender's change"


@pytest.mark.parametrize("msgtype", ["NOT-A-TYPE", protocol.ACK, protocol.PULL_DOC_REPLY])
async def test_a_message_type_a_client_may_not_send_closes_the_connection_as_in_bokeh(
    demo_server: RunningServer, msgtype: str
) -> None:
    socket, _ = await open_session(demo_server)
    async with socket:
        await socket.send(protocol.make_message(msgtype))
        with pytest.raises(ConnectionClosed) as closed:
            await socket.receive()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1002
        assert repr(msgtype) in closed.value.rcvd.reason
    other, _ = await open_session(demo_server)  # the server goes on
    async with other:
        reply = await other.request(protocol.SERVER_INFO_REQ)
        assert reply.msgtype == protocol.SERVER_INFO_REPLY


async def test_a_patch_naming_an_unknown_model_gets_an_error(demo_server: RunningServer) -> None:
    socket, _ = await open_session(demo_server)
    async with socket:
        await socket.request(protocol.PULL_DOC_REQ)
        event = {"kind": "ModelChanged", "model": {"id": "nope"}, "attr": "value", "new": 1}
        reply = await socket.request(protocol.PATCH_DOC, {"events": [event]})
        assert reply.msgtype == protocol.ERROR
        assert (
            await socket.request(protocol.SERVER_INFO_REQ)
        ).msgtype == protocol.SERVER_INFO_REPLY


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        pytest.param(["this is not json"], 1007, id="not-json"),
        pytest.param([b"\x00\x01"], 1003, id="binary-header"),
        pytest.param(['{"msgtype":"PATCH-DOC"}'], 1002, id="header-without-msgid"),
    ],
)
async def test_malformed_frames_close_with_a_valid_code_and_the_server_goes_on(
    demo_server: RunningServer, frames: list[str | bytes], code: int
) -> None:
    socket, token = await open_session(demo_server)
    for frame in frames:
        await socket.ws.send(frame)
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(socket.receive(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    demo_server.wait_for_log("closing the websocket")

    again, _ = await open_session(demo_server, token)
    async with again:
        reply = await again.request(protocol.PULL_DOC_REQ)
        assert reply.msgtype == protocol.PULL_DOC_REPLY, "the session survives a bad connection"


async def test_a_wrong_subprotocol_is_refused(demo_server: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(ws_url(demo_server), subprotocols=["chat"])  # type: ignore[list-item]
    assert refused.value.response.status_code == 403


async def test_a_forged_token_is_refused(demo_server: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await BokehSocket.open(ws_url(demo_server), "bm90LWEtdG9rZW4")
    assert refused.value.response.status_code == 403


async def test_a_foreign_origin_is_refused_before_any_session_exists(
    demo_server: RunningServer,
) -> None:
    token = fetch_token(demo_server.url + "/demo")
    with pytest.raises(InvalidStatus) as refused:
        await BokehSocket.open(ws_url(demo_server), token, origin="http://evil.example")
    assert refused.value.response.status_code == 403
    assert b"--allow-websocket-origin" in refused.value.response.body


async def test_the_pages_own_origin_is_allowed(demo_server: RunningServer) -> None:
    token = fetch_token(demo_server.url + "/demo")
    socket = await BokehSocket.open(ws_url(demo_server), token, origin=demo_server.url)
    async with socket:
        assert (await socket.receive()).msgtype == protocol.ACK
