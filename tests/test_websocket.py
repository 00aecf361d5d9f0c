"""app_server's websocket protocol under a real uvicorn, against the ``websockets`` client:
pings, both closing handshakes, size limits, fragments, compression and HTTP denials.
(Chromium runs it in the browser tests: ``app-server serve`` uses it.)"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app_server.websocket import WebSocketProtocol
from fuzz.rawws import RawWebSocket
from tests.servers import uvicorn_in_loop

App = Callable[[Any, Any, Any], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(app: App, **config: Any) -> AsyncIterator[str]:
    """``app`` under uvicorn with app_server's websocket protocol; its ws:// URL."""
    async with uvicorn_in_loop(app, ws=WebSocketProtocol, **config) as port:
        yield f"ws://127.0.0.1:{port}/ws"


def echo(received: list[Any]) -> App:
    """Accepts, records each event, echoes each message; closes with 4000 on "close"."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            event = await receive()
            received.append(event)
            if event["type"] == "websocket.disconnect":
                return
            if event.get("text") == "close":
                await send({"type": "websocket.close", "code": 4000, "reason": "asked"})
                return
            await send({k: v for k, v in event.items() if k != "type"} | {"type": "websocket.send"})

    return app


async def test_messages_whole_or_in_fragments_go_both_ways() -> None:
    received: list[Any] = []
    async with serving(echo(received)) as url, connect(url, compression=None) as ws:
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.send(b"\x00\x01")
        assert await ws.recv() == b"\x00\x01"
        await ws.send(["frag", "ments"])  # one message in three frames (the last, empty)
        assert await ws.recv() == "fragments"
    assert [e.get("text", e.get("bytes")) for e in received[:3]] == [
        "héllo",
        b"\x00\x01",
        "fragments",
    ]


async def test_a_client_close_is_answered_and_reaches_the_app_with_its_code() -> None:
    received: list[Any] = []
    async with serving(echo(received)) as url:
        ws = await connect(url)
        await ws.close(1001, "leaving")
        assert ws.close_code == 1001, "the server answered the close frame"
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.01)
    assert received == [{"type": "websocket.disconnect", "code": 1001, "reason": "leaving"}]


async def test_a_server_close_sends_its_code_and_completes_when_the_client_answers() -> None:
    async with serving(echo([])) as url, connect(url) as ws:
        await ws.send("close")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "asked")
        await ws.wait_closed()  # the server closed the TCP connection after our answer


async def test_a_message_over_the_size_limit_closes_with_1009() -> None:
    received: list[Any] = []
    async with serving(echo(received), ws_max_size=1000) as url, connect(url) as ws:
        await ws.send("x" * 1000)
        assert await ws.recv() == "x" * 1000
        await ws.send("x" * 1001)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert received[-1]["type"] == "websocket.disconnect" and received[-1]["code"] == 1009


async def test_compressed_messages_when_the_client_offers_deflate() -> None:
    async with serving(echo([])) as url, connect(url, compression="deflate") as ws:
        assert [type(e).__name__ for e in ws.protocol.extensions] == ["PerMessageDeflate"]
        await ws.send("z" * 10_000)
        assert await ws.recv() == "z" * 10_000


async def test_pings_keep_an_answering_client_and_drop_a_silent_one() -> None:
    async with serving(echo([]), ws_ping_interval=0.05, ws_ping_timeout=0.2) as url:
        async with connect(url, ping_interval=None) as answering:  # websockets answers pings
            await asyncio.sleep(0.5)
            await answering.send("still here")
            assert await answering.recv() == "still here"
        # peers that complete the handshake, then never answer: each is pinged (one timer
        # serves them all), then dropped with 1011 when its pong is overdue
        port = int(url.removeprefix("ws://").split("/")[0].split(":")[1])
        endings = await asyncio.gather(*(silent_peer(port) for _ in range(3)))
        for data in endings:
            assert data.startswith(b"\x89"), "a ping came first"
            assert b"\x88\x18\x03\xf3keepalive ping timeout" in data, "then a close (1011)"


async def silent_peer(port: int) -> bytes:
    """Everything the server sends a peer that never answers, until it ends the connection."""
    peer = await RawWebSocket.connect(port, "/ws")
    data = await asyncio.wait_for(peer.reader.read(), 5)  # raw bytes: nothing answers a ping
    peer.abort()
    return data


async def test_an_app_may_refuse_the_handshake_with_an_http_response() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "websocket.http.response.start", "status": 403, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b"not you"})

    async with serving(app) as url:
        with pytest.raises(InvalidStatus) as refused:
            await connect(url)
    assert refused.value.response.status_code == 403
    assert refused.value.response.body == b"not you"


async def test_an_app_that_fails_before_accepting_answers_500() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("broken app")

    async with serving(app) as url:
        with pytest.raises(InvalidStatus) as refused:
            await connect(url)
    assert refused.value.response.status_code == 500


async def test_a_large_message_is_not_held_once_the_app_has_taken_it() -> None:
    """websockets' parser keeps the last frame it parsed until the next one arrives (for an
    idle client, never): not its data, which may be an upload of megabytes."""
    held: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        event = await receive()
        assert len(event["bytes"]) == 8_000_000
        del event
        await asyncio.sleep(0)  # the loop lets go of the step that delivered it
        gc.collect()
        held.append(tracemalloc.get_traced_memory()[0])
        await send({"type": "websocket.send", "text": "taken"})
        await receive()

    upload = os.urandom(8_000_000)
    tracemalloc.start()
    try:
        async with serving(app) as url, connect(url, max_size=None) as ws:
            before = tracemalloc.get_traced_memory()[0]
            await ws.send(upload)
            assert await ws.recv() == "taken"
    finally:
        tracemalloc.stop()
    assert held[0] - before < 1_000_000, f"{held[0] - before} bytes still held"
