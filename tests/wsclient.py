"""A raw Bokeh-protocol websocket client for tests, on ``websockets`` and our protocol layer."""

from __future__ import annotations

import re
import urllib.request
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from app_server import protocol

__all__ = ["BokehSocket", "fetch_token"]

TOKEN = re.compile(r'"token":\s*"([^"]+)"')


def fetch_token(page_url: str) -> str:
    """Load an app page as a browser would and take the session token from it."""
    html = urllib.request.urlopen(page_url, timeout=10).read().decode()
    match = TOKEN.search(html)
    assert match, f"no session token in the page at {page_url}"
    return match.group(1)


class BokehSocket:
    """One websocket speaking the Bokeh protocol: send messages, receive whole messages."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.receiver = protocol.Receiver()

    @classmethod
    async def open(cls, ws_url: str, token: str, **kwargs: Any) -> BokehSocket:
        ws = await connect(ws_url, subprotocols=["bokeh", token], max_size=None, **kwargs)  # type: ignore[list-item]
        return cls(ws)

    async def send(self, message: protocol.Message) -> None:
        for frame in protocol.encode(message):
            await self.ws.send(frame)

    async def request(self, msgtype: str, content: Any = None) -> protocol.Message:
        """Send a message and return the reply that names it (skipping other messages)."""
        reply, _ = await self.request_collecting(msgtype, content)
        return reply

    async def request_collecting(
        self, msgtype: str, content: Any = None
    ) -> tuple[protocol.Message, list[protocol.Message]]:
        """Send a message; its reply, and every other message that arrived before it."""
        message = protocol.make_message(msgtype, content)
        await self.send(message)
        before: list[protocol.Message] = []
        while True:
            reply = await self.receive()
            if reply.reqid == message.msgid:
                return reply, before
            before.append(reply)

    async def receive(self) -> protocol.Message:
        while True:
            result = self.receiver.receive_frame(await self.ws.recv())
            if isinstance(result, protocol.ProtocolViolation):
                raise AssertionError(f"the server sent a malformed message: {result.reason}")
            if result is not None:
                return result

    async def receive_type(self, msgtype: str) -> protocol.Message:
        while True:
            message = await self.receive()
            if message.msgtype == msgtype:
                return message

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> BokehSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
